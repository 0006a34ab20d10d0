"""`fypbench run`'s up-front checks of method options (fypbench/run_job.py): nothing is loaded or written first."""

import subprocess
import sys
from pathlib import Path

import pytest

from fypbench.errors import UserError
from fypbench.registry import METHODS
from fypbench.run_job import check_method_options

ROOT = Path(__file__).resolve().parents[1]
PER_FRAME = {"controlnet", "t2i-adapter", "masactrl"}
VIDEO_MODELS = {"followpose", "followpose-stage1", "base-no-pose", "tune-a-video"}


def test_generators_share_option_names():
    """One name per meaning: `batch_size` counts samples (video models), `frames_per_batch` frames (per-frame)."""
    names = {name: METHODS.load(name).option_names() for name in METHODS.names()}
    assert set(names) >= PER_FRAME | VIDEO_MODELS
    for name in PER_FRAME | VIDEO_MODELS:
        assert {"num_inference_steps", "guidance_scale", "negative_prompt", "size", "device", "dtype"} <= names[name]
    assert all("frames_per_batch" in names[n] and "batch_size" not in names[n] for n in PER_FRAME)
    assert all("batch_size" in names[n] and "frames_per_batch" not in names[n] for n in VIDEO_MODELS)
    assert all("noise_mode" in names[n] and "noise" not in names[n]
               for n in {"controlnet", "t2i-adapter", "followpose-stage1", "base-no-pose"})


def test_unknown_option_names_the_file_the_method_and_a_suggestion():
    with pytest.raises(UserError, match=r"^run\.yaml: methods\.followpose: unknown followpose option 'batchsize'; "
                                        r"did you mean 'batch_size'"):
        check_method_options({"reference": {"size": 64}, "followpose": {"batchsize": 4}}, lambda method: "run.yaml")


def _run(tmp_path: Path, config_text: str) -> subprocess.CompletedProcess:
    config = tmp_path / "run.yaml"
    config.write_text(config_text)
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "fypbench.cli", "run", "--methods", "reference", "--limit", "1",
                           "--config", str(config), "--out", str(tmp_path / "run"), "--no-score"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("config_text, message", [
    ("methods:\n  reference: {}\nbatchsize: 2\n", "run.yaml: unknown key 'batchsize'"),
    ("methods:\n  reference: {sise: 64}\n", "run.yaml: methods.reference: unknown reference option 'sise'; did you "
                                            "mean 'size'"),
    ("methods:\n  reference: {size: big}\n", "run.yaml: methods.reference: reference: size must be a positive"),
])
def test_bad_run_config_is_a_one_line_error_and_writes_nothing(tmp_path, config_text, message):
    result = _run(tmp_path, config_text)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
