"""Orthographic camera of the mini world and normalised COCO-17 keypoints.

    python -c "from fypbench.world.mini.camera import keypoints_normalised; from fypbench.world.mini.motion import MotionSpec; print(keypoints_normalised(MotionSpec('real', 'walk'))[0])"

Conventions (reference/mini_world.md §4): at yaw 0 the camera sits on +X looking toward -X, so a character facing
+X is seen frontally; image x = -Z (the character's left appears on the viewer's right), image y = -Y (down),
depth = -X (away from the viewer). The yaw is the character's heading at the first frame plus the spec's view;
pitch (> 0: camera above, looking down) rotates about the camera's horizontal axis.

One framing (scale and offset) is fitted per sequence over all frames with a margin, so global motion stays in
view; it maps metres to normalised image coordinates, x in [0, 1] of the width and y in [0, 1] of the height, for
a square frame at any resolution. Keypoint visibility is 1 inside the frame, else 0 (self-occlusion is not
modelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fypbench.world.mini.motion import JOINT_NAMES, MotionSpec, PoseSequence, pose_sequence

NUM_COCO = 17
# Metres added around the joints when fitting the framing: the body's volume beyond its joints (head top,
# limb radii, hands).
BODY_PAD_M = 0.14
# Fraction of the frame left free on each side of the padded bounding box.
FRAME_MARGIN = 0.08

_WORLD_TO_CAMERA_AXES = np.array([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])


def camera_rotation(yaw: float, pitch: float) -> np.ndarray:
    """(3, 3) matrix taking world points (X fwd, Y up, Z right) to camera (x right, y down, depth away).

    yaw and pitch in radians; yaw = the heading a character must have to be seen frontally.
    """
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    turn = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])  # brings heading `yaw` onto +X
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return tilt @ _WORLD_TO_CAMERA_AXES @ turn


@dataclass(frozen=True)
class Framing:
    """normalised = scale * camera_xy + offset; scale is in normalised units (of the frame side) per metre."""

    scale: float
    offset_x: float
    offset_y: float


def fit_framing(camera_xy: np.ndarray, margin: float = FRAME_MARGIN, pad: float = BODY_PAD_M) -> Framing:
    """The framing that fits every point (any leading shape, last axis x, y in metres) with pad and margin."""
    points = np.asarray(camera_xy, np.float64).reshape(-1, 2)
    low = points.min(axis=0) - pad
    high = points.max(axis=0) + pad
    extent = float(np.max(high - low))
    scale = (1.0 - 2.0 * margin) / extent
    centre = (low + high) / 2.0
    return Framing(scale=scale, offset_x=0.5 - scale * float(centre[0]), offset_y=0.5 - scale * float(centre[1]))


@dataclass(frozen=True)
class CameraView:
    yaw: float    # radians
    pitch: float  # radians
    framing: Framing

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world metres -> (..., 3): normalised x, normalised y, depth in metres (larger = farther)."""
        camera = np.asarray(points, np.float64) @ camera_rotation(self.yaw, self.pitch).T
        out = camera.copy()
        out[..., 0] = self.framing.scale * camera[..., 0] + self.framing.offset_x
        out[..., 1] = self.framing.scale * camera[..., 1] + self.framing.offset_y
        return out


def fit_view(joints: np.ndarray, yaw: float, pitch: float) -> CameraView:
    """A camera at (yaw, pitch) radians whose framing fits all frames of `joints` (F, J, 3)."""
    camera = np.asarray(joints, np.float64) @ camera_rotation(yaw, pitch).T
    return CameraView(yaw=yaw, pitch=pitch, framing=fit_framing(camera[..., :2]))


def view_for(spec: MotionSpec, sequence: PoseSequence | None = None) -> CameraView:
    """The spec's camera: yaw = heading(first frame) + view, framing fitted over all frames."""
    sequence = sequence if sequence is not None else pose_sequence(spec)
    yaw = sequence.heading + math.radians(spec.view)
    return fit_view(sequence.joints, yaw, math.radians(spec.pitch))


def visibility(normalised_xy: np.ndarray) -> np.ndarray:
    """1.0 where (x, y) lies inside the frame [0, 1] x [0, 1], else 0.0."""
    xy = np.asarray(normalised_xy)
    inside = (xy[..., 0] >= 0.0) & (xy[..., 0] <= 1.0) & (xy[..., 1] >= 0.0) & (xy[..., 1] <= 1.0)
    return inside.astype(np.float32)


def coco_keypoints(projected: np.ndarray) -> np.ndarray:
    """(F, J, 3) projected joints (x, y, depth) -> (F, 17, 3) float32 COCO-17 (x, y, visibility)."""
    if projected.shape[-2] != len(JOINT_NAMES):
        raise ValueError(f"expected {len(JOINT_NAMES)} joints, got {projected.shape}")
    xy = projected[..., :NUM_COCO, :2]
    out = np.empty(xy.shape[:-1] + (3,), np.float32)
    out[..., :2] = xy
    out[..., 2] = visibility(xy)
    return out


def keypoints_normalised(spec: MotionSpec) -> np.ndarray:
    """(num_frames, 17, 3) float32 COCO-17 keypoints: x, y in [0, 1] of width/height, visibility 1/0."""
    sequence = pose_sequence(spec)
    return coco_keypoints(view_for(spec, sequence).project(sequence.joints))
