"""The attribute oracle: it reads the prompt's attributes back off ground-truth renders and notices changes."""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.world.mini import oracle
from fypbench.world.mini.appearance import Appearance
from fypbench.world.mini.motion import MotionSpec
from fypbench.world.mini.render import render_video

VALIDATION_RENDERS = 100  # fixed: oracle.validation_render(0) ... (99), all styles, real and procedural motion


def test_expected_attributes_follow_the_grammar():
    assert oracle.expected_attributes("A man, wearing red clothes, is walking on the beach, cartoon") == \
        oracle.Attributes("man", "red", "on the beach", "cartoon")
    assert oracle.expected_attributes("The hulk is boxing in the snow") == \
        oracle.Attributes("hulk", None, "in the snow", "")
    with pytest.raises(ValueError, match="cannot parse prompt"):
        oracle.expected_attributes("A hulk in space")


def test_round_trip_on_ground_truth_renders():
    accuracy = oracle.validate(VALIDATION_RENDERS)
    overall = accuracy["all"]
    assert overall["renders"] == VALIDATION_RENDERS
    assert len(accuracy) > 7  # every style appears
    for field in ("character", "colour"):
        assert overall[field] >= 0.95, (field, accuracy)
    for field in ("scene", "style"):
        assert overall[field] >= 0.98, (field, accuracy)


def _video(appearance: Appearance, style_seed: int = 3):
    spec = MotionSpec("real", "walk", num_frames=4, stride=6, view=20.0)
    return render_video(spec, appearance, size=64, seed=style_seed)


def test_ground_truth_video_scores_one_and_perturbations_are_detected():
    truth = Appearance("man", "red", "on the beach", "at sunset")
    video = _video(truth)
    prompt = "A man, wearing red clothes, is walking on the beach, at sunset"
    assert oracle.attribute_accuracy(video.frames, video.keypoints, prompt) == {
        "character": 1.0, "colour": 1.0, "scene": 1.0, "style": 1.0, "all": 1.0}
    # the same frames judged against prompts that differ in one attribute
    wrong_colour = oracle.attribute_accuracy(video.frames, video.keypoints,
                                             "A man, wearing blue clothes, is walking on the beach, at sunset")
    assert wrong_colour["colour"] == 0.0 and wrong_colour["character"] == 1.0 and wrong_colour["all"] == 0.0
    wrong_scene = oracle.attribute_accuracy(video.frames, video.keypoints,
                                            "A man, wearing red clothes, in the desert, at sunset")
    assert wrong_scene["scene"] == 0.0 and wrong_scene["style"] == 1.0
    wrong_style = oracle.attribute_accuracy(video.frames, video.keypoints, "A man, wearing red clothes, on the beach")
    assert wrong_style["style"] == 0.0 and wrong_style["scene"] == 1.0


@pytest.mark.parametrize("rendered, measured_field, expected_value", [
    (Appearance("man", "green", "in the park", ""), "colour", "green"),         # recoloured shirt
    (Appearance("girl", "red", "in the park", ""), "character", "girl"),       # another character, same colour
    (Appearance("man", "red", "in the street", "pixel art"), "style", "pixel art"),
])
def test_a_perturbed_render_is_read_as_what_it_shows(rendered, measured_field, expected_value):
    """Frames rendered with one attribute changed against the prompt "A man, wearing red clothes, in the park":
    the oracle reports the rendered value, so the changed field fails and the others pass."""
    video = _video(rendered)
    prompt = "A man, wearing red clothes, in the park"
    measured = oracle.measure_attributes(video.frames[0], video.keypoints[0])
    assert getattr(measured, measured_field) == expected_value
    accuracy = oracle.attribute_accuracy(video.frames, video.keypoints, prompt)
    changed = {field for field in oracle.FIELDS
               if getattr(rendered, field) != getattr(oracle.expected_attributes(prompt), field)}
    for field in oracle.FIELDS:
        assert accuracy[field] == (0.0 if field in changed else 1.0), (field, accuracy)


def test_within_block_variance_share():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    pixelated = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)
    assert oracle.within_block_variance_share(pixelated, 4) == 0.0
    noise = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert oracle.within_block_variance_share(noise, 4) == pytest.approx(15 / 16, abs=0.03)
    assert oracle.within_block_variance_share(np.full((64, 64, 3), 7, np.uint8), 4) == 0.0
    minecraft = _video(Appearance("man", "red", "in the park", "minecraft")).frames[0]
    assert oracle.within_block_variance_share(minecraft, 4) == 0.0


@pytest.mark.parametrize("index", [3, 79, 115])
def test_a_blurred_render_is_not_read_as_minecraft(index, monkeypatch):
    """A render that lost its fine detail (Gaussian blur, radius 1.2 px) matches the block-averaged minecraft
    reference best; it has no blocks, so the oracle reads the style it was rendered in."""
    from PIL import Image, ImageFilter

    frame, keypoints, prompt = oracle.validation_render(index)
    blurred = np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(1.2)))
    expected = oracle.expected_attributes(prompt).style
    assert expected in ("van gogh style", "cartoon")
    assert oracle.measure_attributes(blurred, keypoints).style == expected
    monkeypatch.setattr(oracle, "MINECRAFT_MAX_WITHIN_BLOCK_SHARE", np.inf)  # without the block check
    assert oracle.measure_attributes(blurred, keypoints).style == "minecraft"


def test_validate_reports_blurred_renders_read_as_minecraft(monkeypatch):
    blurred = oracle.validate(1, start=3, blur=1.2)["all"]  # validation render 3: van gogh style
    assert blurred["style"] == 1.0 and blurred["read as minecraft"] == 0.0
    monkeypatch.setattr(oracle, "MINECRAFT_MAX_WITHIN_BLOCK_SHARE", np.inf)
    assert oracle.validate(1, start=3, blur=1.2)["all"]["read as minecraft"] == 1.0
    with pytest.raises(SystemExit):
        oracle.main(["--blur", "-1"])


def test_confidences_and_posteriors():
    video = _video(Appearance("spider man", None, "on the moon", "van gogh style"))
    measured = oracle.measure_attributes(video.frames[0], video.keypoints[0])
    assert measured.attributes() == oracle.Attributes("spider man", None, "on the moon", "van gogh style")
    assert set(measured.confidence) == set(oracle.FIELDS)
    assert all(0.5 < value <= 1.0 for value in measured.confidence.values())
    assert abs(sum(measured.subject_posterior.values()) - 1.0) < 1e-6
    assert abs(sum(measured.background_posterior.values()) - 1.0) < 1e-6


def test_bad_inputs():
    frame = np.zeros((64, 64, 3), np.uint8)
    keypoints = np.full((17, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="uint8"):
        oracle.measure_attributes(frame.astype(np.float32), keypoints)
    with pytest.raises(ValueError, match="17, 3"):
        oracle.measure_attributes(frame, keypoints[:16])
    with pytest.raises(ValueError, match="same F"):
        oracle.attribute_accuracy(frame[None], np.stack([keypoints, keypoints]), "A man, on the moon")
