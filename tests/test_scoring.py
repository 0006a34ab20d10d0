"""score_run: parquet rows, resume, rescoring without touching videos, run.json, one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fypbench.errors import UserError
from fypbench.scoring import (
    COVERAGE_FILE,
    METRICS_FILE,
    load_run_samples,
    parse_metric_names,
    read_scores,
    score_command,
    score_run,
    summarize_scores,
)
from fypbench.videos import video_paths, write_video
from tests.metrics.helpers import StubEmbedder, frames_with_codes, make_sample

E0, E1 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
PROMPT = "a man is walking"
CLIP_METRICS = ["clip_score", "fc_clip_consecutive"]


def _stub(tag: str = "stub") -> StubEmbedder:
    return StubEmbedder({10: E0, 20: E1}, {PROMPT: E0}, tag=tag)


@pytest.fixture()
def run(tmp_path):
    samples = [make_sample(f"s{i}", prompt=PROMPT, num_frames=3, seed=i) for i in range(4)]
    for sample in samples:
        write_video(tmp_path, "steady", sample.id, frames_with_codes([10, 10, 10], size=64),
                    {"config_hash": "a", "seed": 0}, previews=False)
        write_video(tmp_path, "flicker", sample.id, frames_with_codes([10, 20, 10], size=64),
                    {"config_hash": "b", "seed": 0}, previews=False)
    return tmp_path, samples


def _mtimes(run_dir):
    return {p: p.stat().st_mtime_ns for p in (run_dir / "videos").rglob("*") if p.is_file()}


def test_scores_then_resume_skips_done_rows(run):
    run_dir, samples = run
    embedder = _stub()
    path = score_run(run_dir, CLIP_METRICS, samples=samples, embedder=embedder, chunk_videos=3, log=lambda m: None)
    rows = pd.read_parquet(path)
    assert len(rows) == 2 * 4 * 2 and embedder.frames_embedded == 24
    assert not rows.duplicated(["method", "sample_id", "metric", "metric_config_hash"]).any()
    values = rows.set_index(["method", "metric"])["value"]
    np.testing.assert_allclose(values.loc[("steady", "fc_clip_consecutive")], 100.0)
    np.testing.assert_allclose(values.loc[("flicker", "clip_score")], 100 * 2 / 3)
    assert json.loads((run_dir / "scores" / COVERAGE_FILE).read_text())["counts"]["steady"]["ok"] == 4
    assert not [p for p in (run_dir / "scores").iterdir() if p.name.startswith(".")]  # no temporary files left

    again = _stub()
    score_run(run_dir, CLIP_METRICS, samples=samples, embedder=again, log=lambda m: None)
    assert again.frames_embedded == 0 and again.image_calls == 0
    assert pd.read_parquet(path).equals(rows)
    first, second = json.loads((run_dir / "scores" / "timings.json").read_text())["sessions"]
    assert first["rows"] == 16 and second["rows"] == 0 and not second["steps"]
    assert first["steps"] and all(step["videos"] == 8 for step in first["steps"].values()) and first["seconds"] >= 0


def test_an_interrupted_run_resumes_where_it_stopped(run):
    run_dir, samples = run
    score_run(run_dir, CLIP_METRICS, samples=samples[:2], embedder=_stub(), log=lambda m: None)
    embedder = _stub()
    score_run(run_dir, CLIP_METRICS, samples=samples, embedder=embedder, log=lambda m: None)
    assert embedder.frames_embedded == 2 * 2 * 3  # only the samples not scored before
    assert len(read_scores(run_dir)) == 2 * 4 * 2


def test_rescoring_another_configuration_keeps_videos_untouched(run):
    run_dir, samples = run
    score_run(run_dir, CLIP_METRICS, samples=samples, embedder=_stub(), log=lambda m: None)
    before = _mtimes(run_dir)
    other = StubEmbedder({10: E1, 20: E0}, {PROMPT: E0}, tag="another backbone")
    score_run(run_dir, ["clip_score"], samples=samples, embedder=other, log=lambda m: None)
    assert _mtimes(run_dir) == before
    rows = read_scores(run_dir)
    cs = rows[rows["metric"] == "clip_score"]
    assert cs["metric_config_hash"].nunique() == 2 and len(cs) == 2 * 8
    definitions = json.loads((run_dir / "scores" / METRICS_FILE).read_text())
    assert len(definitions["clip_score"]) == 2
    summary = summarize_scores(run_dir, ["clip_score"], embedder=other)
    assert summary["steady"]["clip_score"]["value"] == pytest.approx(0.0)  # the new backbone's rows only

    again = _stub()
    score_run(run_dir, ["clip_score"], samples=samples, embedder=again, rescore=True, log=lambda m: None)
    assert again.frames_embedded == 24 and _mtimes(run_dir) == before
    assert len(read_scores(run_dir)) == len(rows)  # replaced, not duplicated


def test_shard_parts_are_scored_apart_then_folded_into_one_file(run, tmp_path_factory):
    import shutil

    run_dir, samples = run
    whole = tmp_path_factory.mktemp("whole")
    shutil.copytree(run_dir / "videos", whole / "videos")
    score_run(whole, CLIP_METRICS, samples=samples, embedder=_stub(), log=lambda m: None)

    first = {("steady", "s0"), ("steady", "s1"), ("flicker", "s3")}
    second = {(m, s.id) for m in ("steady", "flicker") for s in samples} - first - {("flicker", "s2")}
    for part, pairs in (("shard-0-of-2", first), ("shard-1-of-2", second)):
        embedder = _stub()
        path = score_run(run_dir, CLIP_METRICS, samples=samples, embedder=embedder, pairs=pairs, part=part,
                         log=lambda m: None)
        assert path == run_dir / "scores" / "parts" / f"{part}.parquet"
        assert embedder.frames_embedded == 3 * len(pairs)  # only its own videos
    assert not (run_dir / "scores" / "scores.parquet").exists() and not (run_dir / "scores" / COVERAGE_FILE).exists()
    assert len(read_scores(run_dir)) == 2 * 7  # both parts are read before they are folded

    embedder = _stub()
    score_run(run_dir, CLIP_METRICS, samples=samples, embedder=embedder, log=lambda m: None)
    assert embedder.frames_embedded == 3  # the one video no part scored
    assert not list((run_dir / "scores" / "parts").iterdir())
    keys = ["method", "sample_id", "metric"]
    folded = pd.read_parquet(run_dir / "scores" / "scores.parquet").sort_values(keys).reset_index(drop=True)
    expected = pd.read_parquet(whole / "scores" / "scores.parquet").sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(folded, expected)
    sessions = json.loads((run_dir / "scores" / "timings.json").read_text())["sessions"]
    assert sorted(s.get("part", "") for s in sessions) == ["", "shard-0-of-2", "shard-1-of-2"]
    assert sum(s["rows"] for s in sessions) == 2 * 8


def test_a_part_cannot_be_rescored(run):
    run_dir, samples = run
    with pytest.raises(UserError, match="rescore"):
        score_run(run_dir, CLIP_METRICS, samples=samples, embedder=_stub(), part="shard-0-of-2", rescore=True,
                  log=lambda m: None)


def test_broken_videos_are_reported_and_skipped(run):
    run_dir, samples = run
    video_paths(run_dir, "flicker", "s2")["frames"].write_bytes(b"not a zip")
    write_video(run_dir, "steady", "s3", frames_with_codes([10, 10, 10], size=32), {"config_hash": "a", "seed": 0},
                previews=False)
    messages = []
    score_run(run_dir, ["fc_clip_consecutive"], samples=samples, embedder=_stub(), log=messages.append)
    rows = read_scores(run_dir)
    assert set(zip(rows["method"], rows["sample_id"])).isdisjoint({("flicker", "s2"), ("steady", "s3")})
    assert len(rows) == 6
    counts = json.loads((run_dir / "scores" / COVERAGE_FILE).read_text())["counts"]
    assert counts["flicker"]["corrupt"] == 1 and counts["steady"]["wrong_size"] == 1
    assert any("wrong_size" in m for m in messages)


def test_samples_come_from_run_json(tmp_path):
    from fypbench.protocol import load_protocol

    ids = [s.id for s in load_protocol("fyp-1024").samples[:3]]
    (tmp_path / "run.json").write_text(json.dumps({"protocol": "fyp-1024", "sample_ids": ids, "world": "mini"}))
    assert [s.id for s in load_run_samples(tmp_path)] == ids
    protocol = load_protocol("fyp-1024")
    record = {"protocol": "fyp-1024", "protocol_path": str(protocol.path), "protocol_hash": protocol.hash,
              "sample_ids": ids, "world": "mini"}  # as fypbench.run_job writes it
    (tmp_path / "run.json").write_text(json.dumps(record))
    assert [s.id for s in load_run_samples(tmp_path)] == ids
    (tmp_path / "run.json").write_text(json.dumps({**record, "protocol_hash": "0" * 64}))
    with pytest.raises(UserError, match="protocol changed"):
        load_run_samples(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"protocol": "fyp-1024", "sample_ids": ["nope"]}))
    with pytest.raises(UserError, match="sample_ids"):
        load_run_samples(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(UserError, match="invalid JSON"):
        load_run_samples(tmp_path)


def test_bad_input_is_a_one_line_user_error(run, tmp_path):
    run_dir, samples = run
    with pytest.raises(UserError, match="did you mean 'clip_score'") as error:
        score_run(run_dir, ["clip_scor"], samples=samples, embedder=_stub())
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="did you mean"):
        parse_metric_names("clip_score,fc_clip_consecutiv")
    with pytest.raises(UserError, match="not found"):
        score_run(tmp_path / "absent", CLIP_METRICS, samples=samples)
    with pytest.raises(UserError, match="run.json not found"):
        score_run(run_dir, CLIP_METRICS, embedder=_stub())
    empty = tmp_path / "no_weights"
    empty.mkdir()
    with pytest.raises(UserError, match="open_clip_config.json not found"):
        score_run(run_dir, "clip_score", clip_weights=empty, world="mini", samples=samples)
    with pytest.raises(UserError, match="run.json not found"):
        score_command(str(run_dir), "clip_score,fc_clip_consecutive", clip_weights=str(empty))
    with pytest.raises(UserError, match="world"):
        score_run(run_dir, CLIP_METRICS, world="mnii", samples=samples, embedder=_stub())


def test_a_killed_writers_temp_part_is_never_read_as_rows(run):
    run_dir, samples = run
    score_run(run_dir, CLIP_METRICS, samples=samples, embedder=_stub(), pairs={("steady", "s0")},
              part="shard-1-of-2", log=lambda m: None)
    # SIGKILL mid-write leaves atomic_path's temp file: truncated parquet under a hidden name
    (run_dir / "scores" / "parts" / ".shard-0-of-2.parquet.k1ll3d.parquet").write_bytes(b"PAR1 truncated")
    assert len(read_scores(run_dir)) == 2
