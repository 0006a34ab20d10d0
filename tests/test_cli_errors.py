"""The command line's bad-input contract: one line on stderr, exit 2, nothing written (tests of fypbench/cli.py)."""

import json

import pytest
import yaml

from fypbench.cli import main
from fypbench.errors import UserError, did_you_mean
from fypbench.io import check_output_dir, check_output_file
from fypbench.training.common import CONFIG_DIR, load_config
from tests.baselines import tiny


def _one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), (argv, err)
    return err


@pytest.mark.parametrize("argv, expected", [
    (["ls"], "Missing argument"),
    (["score"], "Missing argument"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "--limit", "abc"], "Invalid value for '--limit'"),
    (["sample", "--seeds", "0", "--prompt", "x", "--out", "x.png"], "Invalid value for '--seeds'"),
    (["results", "somewhere", "--replicates", "5"], "Invalid value for '--replicates'"),
    (["world", "render", "--size", "8", "--sample", "s00p00", "--out", "x"], "Invalid value for '--size'"),
    (["runn"], "Did you mean 'run'"),
])
def test_usage_errors_of_typers_own_parser_are_one_line(capsys, argv, expected):
    # typer parses with its own copy of click, whose errors are not click's classes
    assert expected in _one_line_error(capsys, argv)


@pytest.mark.parametrize("argv", [
    ["run", "--limit", "1", "--out", ""],
    ["run", "--limit", "1", "--out="],
    ["train", "vae", "--preset", "debug", "--out", " "],
    ["ablate", "--run-dir", ""],
    ["run", "--config", ""],
])
def test_an_empty_path_option_is_not_the_current_directory(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    assert "is empty (give a path" in _one_line_error(capsys, argv)
    assert list(tmp_path.iterdir()) == []


def test_help_is_minus_h_on_every_command(capsys):
    assert main(["run", "-h"]) == 0
    assert "Usage: fypbench run" in capsys.readouterr().out


def test_bare_group_prints_its_help(capsys):
    assert main(["protocol"]) == 2
    assert "Usage: fypbench protocol" in capsys.readouterr().err


def test_ls_lists_recipes_and_metrics(capsys):
    assert main(["ls", "recipes"]) == 0
    assert "followpose-stage2" in capsys.readouterr().out
    assert main(["ls", "metrics"]) == 0
    assert "fc_clip_consecutive" in capsys.readouterr().out


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert "expected a .png file" in _one_line_error(capsys, ["sample", "--prompt", "x", "--out", str(tmp_path / "s.jpg")])
    assert "--prompt is empty" in _one_line_error(capsys, ["sample", "--prompt", " ", "--out", str(tmp_path / "s.png")])
    assert "exists and is not a directory" in _one_line_error(
        capsys, ["validate-metrics", "--out", str(a_file / "v.md")])
    assert "exists and is not a directory" in _one_line_error(
        capsys, ["world", "render", "--sample", "s00p00", "--out", str(a_file)])
    assert "exists and is not a directory" in _one_line_error(
        capsys, ["ablate", "--limit", "1", "--run-dir", str(tmp_path / "ab"), "--out", str(a_file / "ab.md")])
    assert "open_clip_config.json not found" in _one_line_error(
        capsys, ["validate-metrics", "--samples", "16", "--clip-weights", str(tmp_path / "no-clip"),
                 "--out", str(tmp_path / "v.md")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing created
    with pytest.raises(UserError, match="is a directory"):
        check_output_file(tmp_path)
    with pytest.raises(UserError, match="is empty"):
        check_output_dir("")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--limit", "5000"], "--limit 5000 is more than the 1024 samples of fyp-1024"),
    (["--limit", "2", "--previews", "-1"], "--previews must be >= 0"),
    (["--limit", "2", "--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_bad_run_options_leave_nothing(tmp_path, capsys, extra, expected):
    out = tmp_path / "run"
    assert expected in _one_line_error(capsys, ["run", "--methods", "reference", "--out", str(out), *extra])
    assert not out.exists()


@pytest.mark.parametrize("config, expected", [
    ({"batch_size": "abc"}, "'batch_size' must be an integer >= 1"),
    ({"previews": -3}, "'previews' must be an integer >= 0"),
    ({"metrics": ["clip_scor"]}, "did you mean 'clip_score'"),
])
def test_bad_run_config_values_are_refused_before_generation(tmp_path, capsys, config, expected):
    path, out = tmp_path / "run.yaml", tmp_path / "run"
    path.write_text(json.dumps(config))
    error = _one_line_error(capsys, ["run", "--methods", "reference", "--limit", "1", "--config", str(path),
                                     "--out", str(out), "--no-score"])
    assert str(path) in error and expected in error
    assert not out.exists()


def test_a_protocol_path_that_does_not_exist_is_not_an_unknown_name(capsys):
    assert "protocol folder not found" in _one_line_error(capsys, ["protocol", "validate", "/nonexistent/fyp"])


def test_long_lists_of_known_names_are_cut():
    message = str(did_you_mean("zz", [f"s{i:04d}" for i in range(1024)], "sample"))
    assert "1024 in all" in message and len(message) < 400


def test_a_preset_file_has_the_shipped_presets_fields(tmp_path):
    config = yaml.safe_load((CONFIG_DIR / "vae_debug.yaml").read_text())
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    assert load_config("vae", path)["train"]["steps"] == config["train"]["steps"]
    path.write_text(yaml.safe_dump({**config, "trian": {"steps": 3}}))
    with pytest.raises(UserError, match="unknown field of mine.yaml.*'trian"):
        load_config("vae", path)
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "train"}))
    with pytest.raises(UserError, match="missing field 'train.batch_size'"):
        load_config("vae", path)
    with pytest.raises(UserError, match="train.steps must be >= 1"):
        load_config("vae", "debug", {"train.steps": -5})


def test_train_out_holds_the_export_unless_set(tmp_path, capsys):
    # a preset that exports to a fixed folder (as the mini presets export to the shipped weights): with --out,
    # the export goes inside --out and the fixed folder is left alone
    base = tiny.save_base(tiny.components(), tmp_path / "base")
    config = yaml.safe_load((CONFIG_DIR / "t2i_adapter_debug.yaml").read_text())
    config["model"]["base"] = str(base)
    config["data"]["cache_dir"] = str(tmp_path / "cache")
    config["export"]["dir"] = str(tmp_path / "shipped")
    config["train"]["steps"] = 2
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump(config))
    assert main(["train", "t2i-adapter", "--preset", str(preset), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "shipped").exists()
    assert (tmp_path / "out" / "t2i_adapter" / "manifest.json").is_file()
    assert f"exported: {tmp_path / 'out' / 't2i_adapter'}" in capsys.readouterr().out


def test_a_scored_sd_run_without_clip_weights_stops_before_generating(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FYPBENCH_CLIP_WEIGHTS", raising=False)
    out = tmp_path / "run"
    error = _one_line_error(capsys, ["run", "--world", "sd", "--methods", "base-no-pose", "--limit", "1",
                                     "--out", str(out)])
    assert "FYPBENCH_CLIP_WEIGHTS" in error and "--no-score" in error
    assert not out.exists()


def test_protocol_build_refuses_a_folder_holding_something_else(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert "holds no protocol" in _one_line_error(capsys, ["protocol", "build", "fyp-1024", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
