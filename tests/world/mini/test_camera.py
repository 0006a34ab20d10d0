"""Camera: view conventions, framing over all frames, visibility, resolution independence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fypbench.sample import COCO17_NAMES
from fypbench.world.mini import camera, motion
from fypbench.world.mini.appearance import NEUTRAL
from fypbench.world.mini.camera import keypoints_normalised
from fypbench.world.mini.motion import JOINT_INDEX, MotionSpec
from fypbench.world.mini.render import render_video

COCO = {name: i for i, name in enumerate(COCO17_NAMES)}


@pytest.mark.parametrize("spec", [MotionSpec("real", "walk"), MotionSpec("procedural", "wave"),
                                  MotionSpec("real", "walker_turn_right0", start=2.0)])
def test_frontal_view_puts_the_characters_left_on_the_viewers_right(spec: MotionSpec) -> None:
    kp = keypoints_normalised(spec)[0]
    for part in ("shoulder", "hip", "eye", "ear"):
        assert kp[COCO[f"left_{part}"], 0] > kp[COCO[f"right_{part}"], 0], part
    # head above the hips (image y grows downwards)
    assert kp[COCO["nose"], 1] < kp[COCO["left_hip"], 1]


def test_back_and_profile_views() -> None:
    back = keypoints_normalised(MotionSpec("real", "walk", view=180.0))[0]
    assert back[COCO["left_shoulder"], 0] < back[COCO["right_shoulder"], 0]
    # view +90: the camera on the character's right side, the character faces the viewer's right
    profile = MotionSpec("procedural", "arms_raise", view=90.0)
    sequence = motion.pose_sequence(profile)
    projected = camera.view_for(profile, sequence).project(sequence.joints)
    assert projected[0, JOINT_INDEX["nose"], 0] > projected[0, JOINT_INDEX["head"], 0]
    assert projected[0, JOINT_INDEX["right_shoulder"], 2] < projected[0, JOINT_INDEX["left_shoulder"], 2]


def test_view_is_relative_to_the_start_heading() -> None:
    # walker_turn_right0 started one loop later faces ~100 degrees away; view 0 is still frontal
    spec = MotionSpec("real", "walker_turn_right0", start=motion.clip_duration("walker_turn_right0"))
    sequence = motion.pose_sequence(spec)
    assert abs(math.degrees(sequence.heading)) > 60
    projected = camera.view_for(spec, sequence).project(sequence.joints)
    assert projected[0, JOINT_INDEX["nose"], 2] < projected[0, JOINT_INDEX["head"], 2]  # nose nearer: facing us


def test_pitch_looks_down_from_above() -> None:
    level = camera.camera_rotation(0.0, 0.0)
    above = camera.camera_rotation(0.0, math.radians(20))
    far_point = np.array([-1.0, 0.0, 0.0])  # behind the character, seen from +X
    assert (above @ far_point)[1] < (level @ far_point)[1]  # appears higher in the image


def test_framing_fits_all_frames_including_global_motion() -> None:
    spec = MotionSpec("real", "run", num_frames=16, view=90.0)
    kp = keypoints_normalised(spec)
    assert kp.dtype == np.float32 and kp.shape == (16, 17, 3)
    assert np.all(kp[..., 2] == 1.0)
    assert kp[..., :2].min() > camera.FRAME_MARGIN and kp[..., :2].max() < 1 - camera.FRAME_MARGIN
    # the runner crosses the frame rather than staying centred
    hips = kp[:, [COCO["left_hip"], COCO["right_hip"]], 0].mean(axis=1)
    assert hips[-1] - hips[0] > 0.3


def test_visibility_flag_marks_points_outside_the_frame() -> None:
    spec = MotionSpec("procedural", "walk", num_frames=2)
    sequence = motion.pose_sequence(spec)
    view = camera.view_for(spec, sequence)
    zoom = 3.0  # about the frame centre: the hips stay inside, head and feet leave the frame
    zoomed = camera.CameraView(view.yaw, view.pitch,
                               camera.Framing(view.framing.scale * zoom, 0.5 + zoom * (view.framing.offset_x - 0.5),
                                              0.5 + zoom * (view.framing.offset_y - 0.5)))
    kp = camera.coco_keypoints(zoomed.project(sequence.joints))
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= 1)
    assert inside[:, COCO["left_hip"]].all() and not inside[:, COCO["nose"]].any()
    np.testing.assert_array_equal(kp[..., 2], inside.astype(np.float32))
    np.testing.assert_array_equal(camera.visibility(np.array([[0.0, 1.0], [1.0001, 0.5], [0.5, -0.01]])),
                                  [1.0, 0.0, 0.0])


def test_keypoints_are_resolution_independent() -> None:
    spec = MotionSpec("real", "jump", num_frames=3, view=30.0)
    small = render_video(spec, NEUTRAL, size=32)
    large = render_video(spec, NEUTRAL, size=96)
    np.testing.assert_array_equal(small.keypoints, large.keypoints)
    np.testing.assert_array_equal(small.keypoints, keypoints_normalised(spec))
    # the figure sits at the same normalised place at both sizes
    for video in (small, large):
        size = video.mask.shape[-1]
        ys, xs = np.mgrid[0:size, 0:size]
        weight = video.mask[0]
        centre = np.array([(weight * (xs + 0.5)).sum(), (weight * (ys + 0.5)).sum()]) / weight.sum() / size
        if video is small:
            small_centre = centre
    assert np.abs(centre - small_centre).max() < 0.02
