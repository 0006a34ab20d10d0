"""CLIP score and frame consistency on hand-built cases with known answers, plus the open_clip loaders."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from fypbench.errors import UserError
from fypbench.metrics import build_metrics
from fypbench.metrics.base import MetricResult, VideoItem, score_items
from fypbench.metrics.clip_metrics import (
    ClipScore,
    FrameConsistency,
    FrameConsistencyAllPairs,
    _load_weights_into,
    clip_score_clamp_mean,
    clip_score_from_cosines,
    frame_consistency,
    load_clip_for_world,
    load_local_clip,
    load_openai_clip,
)
from tests.metrics.helpers import StubEmbedder, frames_with_codes, make_sample, tiny_clip_model

E0, E1 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]


def _rows_by_metric(rows):
    return {row["metric"]: row for row in rows}


def test_orthogonal_embeddings_give_known_values():
    embedder = StubEmbedder({10: E0, 20: E1}, {"a man is walking": E0})
    item = VideoItem("m", make_sample(num_frames=4), frames_with_codes([10, 20, 10, 20]))
    metrics = [ClipScore(embedder), FrameConsistency(embedder), FrameConsistencyAllPairs(embedder)]
    rows = _rows_by_metric(score_items(metrics, [item]))
    assert rows["clip_score"]["value"] == pytest.approx(50.0)  # cosines 1, 0, 1, 0
    assert rows["fc_clip_consecutive"]["value"] == pytest.approx(0.0)  # every consecutive pair orthogonal
    assert rows["fc_clip_allpairs"]["value"] == pytest.approx(100 * 2 / 6)  # pairs (0,2) and (1,3) identical
    assert json.loads(rows["clip_score"]["extra"])["cosines"] == pytest.approx([1, 0, 1, 0])


def test_image_embeddings_are_computed_once_for_cs_and_fc():
    embedder = StubEmbedder({10: E0, 20: E1}, {"a man is walking": E0})
    items = [VideoItem("m", make_sample(f"s{i}", num_frames=3), frames_with_codes([10, 20, 10])) for i in range(3)]
    score_items([ClipScore(embedder), FrameConsistency(embedder), FrameConsistencyAllPairs(embedder)], items)
    assert embedder.frames_embedded == 9


def test_clamp_per_frame_differs_from_clamping_the_mean():
    cosines = [0.5, -0.3]
    assert clip_score_from_cosines(cosines) == pytest.approx(25.0)
    assert clip_score_clamp_mean(cosines) == pytest.approx(10.0)
    # the same case through the metric: frame 2's embedding has cosine -0.3 with the prompt
    embedder = StubEmbedder({1: [0.5, math.sqrt(0.75), 0.0], 2: [-0.3, math.sqrt(0.91), 0.0]},
                            {"a man is walking": E0})
    item = VideoItem("m", make_sample(num_frames=2), frames_with_codes([1, 2]))
    (row,) = score_items([ClipScore(embedder)], [item])
    assert row["value"] == pytest.approx(25.0)
    assert json.loads(row["extra"])["cosines"] == pytest.approx(cosines, abs=1e-6)


def test_identical_frames_give_fc_100_with_a_real_open_clip_model(tiny_clip_dir):
    embedder = load_local_clip(tiny_clip_dir)
    frame = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    video = np.stack([frame] * 5)
    item = VideoItem("m", make_sample(num_frames=5), video)
    rows = _rows_by_metric(score_items([FrameConsistency(embedder), FrameConsistencyAllPairs(embedder),
                                        ClipScore(embedder)], [item]))
    assert rows["fc_clip_consecutive"]["value"] == pytest.approx(100.0, abs=1e-3)
    assert rows["fc_clip_allpairs"]["value"] == pytest.approx(100.0, abs=1e-3)
    assert 0.0 <= rows["clip_score"]["value"] <= 100.0
    other = video.copy()
    other[1:] = np.random.default_rng(1).integers(0, 256, other[1:].shape, dtype=np.uint8)
    (changed,) = score_items([FrameConsistency(embedder)], [VideoItem("m", make_sample(num_frames=5), other)])
    assert changed["value"] < 100.0 - 1e-3


def test_single_frame_video_gives_fc_nan_with_a_reason():
    embedder = StubEmbedder({10: E0}, {"a man is walking": E0})
    metric = FrameConsistency(embedder)
    (row,) = score_items([metric], [VideoItem("m", make_sample(num_frames=1), frames_with_codes([10]))])
    assert math.isnan(row["value"])
    assert "at least 2 frames" in json.loads(row["extra"])["nan_reason"]
    summary = metric.aggregate([MetricResult(90.0), MetricResult(float("nan"), {"nan_reason": "1-frame video"})])
    assert summary["value"] == 90.0 and summary["n_videos"] == 2 and summary["n_finite"] == 1
    assert summary["nan_reasons"] == {"1-frame video": 1}
    assert math.isnan(frame_consistency(np.ones((1, 3))))


@pytest.mark.parametrize("frames, message", [
    (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN"),
    (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
    (np.zeros((2, 8, 8), np.uint8), "shape"),
    (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
])
def test_bad_frames_raise_one_line_value_errors(frames, message):
    with pytest.raises(ValueError, match=message) as error:
        VideoItem("m", make_sample(), frames)
    assert "\n" not in str(error.value)


def test_open_clip_preprocessing_scales_uint8_once(tiny_clip_dir):
    embedder = load_local_clip(tiny_clip_dir)
    frame = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels = embedder._pixels(frame[None]).numpy()[0]
    mean = np.array(embedder.preprocess_cfg["mean"])[:, None, None]
    std = np.array(embedder.preprocess_cfg["std"])[:, None, None]
    expected = (frame.transpose(2, 0, 1) / 255.0 - mean) / std
    np.testing.assert_allclose(pixels, expected, atol=1e-5)
    config = embedder.config()
    assert config["model_id"] == "tiny-test-clip" and len(config["weights_sha256"]) == 64
    assert config["preprocess"]["interpolation"] == "bicubic"


def test_long_prompts_are_truncated_and_logged(tiny_clip_dir, caplog):
    embedder = load_local_clip(tiny_clip_dir)
    long_prompt = "a man " * 60
    item = VideoItem("m", make_sample(prompt=long_prompt, num_frames=2), frames_with_codes([10, 20], size=32))
    with caplog.at_level(logging.WARNING, logger="fypbench.metrics"):
        (row,) = score_items([ClipScore(embedder)], [item])
    assert json.loads(row["extra"])["prompt_truncated"] is True
    assert any("truncated" in record.message for record in caplog.records)


def test_metric_records_carry_the_definition(tiny_clip_dir):
    (metric,) = build_metrics(["clip_score"], world="mini", clip_weights=tiny_clip_dir)
    record = metric.record()
    assert record["config"]["clamp"] == "per_frame" and record["config"]["scale"] == 100
    assert record["config"]["backbone"]["pretrained"] == "local"
    assert len(record["config_hash"]) == 16


def test_missing_weights_raise_user_errors_saying_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv("FYPBENCH_CLIP_WEIGHTS", raising=False)
    with pytest.raises(UserError, match="--clip-weights"):
        load_clip_for_world("sd")
    monkeypatch.setenv("FYPBENCH_CLIP_WEIGHTS", str(tmp_path / "absent.pt"))
    with pytest.raises(UserError, match="absent.pt not found"):
        load_openai_clip("ViT-L-14")
    with pytest.raises(UserError, match="train evaluator-clip"):
        load_local_clip(tmp_path)
    with pytest.raises(UserError, match="unknown metric 'clip_scor'"):
        build_metrics(["clip_scor"], world="mini")


def test_weight_files_load_as_state_dicts_or_torchscript(tmp_path):
    import torch

    source = tiny_clip_model(seed=3)
    state_path = tmp_path / "weights.bin"
    torch.save(source.state_dict(), state_path)
    script_path = tmp_path / "weights_jit.pt"
    torch.jit.save(torch.jit.script(source), str(script_path))
    for path in (state_path, script_path):
        target = tiny_clip_model(seed=4)
        _load_weights_into(target, path, "tiny")
        for name, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[name], value), (path.name, name)
    wrong = tmp_path / "wrong.bin"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="not loadable as tiny CLIP weights"):
        _load_weights_into(tiny_clip_model(), wrong, "tiny")
