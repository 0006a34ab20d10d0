"""Motion: bone lengths, mirroring, loop/hold, time warp, jitter, MotionSpec validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fypbench.errors import UserError
from fypbench.sample import COCO17_NAMES
from fypbench.world.mini import motion
from fypbench.world.mini.motion import (
    JOINT_INDEX, JOINT_NAMES, PROCEDURAL_MOTIONS, REAL_CLIPS, MotionSpec, clip_duration, joints3d,
)

# (parent, child, expected length in metres or None when only constancy is checked)
BONES = [
    ("left_hip", "left_knee", 0.4215), ("right_hip", "right_knee", 0.4215),
    ("left_knee", "left_ankle", 0.4099), ("right_knee", "right_ankle", 0.4099),
    ("left_shoulder", "left_elbow", 0.2748), ("right_shoulder", "right_elbow", 0.2748),
    ("left_elbow", "left_wrist", 0.2589), ("right_elbow", "right_wrist", 0.2589),
    ("left_hip", "right_hip", 0.1698), ("left_shoulder", "right_shoulder", 0.3662),
    ("neck", "head", 0.175), ("head", "nose", None), ("left_eye", "right_eye", 0.07),
    ("left_ear", "right_ear", 0.196), ("left_ankle", "left_toe", None), ("right_wrist", "right_hand", 0.07),
    ("neck", "left_shoulder", None), ("neck", "right_shoulder", None), ("pelvis", "left_hip", 0.0849),
]


def _bone_lengths(joints: np.ndarray) -> np.ndarray:
    return np.stack([np.linalg.norm(joints[:, JOINT_INDEX[b]] - joints[:, JOINT_INDEX[a]], axis=-1)
                     for a, b, _ in BONES], axis=1)


def _check_bones(joints: np.ndarray, label: str) -> None:
    lengths = _bone_lengths(joints)
    assert np.all(np.isfinite(lengths)), label
    spread = lengths.max(axis=0) - lengths.min(axis=0)
    assert spread.max() < 1e-9, f"{label}: bone {BONES[int(spread.argmax())][:2]} varies by {spread.max()}"
    for (a, b, expected), value in zip(BONES, lengths[0]):
        if expected is not None:
            assert value == pytest.approx(expected, abs=1e-3), f"{label}: {a}-{b}"


def test_names() -> None:
    assert JOINT_NAMES[:17] == COCO17_NAMES
    assert JOINT_NAMES[17:] == ("head", "neck", "pelvis", "left_toe", "right_toe", "left_hand", "right_hand")
    assert len(REAL_CLIPS) == 20 and len(PROCEDURAL_MOTIONS) == 12
    assert {"walk", "run", "dance_a", "getup_faceup", "walker_forward", "walker_turn_left0"} <= set(REAL_CLIPS)


@pytest.mark.parametrize("name", REAL_CLIPS)
def test_real_clip_bones_constant_over_loops_and_mirror(name: str) -> None:
    duration = clip_duration(name)
    # 2.5 cycles at an off-grid rate: interpolation, loop seams and (for "none") the held end are all covered
    spec = MotionSpec("real", name, num_frames=40, fps=30.0, stride=1, speed=2.5 * duration / (40 / 30.0))
    joints = joints3d(spec)
    assert joints.shape == (40, len(JOINT_NAMES), 3)
    _check_bones(joints, name)
    _check_bones(joints3d(MotionSpec("real", name, num_frames=12, mirror=True, start=0.3)), name + " mirrored")


@pytest.mark.parametrize("name", PROCEDURAL_MOTIONS)
def test_procedural_bones_constant(name: str) -> None:
    spec = MotionSpec("procedural", name, num_frames=24, stride=2, amplitude=1.4, jitter=0.1, seed=3)
    joints = joints3d(spec)
    _check_bones(joints, name)
    # the motion actually moves
    assert np.ptp(joints[:, :17] - joints[:, [JOINT_INDEX["pelvis"]]], axis=0).max() > 0.05


def test_clip_durations_match_reference_table() -> None:
    assert clip_duration("walk") == pytest.approx(1.27, abs=0.01)
    assert clip_duration("backflip") == pytest.approx(1.75, abs=0.01)
    assert clip_duration("getup_faceup") == pytest.approx(3.77, abs=0.01)
    assert clip_duration("walk", kind="procedural") > 0
    with pytest.raises(ValueError):
        clip_duration("nope")


@pytest.mark.parametrize("kind,name", [("real", "walk"), ("real", "punch"), ("procedural", "wave"),
                                       ("procedural", "box")])
def test_mirror_swaps_sides_and_negates_z(kind: str, name: str) -> None:
    base = joints3d(MotionSpec(kind, name, num_frames=6, start=0.2))
    mirrored = joints3d(MotionSpec(kind, name, num_frames=6, start=0.2, mirror=True))
    swap = [JOINT_INDEX[n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")]
            for n in JOINT_NAMES]
    expected = base[:, swap] * np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(mirrored, expected, atol=1e-9)
    assert not np.allclose(mirrored, base)


def test_wrap_clip_loops_with_root_translation() -> None:
    duration = clip_duration("walk")
    first = joints3d(MotionSpec("real", "walk", num_frames=4, start=0.1))
    later = joints3d(MotionSpec("real", "walk", num_frames=4, start=0.1 + 2 * duration))
    shift = later - first
    # every joint moved by the same horizontal offset: two cycles of forward travel
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:1, :1], shift.shape), atol=1e-9)
    assert shift[0, 0, 1] == pytest.approx(0.0, abs=1e-9)
    assert shift[0, 0, 0] > 2.0


def test_turning_clip_keeps_turning_after_a_loop() -> None:
    duration = clip_duration("walker_turn_left0")
    clip = motion.load_clip("walker_turn_left0")
    start_heading = motion.root_heading(clip.frames[0])
    end_heading = motion.root_heading(clip.frames[-1])
    after_one = motion.pose_sequence(MotionSpec("real", "walker_turn_left0", num_frames=1, start=duration)).heading
    after_two = motion.pose_sequence(MotionSpec("real", "walker_turn_left0", num_frames=1, start=2 * duration)).heading
    step = end_heading - start_heading
    assert abs(math.degrees(step)) > 20
    assert after_one == pytest.approx(end_heading, abs=1e-6)
    assert math.remainder(after_two - (start_heading + 2 * step), 2 * math.pi) == pytest.approx(0.0, abs=1e-6)


def test_none_clip_holds_last_frame() -> None:
    duration = clip_duration("kick")
    assert motion.load_clip("kick").loop == "none"
    held = joints3d(MotionSpec("real", "kick", num_frames=5, start=duration + 0.5))
    last = motion.forward_kinematics(motion.load_clip("kick").frames[-1:])
    np.testing.assert_allclose(held, np.broadcast_to(last, held.shape), atol=1e-9)
    moving = joints3d(MotionSpec("real", "kick", num_frames=5, start=0.2))
    assert np.abs(np.diff(moving, axis=0)).max() > 0.01


def test_time_resampling_and_speed() -> None:
    # stride 4 at 30 fps == stride 2 at 15 fps; speed 2 == double stride
    a = joints3d(MotionSpec("real", "run", num_frames=6, fps=30.0, stride=4))
    b = joints3d(MotionSpec("real", "run", num_frames=6, fps=15.0, stride=2))
    c = joints3d(MotionSpec("real", "run", num_frames=3, stride=4, speed=2.0))
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a[::2], c, atol=1e-12)
    # keyframe times reproduce the clip's keyframes exactly
    clip = motion.load_clip("run")
    np.testing.assert_allclose(motion.sample_clip("run", clip.times[:-1]), clip.frames[:-1], atol=1e-9)


def test_procedural_jitter_and_amplitude() -> None:
    base = joints3d(MotionSpec("procedural", "squat", num_frames=4))
    same = joints3d(MotionSpec("procedural", "squat", num_frames=4, jitter=0.1, seed=5))
    again = joints3d(MotionSpec("procedural", "squat", num_frames=4, jitter=0.1, seed=5))
    other = joints3d(MotionSpec("procedural", "squat", num_frames=4, jitter=0.1, seed=6))
    np.testing.assert_array_equal(same, again)
    assert not np.allclose(same, other) and not np.allclose(same, base)
    small = joints3d(MotionSpec("procedural", "squat", num_frames=4, amplitude=0.5))
    pelvis = JOINT_INDEX["pelvis"]
    assert np.ptp(small[:, pelvis, 1]) < np.ptp(base[:, pelvis, 1])


def test_motion_spec_dict_round_trip() -> None:
    spec = MotionSpec("procedural", "dance", num_frames=5, start=0.4, speed=1.2, mirror=True, view=-30.0,
                      pitch=5.0, amplitude=0.8, jitter=0.05, seed=11)
    data = json.loads(json.dumps(spec.to_dict()))
    assert MotionSpec.from_dict(data) == spec
    assert MotionSpec.from_dict({"kind": "real", "name": "walk", "fps": 30, "num_frames": 8.0}) == \
        MotionSpec("real", "walk")


@pytest.mark.parametrize("data,field", [
    ({"kind": "real", "name": "walk", "colour": "red"}, "colour"),
    ({"name": "walk"}, "kind"),
    ({"kind": "real"}, "name"),
    ({"kind": "real", "name": "moonwalk"}, "name"),
    ({"kind": "procedural", "name": "spinkick"}, "name"),
    ({"kind": "video", "name": "walk"}, "kind"),
    ({"kind": "real", "name": "walk", "num_frames": "8"}, "num_frames"),
    ({"kind": "real", "name": "walk", "num_frames": 0}, "num_frames"),
    ({"kind": "real", "name": "walk", "stride": 1.5}, "stride"),
    ({"kind": "real", "name": "walk", "speed": 0.0}, "speed"),
    ({"kind": "real", "name": "walk", "fps": float("nan")}, "fps"),
    ({"kind": "real", "name": "walk", "start": -1.0}, "start"),
    ({"kind": "real", "name": "walk", "mirror": "yes"}, "mirror"),
    ({"kind": "real", "name": "walk", "pitch": 95.0}, "pitch"),
    ({"kind": "real", "name": "walk", "jitter": 0.1}, "jitter"),
    ({"kind": "real", "name": "walk", "amplitude": 2.0}, "amplitude"),
    ({"kind": "procedural", "name": "walk", "seed": -1}, "seed"),
    ({"kind": "procedural", "name": "walk", "seed": True}, "seed"),
])
def test_motion_spec_from_dict_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValueError) as info:
        MotionSpec.from_dict(data)
    assert isinstance(info.value, UserError)
    assert repr(field) in str(info.value)
    assert "\n" not in str(info.value)


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        MotionSpec.from_dict(["real", "walk"])  # type: ignore[arg-type]


def test_vendored_clips_match_notice_checksums() -> None:
    import hashlib
    import re
    from importlib import resources

    folder = resources.files("fypbench.world.mini.data").joinpath("motions")
    notice = folder.joinpath("NOTICE.md").read_text(encoding="utf-8")
    listed = dict((path, digest) for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", notice, re.M))
    assert len(listed) == 20
    for path, digest in listed.items():
        data = folder.joinpath(*path.split("/")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, path


@pytest.mark.parametrize("name,loop,frames", [("walk", "wrap", 39), ("punch", "none", 65), ("spin", "wrap", 107),
                                              ("getup_faceup", "none", 227), ("walker_turn_right1", "wrap", 38)])
def test_clip_headers(name: str, loop: str, frames: int) -> None:
    clip = motion.load_clip(name)
    assert clip.loop == loop and clip.frames.shape == (frames, 44)
