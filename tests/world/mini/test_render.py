"""Rendering: determinism, keypoints, alpha mask, every scene and style, palette at the pose."""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.sample import COCO17_NAMES
from fypbench.world.mini import camera, mannequin, motion, scene
from fypbench.world.mini.appearance import NEUTRAL, SCENES, STYLES, Appearance
from fypbench.world.mini.camera import keypoints_normalised
from fypbench.world.mini.motion import JOINT_NAMES, MotionSpec
from fypbench.world.mini.render import RenderedVideo, render_video

COCO = {name: i for i, name in enumerate(COCO17_NAMES)}


def test_render_is_deterministic_and_typed() -> None:
    spec = MotionSpec("procedural", "dance", num_frames=3, jitter=0.05, seed=2, view=20.0)
    look = Appearance("girl", "purple", "in the snow", "van gogh style")
    first = render_video(spec, look, size=48, seed=7)
    second = render_video(spec, look, size=48, seed=7)
    assert isinstance(first, RenderedVideo)
    assert first.frames.dtype == np.uint8 and first.frames.shape == (3, 48, 48, 3)
    assert first.mask.dtype == np.float32 and first.mask.shape == (3, 48, 48)
    assert first.keypoints.dtype == np.float32 and first.keypoints.shape == (3, 17, 3)
    assert first.frames.tobytes() == second.frames.tobytes()
    assert first.mask.tobytes() == second.mask.tobytes()
    # the scene seed moves the snowflakes only
    other = render_video(spec, look, size=48, seed=8)
    assert not np.array_equal(first.frames, other.frames)
    np.testing.assert_array_equal(first.mask, other.mask)


@pytest.mark.parametrize("spec", [MotionSpec("real", "cartwheel", num_frames=4, view=-45.0, pitch=8.0),
                                  MotionSpec("procedural", "turn", num_frames=4, mirror=True)])
def test_keypoints_match_camera(spec: MotionSpec) -> None:
    video = render_video(spec, NEUTRAL, size=32)
    np.testing.assert_array_equal(video.keypoints, keypoints_normalised(spec))


def test_mask_is_the_figure_alpha() -> None:
    spec = MotionSpec("real", "walk", num_frames=4)
    video = render_video(spec, NEUTRAL, size=64)
    assert video.mask.min() >= 0.0 and video.mask.max() <= 1.0
    assert video.mask.max() == 1.0
    soft = (video.mask > 0.0) & (video.mask < 1.0)
    assert soft.any()  # anti-aliased edges
    coverage = video.mask.mean(axis=(1, 2))
    assert np.all((coverage > 0.03) & (coverage < 0.4))
    # opaque at the torso keypoints, empty in the corners
    kp = video.keypoints
    for frame in range(4):
        torso = kp[frame, [COCO["left_shoulder"], COCO["right_shoulder"], COCO["left_hip"], COCO["right_hip"]], :2]
        x, y = (torso.mean(axis=0) * 64).astype(int)
        assert video.mask[frame, y, x] == 1.0
        assert video.mask[frame, :3, :3].max() == 0.0
    # where the mask is 0 the frame is the background itself
    background = scene.paint_scene(NEUTRAL.scene, 64, 0)
    empty = video.mask[0] == 0.0
    np.testing.assert_array_equal(video.frames[0][empty], background[empty])


def test_figure_layer_is_premultiplied_rgba() -> None:
    spec = MotionSpec("procedural", "box", num_frames=1)
    sequence = motion.pose_sequence(spec)
    view = camera.view_for(spec, sequence)
    layer = mannequin.render_figure(view.project(sequence.joints)[0], view.framing.scale, NEUTRAL.palette(), 40)
    assert layer.shape == (40, 40, 4) and layer.dtype == np.float32
    assert np.all(layer[..., :3] <= layer[..., 3:] + 1e-6)  # premultiplied colour never exceeds alpha
    assert np.all(layer[layer[..., 3] == 0][:, :3] == 0)
    with pytest.raises(ValueError):
        mannequin.render_figure(np.zeros((17, 3)), 0.3, NEUTRAL.palette(), 40)


@pytest.mark.parametrize("scene_name", list(SCENES))
def test_every_scene_and_style_renders(scene_name: str) -> None:
    spec = MotionSpec("procedural", "wave", num_frames=1)
    plain = render_video(spec, Appearance("man", None, scene_name, ""), size=32, seed=1).frames[0]
    assert plain.std() > 5  # a figure on a background, not a flat image
    for style in STYLES[1:]:
        styled = render_video(spec, Appearance("man", None, scene_name, style), size=32, seed=1).frames[0]
        assert styled.shape == (32, 32, 3) and styled.dtype == np.uint8
        assert not np.array_equal(styled, plain), style


def test_styles_have_their_signature() -> None:
    frame = render_video(MotionSpec("real", "walk", num_frames=1), Appearance("man", "red", "in the park", ""),
                         size=64).frames[0]
    grey = scene.apply_style(frame, "black and white")
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])
    sunset = scene.apply_style(frame, "at sunset").astype(int)
    assert (sunset[..., 0] - sunset[..., 2]).mean() > (frame[..., 0].astype(int) - frame[..., 2]).mean() + 30
    for style, block in (("minecraft", 4), ("pixel art", 2)):
        blocky = scene.apply_style(frame, style)
        cells = blocky.reshape(64 // block, block, 64 // block, block, 3)
        assert np.all(cells == cells[:, :1, :, :1]), style  # constant within each block
    cartoon = scene.apply_style(frame, "cartoon")
    assert set(np.unique(cartoon)) <= {0, 85, 170, 255}
    assert (cartoon.sum(axis=-1) == 0).mean() > 0.01  # black edges
    with pytest.raises(ValueError):
        scene.apply_style(frame, "oil painting")


def test_scene_at_any_resolution() -> None:
    small = scene.paint_scene("on the mountain", (24, 40), seed=3)
    large = scene.paint_scene("on the mountain", (96, 160), seed=3)
    assert small.shape == (24, 40, 3) and large.shape == (96, 160, 3)
    shrunk = large.reshape(24, 4, 40, 4, 3).mean(axis=(1, 3))
    assert np.abs(shrunk - small).mean() < 12
    with pytest.raises(ValueError):
        scene.paint_scene("on mars", 32)


@pytest.mark.parametrize("spec", [MotionSpec("real", "walk", num_frames=4),
                                  MotionSpec("real", "dance_a", num_frames=4, view=60.0),
                                  MotionSpec("procedural", "squat", num_frames=4, view=-30.0)])
@pytest.mark.parametrize("colour", ["red", "blue", "green", "yellow"])
def test_shirt_colour_appears_at_the_torso(spec: MotionSpec, colour: str) -> None:
    look = Appearance("man", colour, "grey simple background", "")
    palette = look.palette()
    video = render_video(spec, look, size=64)
    for frame in range(spec.num_frames):
        kp = video.keypoints[frame]
        shoulders = kp[[COCO["left_shoulder"], COCO["right_shoulder"]], :2].mean(axis=0)
        hips = kp[[COCO["left_hip"], COCO["right_hip"]], :2].mean(axis=0)
        x, y = ((0.6 * shoulders + 0.4 * hips) * 64).astype(int)
        pixel = video.frames[frame, y, x].astype(float)
        distances = {slot: np.linalg.norm(pixel - np.array(rgb)) for slot, rgb in palette.items()}
        distances["background"] = np.linalg.norm(pixel - np.array(SCENES[look.scene][0]))
        assert min(distances, key=distances.get) == "shirt", (frame, pixel, distances)


def test_render_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        render_video(MotionSpec("real", "walk"), NEUTRAL, size=4)
    assert len(JOINT_NAMES) == 24
