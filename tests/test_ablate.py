"""fypbench ablate on the debug presets: variants train (cached), generate, score, one table."""

import json

import pytest

from fypbench.ablate import VARIANTS, resolve_variants, run_ablation
from fypbench.base.components import build_components, save_pipeline
from fypbench.errors import UserError


def test_variant_names_and_default_first():
    assert resolve_variants("concat")[:2] == ["default", "concat"]
    assert set(resolve_variants("all")) == set(VARIANTS)
    with pytest.raises(UserError, match="did you mean 'concat'"):
        resolve_variants("conact")


def test_debug_ablation_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("FYPBENCH_CACHE", str(tmp_path / "cache"))
    base = save_pipeline(build_components("debug", seed=3), tmp_path / "base")
    common = {"model.base": str(base), "train.steps": 2, "data.count": 8, "train.lr_decay_start": None}
    out = run_ablation(variants="no-stage2", limit=2, preset="debug", overrides=common, out=tmp_path / "ablation.md",
                       run_dir=tmp_path / "run", generator_options={"num_inference_steps": 2, "size": 64})
    table = out.read_text()
    assert "| default |" in table and "| no-stage2 |" in table and "Produced by: `fypbench ablate" in table
    # the command line reruns as written: values as --set parses them back
    assert "fypbench ablate --world mini --preset debug --subset dev128 --limit 2 --set data.count=8" in table
    assert "--set train.lr_decay_start=null --set train.steps=2 --num-inference-steps 2`" in table
    cached = sorted(p.name for p in (tmp_path / "cache" / "ablate" / "debug").iterdir() if not p.name.startswith("data-"))
    # default and no-stage2 share one stage-1 training; only default has a stage-2 folder; reused by a second call
    assert [name.split("-")[0] for name in cached] == ["default", "stage1"]
    run_ablation(variants="no-stage2", limit=2, preset="debug", overrides=common, out=tmp_path / "again.md",
                 run_dir=tmp_path / "run", generator_options={"num_inference_steps": 2, "size": 64})
    assert sorted(p.name for p in (tmp_path / "cache" / "ablate" / "debug").iterdir()
                  if not p.name.startswith("data-")) == cached

    # a run preset's followpose options sample every variant (cached weights reused), named in the table
    pg = run_ablation(variants="default", limit=2, preset="debug", overrides=common, out=tmp_path / "pg.md",
                      run_dir=tmp_path / "run-pg", generator_options={"num_inference_steps": 2, "size": 64},
                      run_preset="pose-guidance")
    run = json.loads((tmp_path / "run-pg" / "run.json").read_text())
    assert "text branch only" in run["methods"]["followpose-default"]["config"]["sampler"]
    assert run["ablation"]["run_preset"]["name"] == "pose-guidance"
    assert "--run-preset pose-guidance --num-inference-steps 2`" in pg.read_text()
    assert "Sampling preset pose-guidance (departs from the followpose preset's sampling)" in pg.read_text()
    assert sorted(p.name for p in (tmp_path / "cache" / "ablate" / "debug").iterdir()
                  if not p.name.startswith("data-")) == cached
    with pytest.raises(UserError, match="pose-guidance"):
        run_ablation(variants="default", limit=2, preset="debug", overrides=common, out=tmp_path / "bad.md",
                     run_dir=tmp_path / "run-bad", run_preset="pose-guidence")
    assert not (tmp_path / "bad.md").exists() and not (tmp_path / "run-bad").exists()

    # a retrained base in the same folder never reuses weights trained on the previous one
    save_pipeline(build_components("debug", seed=4), tmp_path / "base")
    run_ablation(variants="default", limit=2, preset="debug", overrides=common, out=tmp_path / "retrained.md",
                 run_dir=tmp_path / "run-retrained", generator_options={"num_inference_steps": 2, "size": 64})
    now = sorted(p.name for p in (tmp_path / "cache" / "ablate" / "debug").iterdir() if not p.name.startswith("data-"))
    assert len(now) == 2 * len(cached) and set(cached) < set(now)


def test_a_schedule_that_does_not_fit_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("FYPBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="lr_decay_start=1000 must lie in"):  # the mini stage-2 tail, 200 steps
        run_ablation(variants="default", limit=2, preset="mini", overrides={"train.steps": 200},
                     out=tmp_path / "a.md", run_dir=tmp_path / "run")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()
