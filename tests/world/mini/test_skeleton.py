"""Skeleton maps: keypose colours and widths, invisible joints, OpenPose-18 mapping and style."""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.sample import COCO17_NAMES, OPENPOSE18_NAMES, coco17_to_openpose18
from fypbench.world.mini import skeleton
from fypbench.world.mini.camera import keypoints_normalised
from fypbench.world.mini.motion import MotionSpec
from fypbench.world.mini.skeleton import (
    KEYPOSE_CENTRE, KEYPOSE_LEFT, KEYPOSE_RIGHT, draw_keypose, draw_keypose_video, draw_openpose,
    draw_openpose_video,
)

COCO = {name: i for i, name in enumerate(COCO17_NAMES)}
OP = {name: i for i, name in enumerate(OPENPOSE18_NAMES)}


def _t_pose() -> np.ndarray:
    """A frontal figure, hand-placed (x, y normalised): the subject's left on the viewer's right."""
    points = {
        "nose": (0.50, 0.16), "left_eye": (0.53, 0.13), "right_eye": (0.47, 0.13),
        "left_ear": (0.56, 0.15), "right_ear": (0.44, 0.15),
        "left_shoulder": (0.62, 0.30), "right_shoulder": (0.38, 0.30),
        "left_elbow": (0.80, 0.30), "right_elbow": (0.20, 0.30),
        "left_wrist": (0.95, 0.30), "right_wrist": (0.05, 0.30),
        "left_hip": (0.58, 0.60), "right_hip": (0.42, 0.60),
        "left_knee": (0.60, 0.78), "right_knee": (0.40, 0.78),
        "left_ankle": (0.60, 0.95), "right_ankle": (0.40, 0.95),
    }
    out = np.ones((17, 3), np.float32)
    for name, (x, y) in points.items():
        out[COCO[name], :2] = (x, y)
    return out


def _pixel(image: np.ndarray, x: float, y: float) -> tuple[int, ...]:
    height, width = image.shape[:2]
    return tuple(int(v) for v in image[int(y * height), int(x * width)])


def test_keypose_colours_at_known_pixels() -> None:
    image = draw_keypose(_t_pose(), 256)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert _pixel(image, 0.71, 0.30) == KEYPOSE_LEFT        # left upper arm
    assert _pixel(image, 0.12, 0.30) == KEYPOSE_RIGHT       # right forearm
    assert _pixel(image, 0.60, 0.87) == KEYPOSE_LEFT        # left shin
    assert _pixel(image, 0.41, 0.69) == KEYPOSE_RIGHT       # right thigh
    assert _pixel(image, 0.50, 0.30) == KEYPOSE_CENTRE      # shoulder line
    assert _pixel(image, 0.50, 0.60) == KEYPOSE_CENTRE      # hip line
    assert _pixel(image, 0.50, 0.45) == (0, 0, 0)           # inside the torso: background
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert colours == {(0, 0, 0), KEYPOSE_LEFT, KEYPOSE_RIGHT, KEYPOSE_CENTRE}


@pytest.mark.parametrize("side,expected", [(64, 1), (256, 3), (512, 6), (1080, 13)])
def test_keypose_line_width_scales(side: int, expected: int) -> None:
    assert skeleton.keypose_line_width(side, side) == expected
    image = draw_keypose(_t_pose(), side)
    column = int(0.71 * side)  # across the horizontal left upper arm
    lit = np.flatnonzero(image[:, column].any(axis=-1))
    assert len(lit) == expected


def test_keypose_non_square_and_pixel_convention() -> None:
    image = draw_keypose(_t_pose(), (90, 160))
    assert image.shape == (90, 160, 3)
    # y = 0.30 of 90 rows is the edge between rows 26 and 27: a 1-px line lands on one of them
    column = image[:, int(0.71 * 160)]
    lit = np.flatnonzero(column.any(axis=-1))
    assert len(lit) == 1 and lit[0] in (26, 27)
    assert tuple(column[lit[0]]) == KEYPOSE_LEFT
    # x of the vertical left shin: 0.60 of 160 columns = 96.0, the edge between columns 95 and 96
    row = image[int(0.87 * 90)]
    assert set(np.flatnonzero(row.any(axis=-1))) & {95, 96}
    with pytest.raises(ValueError):
        draw_keypose(_t_pose(), (0, 10))
    with pytest.raises(ValueError):
        draw_keypose(np.zeros((18, 3)), 64)


def test_invisible_joints_draw_nothing() -> None:
    pose = _t_pose()
    pose[:, 2] = 0.0
    assert draw_keypose(pose, 128).max() == 0
    assert draw_openpose(coco17_to_openpose18(pose), 128).max() == 0
    pose = _t_pose()
    pose[COCO["left_elbow"], 2] = 0.0
    image = draw_keypose(pose, 256)
    assert _pixel(image, 0.71, 0.30) == (0, 0, 0)  # left upper arm gone
    assert _pixel(image, 0.87, 0.30) == (0, 0, 0)  # left forearm gone
    assert _pixel(image, 0.12, 0.30) == KEYPOSE_RIGHT
    # with the all-ones default visibility the arm is back
    assert _pixel(draw_keypose(pose[:, :2], 256), 0.71, 0.30) == KEYPOSE_LEFT


def test_openpose_mapping_and_style() -> None:
    pose = _t_pose()
    op = coco17_to_openpose18(pose)
    np.testing.assert_allclose(op[OP["neck"], :2], [0.50, 0.30])
    np.testing.assert_array_equal(op[OP["right_wrist"]], pose[COCO["right_wrist"]])
    image = draw_openpose(op, 512)
    assert image.shape == (512, 512, 3)
    # limbs are the table colour at 60 % over black: right upper arm (limb 2, orange)
    assert _pixel(image, 0.29, 0.30) == (153, 102, 0)
    # left shin (limb 11: left knee -> left ankle)
    assert _pixel(image, 0.60, 0.87) == (0, 51, 153)
    # joint circles keep their full colour where no limb covers them: beside the right wrist, across the arm
    x, y = int(0.05 * 512), int(0.30 * 512)
    assert tuple(image[y - 3, x]) == skeleton.OPENPOSE_COLOURS[OP["right_wrist"]]
    assert _pixel(image, 0.50, 0.22) == (0, 0, 153)  # neck -> nose (limb 12, blue)
    assert _pixel(image, 0.50, 0.45) == (0, 0, 0)    # between the two neck -> hip limbs
    np.testing.assert_array_equal(skeleton.draw_openpose_from_coco(pose, 512), image)


def test_videos_stack_frames() -> None:
    kp = keypoints_normalised(MotionSpec("real", "walk", num_frames=3))
    maps = draw_keypose_video(kp, (32, 48))
    assert maps.shape == (3, 32, 48, 3)
    np.testing.assert_array_equal(maps[1], draw_keypose(kp[1], (32, 48)))
    op = draw_openpose_video(coco17_to_openpose18(kp), 64)
    assert op.shape == (3, 64, 64, 3) and op.max() > 0
    np.testing.assert_array_equal(skeleton.draw_openpose_from_coco(kp, 64), op)
    with pytest.raises(ValueError):
        draw_keypose_video(kp[0], 32)
