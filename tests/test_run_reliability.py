"""`fypbench run` end to end with the reference method: process count, SIGKILL + restart, corruption."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fypbench.videos import video_paths

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 6


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "HF_HUB_OFFLINE": "1"}


def _run(out, *extra, launcher=()):
    cmd = [*launcher, "-m", "fypbench.cli", "run", "--methods", "reference", "--limit", str(LIMIT), "--out",
           str(out), "--previews", "0", "--batch-size", "2", *extra]
    if not launcher:
        cmd = [sys.executable, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)


def _frames(out):
    return {p.name: np.load(p)["frames"] for p in sorted((out / "videos" / "reference").glob("*.npz"))}


def _scores(out):
    frame = pd.read_parquet(out / "scores" / "scores.parquet")
    return frame.sort_values(["method", "sample_id", "metric"]).reset_index(drop=True)[
        ["method", "sample_id", "metric", "value"]]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    result = _run(out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_one_and_two_processes_give_identical_videos_and_scores(single, tmp_path):
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    result = _run(tmp_path, launcher=launcher)
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = _frames(single), _frames(tmp_path)
    assert list(a) == list(b) and len(a) == LIMIT
    assert all(np.array_equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(_scores(single), _scores(tmp_path))
    # each shard scored its own videos into a part; shard 0 folded both parts into scores.parquet
    sessions = json.loads((tmp_path / "scores" / "timings.json").read_text())["sessions"]
    assert {s.get("part") for s in sessions if s["rows"]} == {"shard-0-of-2", "shard-1-of-2"}
    assert not list((tmp_path / "scores" / "parts").iterdir())  # parts and their markers folded away
    # shard 0 ends the run with the results record and the report built from it
    for out in (single, tmp_path):
        record = json.loads((out / "results.json").read_text())
        assert record["table"]["reference"]["clip_score"]["n_found"] == LIMIT
        assert "| reference |" in (out / "report" / "leaderboard.md").read_text()
        assert (out / "report" / "index.html").is_file()


def test_sigkill_then_restart_loses_and_duplicates_nothing(single, tmp_path):
    cmd = [sys.executable, "-m", "fypbench.cli", "run", "--methods", "reference", "--limit", str(LIMIT), "--out",
           str(tmp_path), "--previews", "0", "--batch-size", "1", "--no-score"]
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "videos" / "reference"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(folder.glob("*.json")))
    assert 0 < done_before < LIMIT, "the kill should land mid-run"
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = _frames(single), _frames(tmp_path)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left behind
    pd.testing.assert_frame_equal(_scores(single), _scores(tmp_path))


def test_a_corrupted_video_is_detected_and_regenerated(single, tmp_path):
    import shutil

    shutil.copytree(single, tmp_path / "run")
    run_dir = tmp_path / "run"
    paths = video_paths(run_dir, "reference", "s00p01")
    paths["frames"].write_bytes(paths["frames"].read_bytes()[:100])  # truncated npz, meta still says done
    result = _run(run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "corrupt" in result.stdout + result.stderr
    assert np.array_equal(_frames(run_dir)["s00p01.npz"], _frames(single)["s00p01.npz"])
    pd.testing.assert_frame_equal(_scores(single), _scores(run_dir))
    assert json.loads((run_dir / "run.json").read_text())["sample_ids"][:2] == ["s00p00", "s00p01"]


def test_methods_that_cannot_run_are_skipped_loudly_and_recorded(tmp_path):
    from fypbench.registry import METHODS

    # a mini world with no trained weights at all: every method but the ground truth must be skipped, loudly
    env = {**_env(), "FYPBENCH_MINI_WEIGHTS": str(tmp_path / "no-weights")}
    result = subprocess.run([sys.executable, "-m", "fypbench.cli", "run", "--methods", "all", "--limit", "1",
                             "--out", str(tmp_path / "run"), "--previews", "0", "--no-score"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    ran, skipped = set(record["methods"]), set(record["unavailable"])
    assert ran == {"reference"} and skipped == set(METHODS.names()) - {"reference"}
    for name, reason in record["unavailable"].items():
        assert f"SKIPPED {name}" in result.stderr and "fypbench train" in reason

    # when no requested method can run at all, the run is a user error that leaves nothing on disk
    none = subprocess.run([sys.executable, "-m", "fypbench.cli", "run", "--methods", "followpose,controlnet",
                           "--limit", "1", "--out", str(tmp_path / "none"), "--no-score"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert none.returncode == 2 and "none of the requested methods can run" in none.stderr
    assert not (tmp_path / "none").exists()


def test_forget_removes_a_method_and_the_next_run_redoes_it(single, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(single, run_dir)
    bad = subprocess.run([sys.executable, "-m", "fypbench.cli", "forget", str(run_dir), "--methods", "refrence"],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "did you mean 'reference'" in bad.stderr
    assert (run_dir / "videos" / "reference").is_dir()

    result = subprocess.run([sys.executable, "-m", "fypbench.cli", "forget", str(run_dir), "--methods", "reference"],
                            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (run_dir / "videos" / "reference").exists()
    assert "reference" not in json.loads((run_dir / "run.json").read_text())["methods"]
    assert not (pd.read_parquet(run_dir / "scores" / "scores.parquet")["method"] == "reference").any()
    # the results record and the report still showed the forgotten method: gone, until rebuilt
    assert (single / "results.json").is_file() and (single / "report").is_dir()
    assert not (run_dir / "results.json").exists() and not (run_dir / "report").exists()

    result = _run(run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = _frames(single), _frames(run_dir)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(_scores(single), _scores(run_dir))


def test_shard_zero_makes_the_videos_a_differently_split_shard_left_out(single, tmp_path):
    # shard 1 splits the job list with batches of 1 and exits; shard 0 splits it with batches of 2, so some of
    # "its" other shard's videos never come: once no other shard runs, shard 0 makes them itself
    first = _run(tmp_path, "--shard", "1/2", "--batch-size", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    made_by_shard_1 = len(_frames(tmp_path))
    assert 0 < made_by_shard_1 < LIMIT
    env = {**_env(), "FYPBENCH_SHARD_TAKEOVER_S": "0"}
    cmd = [sys.executable, "-m", "fypbench.cli", "run", "--methods", "reference", "--limit", str(LIMIT), "--out",
           str(tmp_path), "--previews", "0", "--batch-size", "2", "--shard", "0/2"]
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "makes them itself" in " ".join(second.stdout.split() + second.stderr.split())
    a, b = _frames(single), _frames(tmp_path)
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(_scores(single), _scores(tmp_path))
