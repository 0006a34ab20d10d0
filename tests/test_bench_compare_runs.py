"""benchmarks/compare_runs.py: paired differences of one method across run directories."""

import json

import pandas as pd
import pytest

from tests.benchmark_scripts import load_benchmark


def fake_run(folder, rows, protocol_hash="h1"):
    (folder / "scores").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"world": "mini", "protocol": "p", "protocol_hash": protocol_hash}))
    records = [{"method": m, "sample_id": s, "metric": metric, "value": v}
               for m, s, values in rows for metric, v in values.items()]
    pd.DataFrame(records).to_parquet(folder / "scores" / "scores.parquet")
    return folder


def metrics(value):
    bench = load_benchmark("compare_runs")
    return {metric: value for metric in bench.METRICS}


def test_paired_difference_on_the_variant_runs_samples(tmp_path, capsys):
    bench = load_benchmark("compare_runs")
    base = fake_run(tmp_path / "base", [("fyp", "a", metrics(1.0)), ("fyp", "b", metrics(2.0)),
                                        ("fyp", "c", metrics(9.0)), ("ref", "a", metrics(5.0)),
                                        ("ref", "b", metrics(5.0))])
    variant = fake_run(tmp_path / "v", [("fyp", "a", metrics(2.0)), ("fyp", "b", metrics(3.0))])
    bench.main(["--baseline", str(base), "--methods", "fyp", "--show", "ref", str(variant)])
    out = capsys.readouterr().out
    assert "| v (n=2) | fyp | 2.500 (+1.000 [+1.000, +1.000])" in out  # sample c is not in the variant run
    assert "| base (n=2) | ref | 5.000" in out and "| base (n=2) | fyp | 1.500" in out


def test_mismatched_runs_are_usage_errors(tmp_path, capsys):
    bench = load_benchmark("compare_runs")
    base = fake_run(tmp_path / "base", [("fyp", "a", metrics(1.0))])
    other = fake_run(tmp_path / "other", [("fyp", "a", metrics(1.0))], protocol_hash="h2")
    missing = fake_run(tmp_path / "missing", [("ref", "a", metrics(1.0))])
    for argv in (["--baseline", str(base), "--methods", "fyp", str(other)],
                 ["--baseline", str(base), "--methods", "fyp", str(missing)],
                 ["--baseline", str(base), "--methods", "fyp", str(tmp_path / "nowhere")]):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2
    assert "differ in world or protocol" in capsys.readouterr().err
