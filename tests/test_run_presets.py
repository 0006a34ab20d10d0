"""Named run presets (`fypbench run --preset fast`): loaded, merged under --config, recorded, shown, guarded."""

from __future__ import annotations

from pathlib import Path

import pytest

from fypbench.errors import UserError
from fypbench.leaderboard import header_lines
from fypbench.registry import METHODS, WORLDS
from fypbench.runner import load_run_preset, merge_run_configs, run_preset_names, write_run_record


def test_presets_are_listed_and_the_default_changes_nothing():
    assert run_preset_names()[0] == "default" and "fast" in run_preset_names()
    config, record = load_run_preset("default")
    assert config == {} and record["name"] == "default"


def test_unknown_preset_suggests():
    with pytest.raises(UserError, match="unknown run preset 'fats'; did you mean 'fast'"):
        load_run_preset("fats")


def test_fast_preset_builds_every_method_with_its_options():
    config, record = load_run_preset("fast")
    assert record["name"] == "fast" and "10 steps" in record["description"]
    # every sampling method is covered (a new method must not run at its default steps under "fast")
    assert set(config["methods"]) == set(METHODS.names()) - {"reference"}
    world = WORLDS.load("mini")()
    for name, options in config["methods"].items():
        generator = METHODS.load(name).from_world(world, **options)
        assert generator.config()["num_inference_steps"] == 10, name
    default = METHODS.load("masactrl").from_world(world)
    assert default.config()["num_inference_steps"] == 25  # the preset does not leak into the defaults


def test_pose_guidance_preset_covers_every_pose_conditioned_method():
    config, record = load_run_preset("pose-guidance")
    assert record["name"] == "pose-guidance" and "text half" in record["description"]
    world = WORLDS.load("mini")()
    pose_free = {"reference", "base-no-pose", "tune-a-video"}  # no pose map reaches their samplers
    assert set(config["methods"]) == set(METHODS.names()) - pose_free
    for name, options in config["methods"].items():
        generator = METHODS.load(name).from_world(world, **options)
        default = METHODS.load(name).from_world(world)
        assert generator.config_hash() != default.config_hash(), name  # recorded: not the default's rows


def test_presets_compose_left_to_right():
    config, record = load_run_preset("fast+pose-guidance")
    assert record["name"] == "fast+pose-guidance"
    assert record["description"].startswith("fast: DDIM 10 steps") and "pose-guidance: pose in the text half" in (
        record["description"])
    assert config["methods"]["followpose"] == {"num_inference_steps": 10, "unconditional_pose": False}
    assert config["methods"]["tune-a-video"] == {"num_inference_steps": 10}
    for bad in ("fast+default", "fast+fast", "fast+", "fast+fats"):
        with pytest.raises(UserError, match="compose distinct|did you mean 'fast'"):
            load_run_preset(bad)


def test_config_file_options_override_the_preset_option_by_option():
    preset = {"methods": {"controlnet": {"num_inference_steps": 10, "guidance_scale": 5.0}}, "batch_size": 4}
    config = {"methods": {"controlnet": {"guidance_scale": 3.0}, "masactrl": {"start_step": 0}}, "previews": 0}
    merged = merge_run_configs(preset, config)
    assert merged == {"batch_size": 4, "previews": 0,
                      "methods": {"controlnet": {"num_inference_steps": 10, "guidance_scale": 3.0},
                                  "masactrl": {"start_step": 0}}}
    assert preset["methods"]["controlnet"]["guidance_scale"] == 5.0  # inputs untouched


def _record(hashes: dict[str, str]) -> dict:
    return {"protocol_hash": "p", "world": "mini", "sample_ids": ["a"],
            "methods": {m: {"config": {}, "config_hash": h} for m, h in hashes.items()}, "unavailable": {}}


def test_a_run_directory_refuses_a_method_with_other_settings(tmp_path: Path):
    write_run_record(tmp_path, _record({"controlnet": "h25", "reference": "r"}))
    with pytest.raises(UserError, match="controlnet videos made with other settings"):
        write_run_record(tmp_path, _record({"controlnet": "h10"}))
    write_run_record(tmp_path, _record({"reference": "r"}))  # a subset of the methods, same settings: fine
    import json

    recorded = json.loads((tmp_path / "run.json").read_text())
    assert set(recorded["methods"]) == {"controlnet", "reference"}  # the earlier methods stay recorded
    with pytest.raises(UserError, match="run preset 'default', not 'fast'"):
        write_run_record(tmp_path, {**_record({"reference": "r"}), "preset": {"name": "fast"}})


def test_leaderboard_header_names_a_departing_preset():
    results = {"run": {"world": "mini", "protocol": "fyp-1024", "protocol_hash": "x" * 16, "subset": "dev128",
                       "preset": {"name": "fast", "description": "DDIM 10 steps"}, "methods": {}, "environment": {}},
               "n_samples": 128, "bootstrap": {"replicates": 1000, "pooled_replicates": 200, "seed": 0}}
    text = "\n".join(header_lines(results, Path("runs/x")))
    assert "--preset fast --subset dev128" in text and "departs from the methods' defaults: DDIM 10 steps" in text
    results["run"]["preset"] = None  # records written before presets existed
    assert "Run preset: default (every method's default)" in "\n".join(header_lines(results, Path("runs/x")))


def test_methods_keep_the_revision_that_generated_them(tmp_path: Path):
    import json

    def record(hashes, git):
        return {**_record(hashes), "environment": {"git": git}}

    write_run_record(tmp_path, record({"controlnet": "c", "reference": "r"}, "aaa"))
    write_run_record(tmp_path, record({"reference": "r", "followpose": "f"}, "bbb"))
    run = json.loads((tmp_path / "run.json").read_text())
    assert {m: e["git"] for m, e in run["methods"].items()} == {"controlnet": "aaa", "reference": "aaa",
                                                                  "followpose": "bbb"}
    results = {"run": run, "n_samples": 1, "bootstrap": {"replicates": 10, "pooled_replicates": 10, "seed": 0}}
    header = header_lines(results, Path("runs/x"))[1]
    assert header.endswith("git bbb (videos of controlnet, reference made at git aaa)")
    run["methods"]["controlnet"]["git"] = run["methods"]["reference"]["git"] = "bbb"
    assert header_lines(results, Path("runs/x"))[1].endswith("git bbb")
