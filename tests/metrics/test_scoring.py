"""score_videos over stored videos: long-format rows, integrity first, resume and rescoring."""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.metrics.base import aggregate_rows, score_videos
from fypbench.metrics.clip_metrics import ClipScore, FrameConsistency
from fypbench.videos import video_paths, write_video
from tests.metrics.helpers import StubEmbedder, frames_with_codes, make_sample

E0, E1 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]


@pytest.fixture()
def run(tmp_path):
    samples = [make_sample(f"s{i}", prompt="a man is walking", num_frames=3, seed=i) for i in range(3)]
    for sample in samples:
        write_video(tmp_path, "same", sample.id, frames_with_codes([10, 10, 10]), {"config_hash": "a", "seed": 0},
                    previews=False)
        write_video(tmp_path, "flicker", sample.id, frames_with_codes([10, 20, 10]), {"config_hash": "b", "seed": 0},
                    previews=False)
    return tmp_path, samples


def test_rows_resume_and_rescore(run):
    run_dir, samples = run
    embedder = StubEmbedder({10: E0, 20: E1}, {"a man is walking": E0})
    metrics = [ClipScore(embedder), FrameConsistency(embedder)]
    rows = score_videos(run_dir, metrics, samples)
    assert len(rows) == 2 * 3 * 2 and embedder.frames_embedded == 18
    assert list(rows.columns) == ["method", "sample_id", "metric", "metric_version", "metric_config_hash", "value",
                                  "extra"]
    summary = aggregate_rows(metrics, rows)
    assert summary["same"]["fc_clip_consecutive"]["value"] == pytest.approx(100.0)
    assert summary["flicker"]["fc_clip_consecutive"]["value"] == pytest.approx(0.0)
    assert summary["flicker"]["clip_score"]["value"] == pytest.approx(100 * 2 / 3)
    assert rows.attrs["coverage"]["same"]["ok"] == 3

    done = rows[["method", "sample_id", "metric", "metric_config_hash"]].itertuples(index=False)
    again = score_videos(run_dir, metrics, samples, done=list(done))
    assert again.empty and embedder.frames_embedded == 18  # nothing re-embedded

    other = StubEmbedder({10: E1, 20: E0}, {"a man is walking": E0}, tag="another backbone")
    rescored = score_videos(run_dir, [ClipScore(other)], samples,
                            done=list(rows[["method", "sample_id", "metric", "metric_config_hash"]]
                                      .itertuples(index=False)))
    assert len(rescored) == 6 and set(rescored["metric_config_hash"]) != set(rows["metric_config_hash"])


def test_broken_videos_are_reported_and_not_scored(run):
    run_dir, samples = run
    path = video_paths(run_dir, "flicker", "s1")["frames"]
    path.write_bytes(b"not a zip")
    embedder = StubEmbedder({10: E0, 20: E1}, {"a man is walking": E0})
    rows = score_videos(run_dir, [FrameConsistency(embedder)], samples)
    assert len(rows) == 5 and ("flicker", "s1") not in set(zip(rows["method"], rows["sample_id"]))
    assert rows.attrs["coverage"]["flicker"]["corrupt"] == 1
    assert rows.attrs["problems"][0]["sample_id"] == "s1"
    np.testing.assert_allclose(rows[rows["method"] == "same"]["value"], 100.0)
