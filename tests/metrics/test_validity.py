"""Metric validity: the AUC helper on hand-built cases, prompt and pose controls, the report on a tiny study."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fypbench.metrics.validity import (
    ATTRIBUTES,
    align_pose,
    attribute_alternatives,
    auc,
    evenly_spaced,
    paired_win_rate,
    render_report,
    run_controls,
    shuffled_order,
)
from fypbench.world.mini.grammar import parse
from tests.metrics.test_pose import StubStep


def test_auc_on_hand_built_cases():
    assert auc([2, 3, 4], [0, 1]) == 1.0
    assert auc([0, 1], [2, 3, 4]) == 0.0
    assert auc([1, 1], [1]) == 0.5  # ties count 1/2
    assert auc([1, 3], [2]) == 0.5
    assert auc([0.9, 0.8, 0.3], [0.5, 0.1]) == pytest.approx(5 / 6)
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40), rng.normal(0, 1, 30)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auc(pos, neg) == pytest.approx(brute)
    with pytest.raises(ValueError, match="non-finite"):
        auc([1.0, math.nan], [0.0])
    with pytest.raises(ValueError, match="positives and negatives"):
        auc([], [0.0])
    assert paired_win_rate([2.0, 1.0], [[1.0, 3.0], [1.0]]) == pytest.approx((1 + 0 + 0.5) / 3)


def test_attribute_alternatives_change_exactly_one_field():
    prompt = "A man, wearing red clothes, is walking on the beach, cartoon"
    truth = parse(prompt)
    for attribute in ATTRIBUTES:
        alternatives = attribute_alternatives(prompt, attribute)
        assert alternatives and prompt not in alternatives
        for text in alternatives:
            parts = parse(text)
            differ = {name for name, a, b in (
                ("character", parts.appearance.character, truth.appearance.character),
                ("colour", parts.appearance.colour, truth.appearance.colour),
                ("scene", parts.appearance.scene, truth.appearance.scene),
                ("style", parts.appearance.style, truth.appearance.style),
                ("verb", parts.verb, truth.verb)) if a != b}
            assert differ == {attribute}, text
    # a coloured man can only become another recolourable character; "an" follows the character
    assert "An astronaut, wearing red clothes, is walking on the beach, cartoon" in attribute_alternatives(
        prompt, "character")
    assert len(attribute_alternatives(prompt, "character")) == 3
    plain = "The hulk, in the snow"
    assert attribute_alternatives(plain, "colour") == [] and attribute_alternatives(plain, "verb") == []
    assert len(attribute_alternatives(plain, "style")) == 7
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_alternatives(plain, "mood")


def test_align_pose_moves_the_other_pose_onto_the_true_box():
    rng = np.random.default_rng(1)
    target = np.concatenate([rng.uniform(0.4, 0.6, (2, 17, 2)), np.ones((2, 17, 1))], axis=2)
    other = np.concatenate([rng.uniform(0.0, 0.2, (2, 17, 2)), np.ones((2, 17, 1))], axis=2)
    moved = align_pose(other, target)
    for t in range(2):
        for axis in (0, 1):
            centre = (moved[t, :, axis].min() + moved[t, :, axis].max()) / 2
            assert centre == pytest.approx((target[t, :, axis].min() + target[t, :, axis].max()) / 2, abs=1e-5)
        height = moved[t, :, 1].max() - moved[t, :, 1].min()
        assert height == pytest.approx(target[t, :, 1].max() - target[t, :, 1].min(), abs=1e-5)
    # the body configuration is kept (a similarity transform)
    ratio = (moved[0, 3, :2] - moved[0, 0, :2]) / (other[0, 3, :2] - other[0, 0, :2])
    assert ratio[0] == pytest.approx(ratio[1], rel=1e-4)


def test_keypoint_smoothness_prefers_the_true_order_of_a_steady_motion():
    from fypbench.metrics.validity import keypoint_smoothness

    base = np.concatenate([np.random.default_rng(2).uniform(0.3, 0.7, (17, 2)), np.ones((17, 1))], axis=1)
    video = np.stack([base + np.array([0.02 * t, 0.0, 0.0]) for t in range(8)])  # a steady drift to the right
    height = np.ptp(base[:, 1])
    assert keypoint_smoothness(video) == pytest.approx(-0.02 / height)
    assert keypoint_smoothness(video[shuffled_order(8, "s00p00")]) < keypoint_smoothness(video)
    assert keypoint_smoothness(np.stack([base, base])) == 0.0
    with pytest.raises(ValueError, match="F >= 2"):
        keypoint_smoothness(video[:1])


def test_sampling_and_shuffling_are_deterministic():
    assert evenly_spaced(256, 1024)[:3] == [0, 4, 8] and len(evenly_spaced(256, 1024)) == 256
    assert evenly_spaced(9, 9) == list(range(9))
    order = shuffled_order(8, "s00p00")
    assert sorted(order) == list(range(8)) and (order != np.arange(8)).any()
    assert (shuffled_order(8, "s00p00") == order).all()


def test_controls_and_report_on_a_tiny_study(tiny_clip_dir):
    from fypbench.methods.reference import ReferenceGenerator
    from fypbench.metrics.clip_metrics import load_local_clip
    from fypbench.protocol import load_protocol

    protocol = load_protocol("fyp-1024")
    samples = [protocol.samples[i] for i in evenly_spaced(10, len(protocol.samples))]
    videos = ReferenceGenerator().generate(samples)
    study = run_controls(samples, videos, load_local_clip(tiny_clip_dir), StubStep(), log=lambda m: None)
    by_name = {c.name: c for c in study.controls}
    assert study.diagnostics["pose detection rate (true videos)"] == [1.0] * len(samples)
    every = [True] * len(samples)
    # exact detections: the true pose wins every comparison
    pck = by_name["PA (pck_0.1h): another sample's pose"].stats(every)
    assert pck["mean_true"] == 1.0 and pck["auc"] == 1.0 and pck["paired"] == 1.0
    assert by_name["PA (pose_mean_oks): another pose on the true box"].stats(every)["auc"] == 1.0
    assert by_name["FC: frames shuffled"].stats(every)["n_videos"] == len(samples)
    assert set(by_name) >= {f"CS: {a} changed" for a in ATTRIBUTES}
    cs = by_name["CS: any one attribute changed"].stats(every)
    assert 0.0 <= cs["auc"] <= 1.0 and cs["n_controls"] > 10 * len(samples)
    report = render_report(study, samples, {"command": "`test`", "git": "abc"})
    assert report.startswith("# Metric validity") and "- command: `test`" in report
    assert "## AUC per tag: camera" in report and "| upright |" in report
    reference = by_name["Reference, exact keypoints: frames shuffled"]
    assert reference.reference and reference.stats(every)["n_videos"] == len(samples)
    assert "| Reference, exact keypoints: frames shuffled |" in report and "(reference) |" in report
    assert "AUC, found in every frame (videos)" in report
