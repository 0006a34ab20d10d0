"""The unit of a protocol: one (prompt, pose sequence, seed) to be turned into one video by every method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# OpenPose-18 (COCO-18 body order): index i takes COCO index OPENPOSE18_FROM_COCO[i]; neck (-1) is the
# shoulder midpoint.
OPENPOSE18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
OPENPOSE18_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)


def coco17_to_openpose18(keypoints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) COCO-17 (x, y, visibility) -> (..., 18, 3) OpenPose-18; neck = shoulder midpoint,
    visible only when both shoulders are."""
    keypoints = np.asarray(keypoints)
    if keypoints.shape[-2:] != (17, 3):
        raise ValueError(f"expected (..., 17, 3) keypoints, got {keypoints.shape}")
    out = np.empty(keypoints.shape[:-2] + (18, 3), dtype=keypoints.dtype)
    for i, j in enumerate(OPENPOSE18_FROM_COCO):
        if j >= 0:
            out[..., i, :] = keypoints[..., j, :]
    shoulders = keypoints[..., [5, 6], :]
    out[..., 1, :2] = shoulders[..., :2].mean(axis=-2)
    out[..., 1, 2] = shoulders[..., 2].min(axis=-1)
    return out


@dataclass(frozen=True, eq=False)
class Sample:
    """One protocol sample.

    keypoints: (F, 17, 3) float32, COCO-17 order; x, y normalised to [0, 1] of the frame's width and
    height; the third value is visibility (1 = inside the frame, 0 = not visible).
    openpose: (F, 18, 3), the same pose in OpenPose-18 order (neck added).
    source: where a world renders the sample's neutral-appearance source video from (mini world: the
    motion and camera), or None when the protocol has no source video.
    seed: fixes the sample's initial noise for every method (see fypbench.seeding).
    """

    id: str
    prompt: str
    keypoints: np.ndarray
    openpose: np.ndarray
    seed: int
    source: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    def to_record(self) -> dict[str, Any]:
        """The JSONL record (poses are stored separately, in the protocol's NPZ)."""
        return {"id": self.id, "prompt": self.prompt, "seed": self.seed, "source": self.source,
                "tags": dict(self.tags)}
