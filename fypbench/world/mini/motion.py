"""Motion of the mini world: DeepMimic clips and procedural motions -> 3D joints (metres, Y up).

    python -c "from fypbench.world.mini.motion import MotionSpec, joints3d; print(joints3d(MotionSpec('real', 'walk')).shape)"

Both kinds of motion live in the DeepMimic 44-float frame format (reference/mini_world.md §2-3), so one forward
kinematics serves real and synthetic motion:

    0 duration | 1-3 root position | 4-7 root quaternion (w, x, y, z) | 8-11 chest | 12-15 neck |
    16-19 right hip | 20 right knee (rad) | 21-24 right ankle | 25-28 right shoulder | 29 right elbow (rad) |
    30-33 left hip | 34 left knee | 35-38 left ankle | 39-42 left shoulder | 43 left elbow

Axes: X forward, Y up, Z toward the character's right. Skeleton offsets are the DeepMimic humanoid URDF divided
by 4. A `MotionSpec` fixes a pose sequence: output frame i is the pose at clip time
`start + i * stride / fps * speed` seconds. "wrap" clips loop: each new cycle is moved by the root translation
from the clip's first to its last frame, as DeepMimic does (the steadily turning walker clips also carry the
heading change over, so the turn continues); "none" clips hold their last frame. Procedural motions are
joint-angle functions of a continuous phase (time / period), so they loop and travel without seams.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Any

import numpy as np

from fypbench.errors import UserError
from fypbench.sample import COCO17_NAMES
from fypbench.seeding import numpy_rng

# ---------------------------------------------------------------------------------------------------------------
# Names

_REAL_CLIP_FILES: dict[str, str] = {
    "walk": "humanoid3d_walk.txt",
    "run": "humanoid3d_run.txt",
    "jump": "humanoid3d_jump.txt",
    "dance_a": "humanoid3d_dance_a.txt",
    "dance_b": "humanoid3d_dance_b.txt",
    "punch": "humanoid3d_punch.txt",
    "kick": "humanoid3d_kick.txt",
    "spinkick": "humanoid3d_spinkick.txt",
    "spin": "humanoid3d_spin.txt",
    "cartwheel": "humanoid3d_cartwheel.txt",
    "backflip": "humanoid3d_backflip.txt",
    "roll": "humanoid3d_roll.txt",
    "crawl": "humanoid3d_crawl.txt",
    "getup_facedown": "humanoid3d_getup_facedown.txt",
    "getup_faceup": "humanoid3d_getup_faceup.txt",
    "walker_forward": "walker/0walk_forward.txt",
    "walker_turn_left0": "walker/turn_left0.txt",
    "walker_turn_left1": "walker/turn_left1.txt",
    "walker_turn_right0": "walker/turn_right0.txt",
    "walker_turn_right1": "walker/turn_right1.txt",
}
REAL_CLIPS: tuple[str, ...] = tuple(_REAL_CLIP_FILES)

PROCEDURAL_MOTIONS: tuple[str, ...] = (
    "walk", "run", "jump", "wave", "squat", "dance", "arms_raise", "kick", "box", "bow", "turn", "clap",
)

EXTRA_JOINT_NAMES = ("head", "neck", "pelvis", "left_toe", "right_toe", "left_hand", "right_hand")
JOINT_NAMES: tuple[str, ...] = tuple(COCO17_NAMES) + EXTRA_JOINT_NAMES
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

MOTION_KINDS = ("real", "procedural")

# ---------------------------------------------------------------------------------------------------------------
# Frame layout and skeleton

FRAME_SIZE = 44
ROOT_POS = slice(1, 4)
ROOT_QUAT = slice(4, 8)
CHEST_QUAT = slice(8, 12)
NECK_QUAT = slice(12, 16)
# per side: (hip quat, knee angle, ankle quat, shoulder quat, elbow angle) start indices
_SIDE_LAYOUT = {"right": (16, 20, 21, 25, 29), "left": (30, 34, 35, 39, 43)}
_RIGHT_BLOCK = slice(16, 30)
_LEFT_BLOCK = slice(30, 44)
QUAT_STARTS = (4, 8, 12, 16, 21, 25, 30, 35, 39)
HINGE_INDICES = (20, 29, 34, 43)

_URDF_SCALE = 0.25  # pybullet's humanoid.urdf is the DeepMimic humanoid at 4x scale
OFFSETS: dict[str, np.ndarray] = {
    "chest": np.array([0.0, 0.944604, 0.0]) * _URDF_SCALE,
    "neck": np.array([0.0, 0.895576, 0.0]) * _URDF_SCALE,
    "right_hip": np.array([0.0, 0.0, 0.339548]) * _URDF_SCALE,
    "left_hip": np.array([0.0, 0.0, -0.339548]) * _URDF_SCALE,
    "knee": np.array([0.0, -1.686184, 0.0]) * _URDF_SCALE,
    "ankle": np.array([0.0, -1.639480, 0.0]) * _URDF_SCALE,
    "right_shoulder": np.array([-0.0962, 0.974, 0.73244]) * _URDF_SCALE,
    "left_shoulder": np.array([-0.0962, 0.974, -0.73244]) * _URDF_SCALE,
    "elbow": np.array([0.0, -1.099152, 0.0]) * _URDF_SCALE,
    "wrist": np.array([0.0, -1.035788, 0.0]) * _URDF_SCALE,
    "head": np.array([0.0, 0.70, 0.0]) * _URDF_SCALE,
    "toe": np.array([0.534, -0.18, 0.0]) * _URDF_SCALE,
    "hand": np.array([0.0, -0.07, 0.0]),
}
# Face points in the neck frame, relative to the head centre (clips have none).
FACE_OFFSETS: dict[str, np.ndarray] = {
    "nose": np.array([0.100, -0.005, 0.0]),
    "left_eye": np.array([0.085, 0.030, -0.035]),
    "right_eye": np.array([0.085, 0.030, 0.035]),
    "left_ear": np.array([0.0, 0.010, -0.098]),
    "right_ear": np.array([0.0, 0.010, 0.098]),
}
STANDING_ROOT_HEIGHT = 0.86

# ---------------------------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z), vectorised over leading axes


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (normalised here) -> (..., 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


def quat_axis_angle(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    half = 0.5 * angle
    return np.array([math.cos(half), *(math.sin(half) * np.asarray(axis, np.float64))])


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Shortest-arc spherical interpolation of (..., 4) quaternions with weights t (...)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    dot = np.sum(a * b, axis=-1)
    b = np.where((dot < 0)[..., None], -b, b)
    dot = np.abs(dot)
    t = np.asarray(t, np.float64)[..., None]
    theta = np.arccos(np.clip(dot, -1.0, 1.0))[..., None]
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6
    safe = np.where(near, 1.0, sin_theta)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    out = wa * a + wb * b
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _rot_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], -2)


def _apply(rotation: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.einsum("fij,...j->fi", rotation, offset)


# ---------------------------------------------------------------------------------------------------------------
# Forward kinematics


def forward_kinematics(frames: np.ndarray) -> np.ndarray:
    """(F, 44) DeepMimic frames -> (F, len(JOINT_NAMES), 3) joint positions in metres."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE:
        raise ValueError(f"expected (F, {FRAME_SIZE}) frames, got {frames.shape}")
    out = np.empty((frames.shape[0], len(JOINT_NAMES), 3))
    root = frames[:, ROOT_POS]
    r_root = quat_to_matrix(frames[:, ROOT_QUAT])
    r_chest = r_root @ quat_to_matrix(frames[:, CHEST_QUAT])
    chest = root + _apply(r_root, OFFSETS["chest"])
    neck = chest + _apply(r_chest, OFFSETS["neck"])
    r_neck = r_chest @ quat_to_matrix(frames[:, NECK_QUAT])
    head = neck + _apply(r_neck, OFFSETS["head"])
    out[:, JOINT_INDEX["pelvis"]] = root
    out[:, JOINT_INDEX["neck"]] = neck
    out[:, JOINT_INDEX["head"]] = head
    for name, offset in FACE_OFFSETS.items():
        out[:, JOINT_INDEX[name]] = head + _apply(r_neck, offset)
    for side, (hip_q, knee_a, ankle_q, shoulder_q, elbow_a) in _SIDE_LAYOUT.items():
        hip = root + _apply(r_root, OFFSETS[f"{side}_hip"])
        r_hip = r_root @ quat_to_matrix(frames[:, hip_q:hip_q + 4])
        knee = hip + _apply(r_hip, OFFSETS["knee"])
        r_knee = r_hip @ _rot_z(frames[:, knee_a])
        ankle = knee + _apply(r_knee, OFFSETS["ankle"])
        r_ankle = r_knee @ quat_to_matrix(frames[:, ankle_q:ankle_q + 4])
        shoulder = chest + _apply(r_chest, OFFSETS[f"{side}_shoulder"])
        r_shoulder = r_chest @ quat_to_matrix(frames[:, shoulder_q:shoulder_q + 4])
        elbow = shoulder + _apply(r_shoulder, OFFSETS["elbow"])
        r_elbow = r_shoulder @ _rot_z(frames[:, elbow_a])
        wrist = elbow + _apply(r_elbow, OFFSETS["wrist"])
        joints = {"hip": hip, "knee": knee, "ankle": ankle, "toe": ankle + _apply(r_ankle, OFFSETS["toe"]),
                  "shoulder": shoulder, "elbow": elbow, "wrist": wrist,
                  "hand": wrist + _apply(r_elbow, OFFSETS["hand"])}
        for part, value in joints.items():
            out[:, JOINT_INDEX[f"{side}_{part}"]] = value
    return out


def root_heading(frame: np.ndarray) -> float:
    """Yaw (rad) of the character's facing direction in the XZ plane, as atan2(z, x) (0 = facing +X).

    Upright body (trunk within 45 degrees of vertical): the facing direction is up x (the root's lateral +Z
    axis), which ignores forward/backward lean. Lying, crawling or mid-flip: the direction the head points along
    the ground (the root's up axis, projected), so a "frontal" view looks at the head rather than the flank.
    """
    rotation = quat_to_matrix(np.asarray(frame, np.float64)[ROOT_QUAT])
    up = rotation[:, 1]
    if math.hypot(up[0], up[2]) > math.sqrt(0.5):
        return math.atan2(up[2], up[0])
    lateral = rotation[:, 2]
    return math.atan2(-lateral[0], lateral[2])


def mirror_frames(frames: np.ndarray) -> np.ndarray:
    """Left/right mirror: reflect Z (root position and every rotation) and swap the side blocks."""
    frames = np.array(frames, dtype=np.float64, copy=True)
    frames[:, 3] = -frames[:, 3]
    for start in QUAT_STARTS:
        frames[:, start + 1] = -frames[:, start + 1]  # reflecting Z negates the x and y quaternion parts
        frames[:, start + 2] = -frames[:, start + 2]
    right = frames[:, _RIGHT_BLOCK].copy()
    frames[:, _RIGHT_BLOCK] = frames[:, _LEFT_BLOCK]
    frames[:, _LEFT_BLOCK] = right
    return frames


def interpolate_frames(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend (F, 44) frames: positions and hinge angles linearly, rotations by slerp."""
    t = np.asarray(t, np.float64)
    out = a + (b - a) * t[:, None]
    for start in QUAT_STARTS:
        out[:, start:start + 4] = quat_slerp(a[:, start:start + 4], b[:, start:start + 4], t)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Real clips


@dataclass(frozen=True, eq=False)
class Clip:
    name: str
    frames: np.ndarray  # (T, 44)
    times: np.ndarray   # (T,) seconds of each keyframe
    loop: str           # "wrap" | "none"

    @property
    def duration(self) -> float:
        return float(self.times[-1])


@functools.lru_cache(maxsize=None)
def load_clip(name: str) -> Clip:
    """A vendored real clip by its short name (see REAL_CLIPS)."""
    if name not in _REAL_CLIP_FILES:
        raise ValueError(f"unknown real clip {name!r} (known: {', '.join(REAL_CLIPS)})")
    path = resources.files("fypbench.world.mini.data").joinpath("motions", *_REAL_CLIP_FILES[name].split("/"))
    data = json.loads(path.read_text(encoding="utf-8"))
    frames = np.asarray(data["Frames"], dtype=np.float64)
    loop = data.get("Loop", "none")
    if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE or frames.shape[0] < 2:
        raise ValueError(f"clip {name!r}: expected (T>=2, {FRAME_SIZE}) frames, got {frames.shape}")
    if loop not in ("wrap", "none"):
        raise ValueError(f"clip {name!r}: unknown Loop mode {loop!r}")
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    frames.setflags(write=False)
    times.setflags(write=False)
    return Clip(name=name, frames=frames, times=times, loop=loop)


def _heading_rotation(angle: float) -> np.ndarray:
    """Rotation about +Y that adds `angle` to root_heading (heading = atan2(z, x))."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


# Clips that turn steadily: each loop continues the turn (heading and translation carried over). Every other
# wrap clip loops as in DeepMimic (root translation carried over, heading not): their first and last frames
# differ in heading only by gait sway (walk: 7 degrees), which would otherwise bend straight paths.
TURNING_CLIPS = ("walker_turn_left0", "walker_turn_left1", "walker_turn_right0", "walker_turn_right1")


@functools.lru_cache(maxsize=None)
def _cycle_step(name: str) -> tuple[float, np.ndarray]:
    """(heading change, root positions of the first and last frame) of one loop of a wrap clip."""
    clip = load_clip(name)
    first, last = clip.frames[0], clip.frames[-1]
    delta = 0.0
    if name in TURNING_CLIPS:
        delta = root_heading(last) - root_heading(first)
        delta = math.atan2(math.sin(delta), math.cos(delta))
    anchors = np.stack([first[ROOT_POS], last[ROOT_POS]])
    return delta, anchors


def _advance_cycles(frames: np.ndarray, cycles: np.ndarray, name: str) -> np.ndarray:
    """Move each frame by `cycles` applications of the clip's rigid cycle step (heading + XZ translation)."""
    delta, anchors = _cycle_step(name)
    first_xz, last_xz = anchors[0, [0, 2]], anchors[1, [0, 2]]
    out = frames.copy()
    for i, count in enumerate(cycles):
        for _ in range(int(count)):
            rotation = _heading_rotation(delta)
            position = out[i, ROOT_POS].copy()
            xz = position[[0, 2]] - first_xz
            rotated = rotation @ np.array([xz[0], 0.0, xz[1]])
            out[i, 1] = rotated[0] + last_xz[0]
            out[i, 3] = rotated[2] + last_xz[1]
            heading_quat = quat_axis_angle((0.0, 1.0, 0.0), -delta)  # rotation about +Y by -delta adds delta
            out[i, ROOT_QUAT] = quat_multiply(heading_quat, out[i, ROOT_QUAT])
    return out


def sample_clip(name: str, times: np.ndarray) -> np.ndarray:
    """The real clip's frames at arbitrary times (s >= 0): looped for "wrap", last frame held for "none"."""
    clip = load_clip(name)
    times = np.asarray(times, np.float64)
    duration = clip.duration
    if clip.loop == "wrap":
        cycles = np.floor(times / duration)
        local = times - cycles * duration
    else:
        cycles = np.zeros_like(times)
        local = np.clip(times, 0.0, duration)
    local = np.clip(local, 0.0, duration)
    index = np.clip(np.searchsorted(clip.times, local, side="right") - 1, 0, len(clip.times) - 2)
    span = clip.times[index + 1] - clip.times[index]
    weight = np.clip((local - clip.times[index]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    frames = interpolate_frames(clip.frames[index], clip.frames[index + 1], weight)
    frames[:, 0] = clip.frames[index, 0]
    if clip.loop == "wrap" and np.any(cycles > 0):
        frames = _advance_cycles(frames, cycles, name)
    return frames


# ---------------------------------------------------------------------------------------------------------------
# Procedural motions: joint angles as functions of a continuous phase (1.0 = one cycle)

_REST: dict[str, float] = dict(
    root_x=0.0, root_y=STANDING_ROOT_HEIGHT, root_z=0.0, yaw=0.0, pitch=0.0, roll=0.0,
    chest_z=0.0, chest_x=0.0, chest_y=0.0, neck_z=0.0, neck_x=0.0, neck_y=0.0,
    right_hip_z=0.0, right_hip_x=0.0, left_hip_z=0.0, left_hip_x=0.0, right_knee=0.0, left_knee=0.0,
    right_ankle=0.0, left_ankle=0.0,
    right_shoulder_z=0.0, right_shoulder_x=-0.15, right_shoulder_y=0.0,
    left_shoulder_z=0.0, left_shoulder_x=0.15, left_shoulder_y=0.0,
    right_elbow=0.1, left_elbow=0.1,
)
# Not scaled by amplitude and not jittered: the turn's full revolution and the root position.
_UNSCALED = frozenset({"yaw", "root_x", "root_z"})
_NOT_JITTERED = frozenset({"root_x", "root_y", "root_z", "yaw"})
JITTER_KEYS: tuple[str, ...] = tuple(sorted(k for k in _REST if k not in _NOT_JITTERED))


def _sin(phase: float, k: float = 1.0, shift: float = 0.0) -> float:
    return math.sin(2 * math.pi * (k * phase + shift))


def _cos(phase: float, k: float = 1.0, shift: float = 0.0) -> float:
    return math.cos(2 * math.pi * (k * phase + shift))


def _bump(x: float) -> float:
    """sin(pi x) on [0, 1], zero outside."""
    return math.sin(math.pi * x) if 0.0 <= x <= 1.0 else 0.0


def _walk(p: float, stride: float = 1.3, swing: float = 1.0) -> dict[str, float]:
    s = _sin(p)
    return dict(
        right_hip_z=0.45 * swing * s, left_hip_z=-0.45 * swing * s,
        right_knee=-0.05 - 0.55 * swing * max(0.0, _sin(p, 1, 0.35)),
        left_knee=-0.05 - 0.55 * swing * max(0.0, -_sin(p, 1, 0.35)),
        right_shoulder_z=-0.35 * swing * s, left_shoulder_z=0.35 * swing * s, right_elbow=0.3, left_elbow=0.3,
        root_y=STANDING_ROOT_HEIGHT - 0.02 * swing * abs(_cos(p)), chest_y=0.08 * swing * s,
        root_x=stride * p,
    )


def _run(p: float) -> dict[str, float]:
    out = _walk(p, stride=2.0, swing=1.6)
    out.update(right_elbow=1.5, left_elbow=1.5, pitch=-0.12, root_y=0.84 + 0.05 * abs(_sin(p)),
               right_knee=out["right_knee"] - 0.4, left_knee=out["left_knee"] - 0.4)
    return out


def _jump(p: float) -> dict[str, float]:
    f = p % 1.0  # crouch 0-0.3, flight 0.3-0.7, landing 0.7-1
    crouch = _bump(f / 0.3) if f < 0.3 else (0.8 * _bump((f - 0.7) / 0.3) if f > 0.7 else 0.0)
    air = _bump((f - 0.3) / 0.4)
    return dict(
        right_hip_z=0.9 * crouch + 0.2 * air, left_hip_z=0.9 * crouch + 0.2 * air,
        right_knee=-1.5 * crouch - 0.3 * air, left_knee=-1.5 * crouch - 0.3 * air,
        right_ankle=0.6 * crouch, left_ankle=0.6 * crouch, chest_z=-0.4 * crouch,  # lean forward
        root_y=STANDING_ROOT_HEIGHT - 0.28 * crouch + 0.35 * air,
        right_shoulder_z=-0.6 * crouch + 2.6 * air, left_shoulder_z=-0.6 * crouch + 2.6 * air,
        right_elbow=0.2, left_elbow=0.2,
    )


def _wave(p: float) -> dict[str, float]:
    return dict(neck_z=0.05 * _sin(p), right_shoulder_x=-2.3, right_shoulder_z=0.2,
                right_elbow=0.9 + 0.5 * _sin(p, 2), right_shoulder_y=0.3 * _sin(p, 2))


def _squat(p: float) -> dict[str, float]:
    d = 0.5 - 0.5 * _cos(p)
    return dict(right_hip_z=1.6 * d, left_hip_z=1.6 * d, right_knee=-2.0 * d, left_knee=-2.0 * d,
                right_ankle=0.55 * d, left_ankle=0.55 * d, chest_z=-0.35 * d,
                root_y=STANDING_ROOT_HEIGHT - 0.40 * d, right_shoulder_z=1.5 * d, left_shoulder_z=1.5 * d,
                right_hip_x=-0.15 * d, left_hip_x=0.15 * d)


def _dance(p: float) -> dict[str, float]:
    s, c = _sin(p), _cos(p)
    return dict(
        root_y=0.84 + 0.03 * _sin(p, 2), chest_x=0.2 * s, chest_y=0.3 * s,
        right_hip_x=-0.15 - 0.15 * max(0.0, s), left_hip_x=0.15 + 0.15 * max(0.0, -s),
        right_knee=-0.2 - 0.4 * max(0.0, s), left_knee=-0.2 - 0.4 * max(0.0, -s),
        right_hip_z=0.3 * max(0.0, s), left_hip_z=0.3 * max(0.0, -s),
        right_shoulder_x=-1.2 - 1.0 * s, left_shoulder_x=1.2 - 1.0 * s,
        right_shoulder_z=0.5 * _cos(p, 2), left_shoulder_z=0.5 * _cos(p, 2, 0.5),
        right_elbow=0.8 + 0.6 * c, left_elbow=0.8 - 0.6 * c, neck_x=0.15 * s, yaw=0.3 * s,
    )


def _arms_raise(p: float) -> dict[str, float]:
    a = 0.5 - 0.5 * _cos(p)
    return dict(right_shoulder_x=-0.15 - 2.8 * a, left_shoulder_x=0.15 + 2.8 * a, right_elbow=0.05, left_elbow=0.05)


def _kick(p: float) -> dict[str, float]:
    f = p % 1.0
    k = _bump((f - 0.2) / 0.6)
    chamber = 1.0 if 0.2 < f < 0.8 else 0.0
    return dict(right_hip_z=1.5 * k, right_knee=-1.2 * (1.0 - k) * chamber - 0.05, left_knee=-0.25 * k,
                chest_z=-0.25 * k, right_shoulder_x=-0.9 * k - 0.15, left_shoulder_x=0.9 * k + 0.15,
                right_shoulder_z=-0.4 * k)


def _box(p: float) -> dict[str, float]:
    right = max(0.0, _sin(p)) ** 2
    left = max(0.0, -_sin(p)) ** 2
    return dict(right_hip_z=0.3, left_hip_z=-0.2, right_knee=-0.4, left_knee=-0.3, root_y=0.82,
                chest_y=0.35 * (left - right),
                right_shoulder_z=0.9 + 0.7 * right, right_elbow=2.2 - 2.0 * right, right_shoulder_x=-0.3,
                left_shoulder_z=0.9 + 0.7 * left, left_elbow=2.2 - 2.0 * left, left_shoulder_x=0.3)


def _bow(p: float) -> dict[str, float]:
    d = abs(math.sin(math.pi * p))
    # +Z flexion of the root or chest leans BACK (it turns +Y toward -X); a bow pitches the root forward, keeps the
    # legs vertical with the opposite hip flexion and lets the arms hang.
    return dict(pitch=-0.9 * d, right_hip_z=0.9 * d, left_hip_z=0.9 * d, chest_z=-0.3 * d, neck_z=-0.2 * d,
                right_shoulder_z=1.1 * d, left_shoulder_z=1.1 * d)


def _turn(p: float) -> dict[str, float]:
    out = _walk(2.0 * p, stride=0.0, swing=0.6)
    out["yaw"] = 2 * math.pi * p
    return out


def _clap(p: float) -> dict[str, float]:
    c = 0.5 - 0.5 * _cos(p, 2)
    return dict(right_shoulder_z=1.3, left_shoulder_z=1.3, right_shoulder_x=-0.9 + 0.75 * c,
                left_shoulder_x=0.9 - 0.75 * c, right_elbow=0.6, left_elbow=0.6,
                right_shoulder_y=0.4, left_shoulder_y=-0.4)


# name -> (angle function of phase, period in seconds)
_PROCEDURAL: dict[str, tuple[Callable[[float], dict[str, float]], float]] = {
    "walk": (_walk, 1.1), "run": (_run, 0.7), "jump": (_jump, 1.6), "wave": (_wave, 1.6),
    "squat": (_squat, 2.0), "dance": (_dance, 2.0), "arms_raise": (_arms_raise, 2.0), "kick": (_kick, 1.6),
    "box": (_box, 1.2), "bow": (_bow, 2.4), "turn": (_turn, 3.0), "clap": (_clap, 1.2),
}
assert tuple(_PROCEDURAL) == PROCEDURAL_MOTIONS


def _quat_flex_abduct_twist(flex: float, abduct: float = 0.0, twist: float = 0.0) -> np.ndarray:
    """Flex about Z, then abduction about X, then twist about Y (intrinsic)."""
    return quat_multiply(quat_multiply(quat_axis_angle((0, 0, 1), flex), quat_axis_angle((1, 0, 0), abduct)),
                         quat_axis_angle((0, 1, 0), twist))


def params_to_frame(params: Mapping[str, float], dt: float) -> np.ndarray:
    """Joint-angle parameters (keys of the rest pose; missing = rest) -> one 44-float frame."""
    unknown = set(params) - set(_REST)
    if unknown:
        raise ValueError(f"unknown motion parameters {sorted(unknown)}")
    p = {**_REST, **params}
    frame = np.zeros(FRAME_SIZE)
    frame[0] = dt
    frame[ROOT_POS] = [p["root_x"], p["root_y"], p["root_z"]]
    frame[ROOT_QUAT] = quat_multiply(quat_axis_angle((0, 1, 0), p["yaw"]),
                                     quat_multiply(quat_axis_angle((0, 0, 1), p["pitch"]),
                                                   quat_axis_angle((1, 0, 0), p["roll"])))
    frame[CHEST_QUAT] = _quat_flex_abduct_twist(p["chest_z"], p["chest_x"], p["chest_y"])
    frame[NECK_QUAT] = _quat_flex_abduct_twist(p["neck_z"], p["neck_x"], p["neck_y"])
    for side, (hip_q, knee_a, ankle_q, shoulder_q, elbow_a) in _SIDE_LAYOUT.items():
        frame[hip_q:hip_q + 4] = _quat_flex_abduct_twist(p[f"{side}_hip_z"], p[f"{side}_hip_x"])
        frame[knee_a] = p[f"{side}_knee"]
        frame[ankle_q:ankle_q + 4] = _quat_flex_abduct_twist(p[f"{side}_ankle"])
        frame[shoulder_q:shoulder_q + 4] = _quat_flex_abduct_twist(
            p[f"{side}_shoulder_z"], p[f"{side}_shoulder_x"], p[f"{side}_shoulder_y"])
        frame[elbow_a] = p[f"{side}_elbow"]
    return frame


def procedural_period(name: str) -> float:
    if name not in _PROCEDURAL:
        raise ValueError(f"unknown procedural motion {name!r} (known: {', '.join(PROCEDURAL_MOTIONS)})")
    return _PROCEDURAL[name][1]


def jitter_offsets(name: str, seed: int, jitter: float) -> dict[str, float]:
    """Per-joint angle offsets (rad), constant over the sequence, drawn from (motion, seed)."""
    if jitter == 0.0:
        return {}
    rng = numpy_rng("fypbench.world.mini.motion.jitter", name, seed)
    return dict(zip(JITTER_KEYS, (float(v) for v in rng.normal(0.0, jitter, size=len(JITTER_KEYS)))))


def procedural_frames(name: str, times: np.ndarray, amplitude: float = 1.0,
                      offsets: Mapping[str, float] | None = None) -> np.ndarray:
    """A procedural motion at the given times (s) as (F, 44) frames.

    amplitude scales every parameter's deviation from the rest pose (not the turn's yaw nor the root's
    horizontal position); offsets (see jitter_offsets) are added to the joint angles.
    """
    period = procedural_period(name)
    function = _PROCEDURAL[name][0]
    offsets = offsets or {}
    times = np.atleast_1d(np.asarray(times, np.float64))
    last_step = times[-1] - times[-2] if len(times) > 1 else 1.0 / 30.0
    dts = np.diff(times, append=times[-1] + last_step)
    frames = []
    for t, dt in zip(times, dts):
        raw = function(float(t) / period)
        params = {}
        for key, value in raw.items():
            params[key] = value if key in _UNSCALED else _REST[key] + amplitude * (value - _REST[key])
        for key, offset in offsets.items():
            params[key] = params.get(key, _REST[key]) + offset
        frames.append(params_to_frame(params, float(dt)))
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------------------------
# MotionSpec


class MotionSpecError(UserError, ValueError):
    """An invalid MotionSpec field (a UserError for the CLI, a ValueError for library callers)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


@dataclass(frozen=True)
class MotionSpec:
    """Everything that fixes a pose sequence (JSON-safe).

    Output frame i shows clip time `start + i * stride / fps * speed` seconds. view is the camera yaw in
    degrees relative to the character's heading at the first output frame (0 = frontal, +90 = the camera on
    the character's right side, so it faces the viewer's right); pitch > 0 puts the camera above, looking down.
    amplitude and jitter apply to procedural motions only; seed draws the procedural jitter.
    """

    kind: str
    name: str
    num_frames: int = 8
    fps: float = 30.0
    stride: int = 4
    start: float = 0.0
    speed: float = 1.0
    mirror: bool = False
    view: float = 0.0
    pitch: float = 0.0
    amplitude: float = 1.0
    jitter: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(field_name: str, why: str) -> MotionSpecError:
            return MotionSpecError(f"motion spec field {field_name!r}: {why} (got {getattr(self, field_name)!r})")

        if self.kind not in MOTION_KINDS:
            raise bad("kind", f"must be one of {', '.join(MOTION_KINDS)}")
        names = REAL_CLIPS if self.kind == "real" else PROCEDURAL_MOTIONS
        if not isinstance(self.name, str) or self.name not in names:
            raise bad("name", f"unknown {self.kind} motion; known: {', '.join(names)}")
        for name in ("num_frames", "stride", "seed"):
            if not _is_int(getattr(self, name)):
                raise bad(name, "must be an integer")
        for name in ("fps", "start", "speed", "view", "pitch", "amplitude", "jitter"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(float(value)):
                raise bad(name, "must be a finite number")
        if not isinstance(self.mirror, (bool, np.bool_)):
            raise bad("mirror", "must be true or false")
        if self.num_frames < 1:
            raise bad("num_frames", "must be >= 1")
        if self.stride < 1:
            raise bad("stride", "must be >= 1")
        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        if self.fps <= 0:
            raise bad("fps", "must be > 0")
        if self.start < 0:
            raise bad("start", "must be >= 0")
        if self.speed <= 0:
            raise bad("speed", "must be > 0")
        if not -89.0 <= self.pitch <= 89.0:
            raise bad("pitch", "must lie in [-89, 89] degrees")
        if not 0.0 < self.amplitude <= 3.0:
            raise bad("amplitude", "must lie in (0, 3]")
        if not 0.0 <= self.jitter <= 1.0:
            raise bad("jitter", "must lie in [0, 1] rad")
        if self.kind == "real" and self.amplitude != 1.0:
            raise bad("amplitude", "applies to procedural motions only; must be 1.0 for real clips")
        if self.kind == "real" and self.jitter != 0.0:
            raise bad("jitter", "applies to procedural motions only; must be 0.0 for real clips")

    def times(self) -> np.ndarray:
        """Clip time (s) of each output frame."""
        return self.start + np.arange(self.num_frames, dtype=np.float64) * (self.stride / self.fps) * self.speed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("num_frames", "stride", "seed"):
            out[name] = int(out[name])
        for name in ("fps", "start", "speed", "view", "pitch", "amplitude", "jitter"):
            out[name] = float(out[name])
        out["mirror"] = bool(out["mirror"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MotionSpec:
        """Raises MotionSpecError (a ValueError) naming an unknown, missing or invalid field."""
        if not isinstance(data, Mapping):
            raise MotionSpecError(f"motion spec must be a mapping, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise MotionSpecError(f"motion spec: unknown field(s) {', '.join(map(repr, unknown))} "
                                  f"(known: {', '.join(known)})")
        for required in ("kind", "name"):
            if required not in data:
                raise MotionSpecError(f"motion spec: missing field {required!r}")
        values = dict(data)
        for name in ("fps", "start", "speed", "view", "pitch", "amplitude", "jitter"):
            if name in values and _is_number(values[name]):
                values[name] = float(values[name])
        for name in ("num_frames", "stride", "seed"):
            value = values.get(name)
            if isinstance(value, float) and value.is_integer():
                values[name] = int(value)
        return cls(**values)


# ---------------------------------------------------------------------------------------------------------------
# Pose sequences


@dataclass(frozen=True, eq=False)
class PoseSequence:
    frames: np.ndarray  # (F, 44) after time warp and mirroring
    joints: np.ndarray  # (F, len(JOINT_NAMES), 3) metres
    heading: float      # root heading (rad) at the first output frame


def clip_duration(name: str, kind: str = "real") -> float:
    """Seconds of one cycle: a real clip's length, or a procedural motion's period."""
    if kind == "real":
        return load_clip(name).duration
    if kind == "procedural":
        return procedural_period(name)
    raise ValueError(f"unknown motion kind {kind!r} (known: {', '.join(MOTION_KINDS)})")


def motion_frames(spec: MotionSpec) -> np.ndarray:
    """(num_frames, 44) frames of the spec (time warp, loop/hold, jitter and mirroring applied)."""
    times = spec.times()
    if spec.kind == "real":
        frames = sample_clip(spec.name, times)
    else:
        frames = procedural_frames(spec.name, times, spec.amplitude,
                                   jitter_offsets(spec.name, spec.seed, spec.jitter))
    if spec.mirror:
        frames = mirror_frames(frames)
    return frames


@functools.lru_cache(maxsize=512)
def pose_sequence(spec: MotionSpec) -> PoseSequence:
    """The spec's frames, joints and start heading (cached; arrays are read-only)."""
    frames = motion_frames(spec)
    joints = forward_kinematics(frames)
    frames.setflags(write=False)
    joints.setflags(write=False)
    return PoseSequence(frames=frames, joints=joints, heading=root_heading(frames[0]))


def joints3d(spec: MotionSpec) -> np.ndarray:
    """(num_frames, len(JOINT_NAMES), 3) joint positions in world metres, Y up."""
    return pose_sequence(spec).joints.copy()
