"""results.json and leaderboard tables from a tiny scored run (stub CLIP embedder, no model weights)."""

import json

import numpy as np

import pytest

from fypbench.cli import main
from fypbench.leaderboard import write_leaderboard
from fypbench.metrics import build_metrics
from fypbench.protocol import save_protocol
from fypbench.results import build_results, write_results
from fypbench.scoring import score_run
from fypbench.videos import write_video
from tests.metrics.helpers import StubEmbedder, frames_with_codes
from tests.test_protocol import tiny_protocol

E0, E1 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
CLIP_METRICS = ["clip_score", "fc_clip_consecutive"]


def _stub_embedder(protocol):
    return StubEmbedder({10: E0, 20: E1}, {s.prompt: E0 for s in protocol.samples})


@pytest.fixture()
def scored_run(tmp_path):
    protocol = tiny_protocol(n=6)
    folder = save_protocol(protocol, tmp_path / "protocol")
    run_dir = tmp_path / "run"
    stub = _stub_embedder(protocol)
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({
        "world": "mini", "protocol": str(folder), "protocol_path": str(folder), "protocol_hash": protocol.hash,
        "sample_ids": [s.id for s in protocol.samples], "methods": {"followpose": {}, "steady": {}, "flicker": {}}}))
    for s in protocol.samples:
        write_video(run_dir, "followpose", s.id, frames_with_codes([10, 10, 10], 64), {"config_hash": "a", "seed": 0},
                    previews=False)
        write_video(run_dir, "steady", s.id, frames_with_codes([10, 10, 10], 64), {"config_hash": "a", "seed": 0},
                    previews=False)
        write_video(run_dir, "flicker", s.id, frames_with_codes([10, 20, 10], 64), {"config_hash": "b", "seed": 0},
                    previews=False)
    score_run(run_dir, CLIP_METRICS, world="mini", embedder=stub, log=lambda *a, **k: None)
    metrics = build_metrics(CLIP_METRICS, "mini", embedder=stub)
    return run_dir, metrics


def test_table_values_cis_and_paired_differences(scored_run):
    run_dir, metrics = scored_run
    record = build_results(run_dir, metrics=metrics, replicates=200)
    steady, flicker = record["table"]["steady"], record["table"]["flicker"]
    assert steady["fc_clip_consecutive"]["value"] == pytest.approx(100.0)
    assert flicker["fc_clip_consecutive"]["value"] == pytest.approx(0.0)
    assert flicker["clip_score"]["value"] == pytest.approx(100.0 * 2 / 3)
    assert steady["clip_score"]["n_found"] == steady["clip_score"]["n_expected"] == 6
    paired = record["paired"]["comparisons"]["flicker"]["fc_clip_consecutive"]
    assert paired["difference"] == pytest.approx(-100.0) and paired["p_not_greater"] == 1.0
    assert "followpose" not in record["paired"]["comparisons"]
    assert set(record["slices"]["kind"]) == {"a", "b"}


def test_missing_videos_show_in_n_found(scored_run):
    run_dir, metrics = scored_run
    import pandas as pd

    path = run_dir / "scores" / "scores.parquet"
    frame = pd.read_parquet(path)
    frame[~((frame["method"] == "steady") & (frame["sample_id"] == "x0"))].to_parquet(path)
    record = build_results(run_dir, metrics=metrics, replicates=100)
    assert record["table"]["steady"]["clip_score"]["n_found"] == 5


def test_a_video_deleted_after_scoring_no_longer_counts_as_found(scored_run):
    run_dir, metrics = scored_run
    from fypbench.videos import remove_video

    remove_video(run_dir, "steady", "x1")
    assert build_results(run_dir, metrics=metrics, replicates=100)["table"]["steady"]["clip_score"]["n_found"] == 6
    # the next scoring's integrity check finds it missing: its rows stay on disk but do not count
    score_run(run_dir, CLIP_METRICS, world="mini", embedder=_stub_embedder(tiny_protocol(n=6)), log=lambda *a, **k: None)
    record = build_results(run_dir, metrics=metrics, replicates=100)
    assert record["table"]["steady"]["clip_score"]["n_found"] == 5
    assert record["table"]["followpose"]["clip_score"]["n_found"] == 6
    assert record["unusable_videos"] == {"steady": ["x1"]}


def test_an_unknown_baseline_is_a_user_error(scored_run):
    run_dir, metrics = scored_run
    from fypbench.errors import UserError

    with pytest.raises(UserError, match="did you mean 'steady'"):
        build_results(run_dir, metrics=metrics, replicates=100, baseline="stedy")
    assert build_results(run_dir, metrics=metrics, replicates=100, baseline="steady")["paired"]["baseline"] == "steady"


def test_a_corrupt_results_record_is_a_one_line_error(scored_run, capsys):
    run_dir, metrics = scored_run
    (run_dir / "results.json").write_text("{not json")
    assert main(["leaderboard", str(run_dir), "--format", "md"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results.json: invalid JSON" in err


def test_leaderboard_formats_come_from_the_record_only(scored_run, monkeypatch):
    run_dir, metrics = scored_run
    import fypbench.results as results_module

    monkeypatch.setattr(results_module, "build_results",
                        lambda run_dir, **kw: build_results(run_dir, metrics=metrics, replicates=100))
    write_results(run_dir)
    paths = write_leaderboard(run_dir, "md,csv,tex")
    md = paths[0].read_text()
    assert "| flicker |" in md and "Paper Table 1" in md and "NOT comparable" in md
    assert "steady,clip_score," in paths[1].read_text()
    assert r"\begin{tabular}" in paths[2].read_text()
    assert main(["leaderboard", str(run_dir), "--format", "md,pdf"]) == 2


def test_contact_sheet_shows_every_method_on_the_same_samples(scored_run, monkeypatch):
    from PIL import Image

    from fypbench.videos import read_video

    run_dir, metrics = scored_run
    import fypbench.results as results_module

    monkeypatch.setattr(results_module, "build_results",
                        lambda run_dir, **kw: build_results(run_dir, metrics=metrics, replicates=100))
    write_results(run_dir)
    [path] = write_leaderboard(run_dir, "png")
    sheet = np.asarray(Image.open(path))
    first = read_video(run_dir, "flicker", json.loads((run_dir / "run.json").read_text())
                       ["sample_ids"][0])
    frames, size = first.shape[0], first.shape[1] * 2
    # 4 samples x (pose + 3 methods) rows of `frames` upscaled frames, after a 150 px label column
    assert sheet.shape[:2] == (4 * 4 * size, 150 + frames * size)
    rows = {m: i for i, m in enumerate(json.loads((run_dir / "results.json").read_text())["table"])}
    y = (1 + rows["flicker"]) * size  # first sample: the pose row, then the methods in table order
    assert np.array_equal(sheet[y:y + size:2, 150 + size:150 + 2 * size:2], first[1])


def test_tables_name_each_methods_weights_and_csv_rows_carry_provenance():
    import csv
    import io
    from pathlib import Path

    from fypbench.leaderboard import CSV_COLUMNS, header_lines, method_weights, to_csv

    assert method_weights({"base": "b1", "weights": "w1"}) == "base b1, weights w1"
    assert method_weights({"base": "b1", "weights": {"deltas": "d1", "trained_stages": [1, 2]}}) == "base b1, deltas d1"
    assert method_weights({"size": 64}) == ""
    entry = {"value": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n_found": 2, "n_expected": 2}
    results = {"run": {"world": "mini", "protocol": "fyp-1024", "protocol_hash": "p" * 64, "subset": "dev128",
                       "preset": {"name": "fast"}, "environment": {"git": "now"},
                       "methods": {"controlnet": {"config": {"base": "b1", "weights": "w1"}, "config_hash": "c1",
                                                  "git": "then"},
                                   "reference": {"config": {"size": 64}, "config_hash": "r1"}}},
               "table": {"controlnet": {"pa": entry}, "reference": {"pa": entry}},
               "n_samples": 2, "bootstrap": {"replicates": 10, "pooled_replicates": 10, "seed": 0}}
    rows = list(csv.DictReader(io.StringIO(to_csv(results))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0] == {"method": "controlnet", "metric": "pa", "value": "1.0", "ci_low": "0.5", "ci_high": "1.5",
                       "n_found": "2", "n_expected": "2", "config_hash": "c1", "weights": "base b1, weights w1",
                       "world": "mini", "protocol": "fyp-1024", "protocol_hash": "p" * 16, "subset": "dev128",
                       "run_preset": "fast", "git": "then"}
    assert (rows[1]["weights"], rows[1]["git"]) == ("", "now")  # no weights; videos made at the run's revision
    assert "Weights: controlnet: base b1, weights w1" in header_lines(results, Path("runs/x"))
