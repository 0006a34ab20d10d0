"""Resume and checkpoint edge cases of the shared training loop and the recipes:
OMP_NUM_THREADS=1 python -m pytest tests/training/test_resume_audit.py -q"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fypbench.cli import main
from fypbench.errors import UserError
from fypbench.training import base as base_recipe
from fypbench.training import vae as vae_recipe
from fypbench.training.common import CHECKPOINT_NAME, TrainingLoop, make_accelerator, run_record

SYNTHETIC = "tests.training.synthetic:Squares"
TRAIN = {"steps": 4, "batch_size": 4, "lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0, "warmup_steps": 1,
         "grad_clip": 1.0, "ema_decay": 0.0, "mixed_precision": "no", "checkpoint_every": 2, "log_every": 2,
         "lr_decay_start": None, "lr_final_ratio": 0.0}


def toy_loop(out, lr_factors=None, **train) -> TrainingLoop:
    """The shared loop on a seeded Linear(3, 1) and 16 fixed inputs (milliseconds a step)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
    data = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    extra = {} if lr_factors is None else {"lr_factors": lr_factors}
    out.mkdir(parents=True, exist_ok=True)  # (a recipe's logger makes it)
    return TrainingLoop(accelerator=make_accelerator("no"), output_dir=out,
                        config={"recipe": "toy", "preset": "test", "seed": 0, "train": {**TRAIN, **train}},
                        modules={"toy": model}, parameters=list(model.parameters()), dataset_size=16,
                        loss_fn=lambda step, batch, modules: modules["toy"](data[batch.indices]).pow(2).mean(),
                        log=lambda message: None, **extra)


def test_resumed_base_training_is_bitwise_identical_to_an_uninterrupted_one(tmp_path):
    # the first session encodes the latents (the VAE's CPU output is channels-last), a resumed one reads them from
    # latents.npz (C order): in another layout the UNet's convolutions rounded differently, so resuming drifted
    from safetensors.torch import load_file

    data = {"data.target": SYNTHETIC, "data.cache_dir": str(tmp_path / "cache")}
    vae = vae_recipe.run("debug", tmp_path / "vae", overrides={**data, "train.steps": 2})
    values = {**data, "model.vae_dir": str(vae), "train.checkpoint_every": 1}
    straight = base_recipe.run("debug", tmp_path / "straight", overrides={**values, "train.steps": 3})
    base_recipe.run("debug", tmp_path / "resumed", overrides={**values, "train.steps": 2})
    resumed = base_recipe.run("debug", tmp_path / "resumed", overrides={**values, "train.steps": 3})
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        a, b = load_file(straight / part), load_file(resumed / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part


def test_encoded_latents_have_the_layout_of_a_cache_hit(tmp_path):
    # one layout, channels last in memory (what the VAE's CPU encoder returns), fresh or read from the cache
    from fypbench.base.components import build_vae, preset_config, seeded_init
    from fypbench.models.followpose.train import CachedItems
    from tests.training.synthetic import Squares

    with seeded_init("vae", 0):
        vae = build_vae({**preset_config("debug")["vae"], "sample_size": 16}).eval()
    images = np.stack([Squares(16)[i][0] for i in range(4)])
    encoded = base_recipe.encode_latents(vae, images, tmp_path / "latents.npz", {"k": 1}, lambda message: None)
    cached = base_recipe.encode_latents(vae, images, tmp_path / "latents.npz", {"k": 1}, lambda message: None)
    for fresh, hit in zip(encoded, cached):
        assert fresh.strides == hit.strides and np.array_equal(fresh, hit)
        assert fresh.strides[1] == fresh.itemsize  # channels vary fastest
    data = {"target": "fypbench.world.mini.streams:ImagePosePairs", "kwargs": {"size": 16}, "count": 2,
            "cache_dir": str(tmp_path / "pairs"), "workers": 1}
    encoded, cached = (CachedItems(data, 1, vae, "v" * 16, lambda message: None) for _ in range(2))
    for fresh, hit in ((encoded.mean, cached.mean), (encoded.std, cached.std)):
        assert fresh.strides == hit.strides and np.array_equal(fresh, hit)
        assert fresh.strides[1] == fresh.itemsize  # channels vary fastest


def test_a_temp_file_left_by_a_killed_checkpoint_write_is_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".{CHECKPOINT_NAME}.k1lled.pt"
    stale.write_bytes(b"half a checkpoint")
    toy_loop(out).run()
    assert not stale.exists() and (out / CHECKPOINT_NAME).is_file()


def test_a_resumed_training_logs_each_step_once(tmp_path):
    import json

    out = tmp_path / "run"
    toy_loop(out, steps=2, log_every=1).run()
    log = out / "losses.jsonl"
    # as if killed after logging steps 3 and (half of) 4, before the step-4 checkpoint
    log.write_text(log.read_text() + json.dumps({"step": 3, "loss": 9.0, "seconds": 0}) + "\n" + '{"step": 4, "lo')
    toy_loop(out, steps=4, log_every=1).run()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[2]["loss"] != 9.0


@pytest.mark.parametrize("change, message", [({"train.lr": 1e-4}, "different config (train.lr)"),
                                             ({"train.steps": 2}, "train.steps 2 is below the checkpoint's step 4")])
def test_an_unresumable_checkpoint_is_refused_before_the_data_setup(tmp_path, monkeypatch, change, message):
    overrides = {"data.target": SYNTHETIC, "data.cache_dir": str(tmp_path / "cache"), "train.steps": 4}
    vae_recipe.run("debug", tmp_path / "run", overrides=overrides)

    def no_data_setup(*args, **kwargs):
        raise AssertionError("the data setup ran before the resume check")

    monkeypatch.setattr(vae_recipe, "cached_dataset", no_data_setup)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        vae_recipe.run("debug", tmp_path / "run", overrides={**overrides, **change})


def test_a_malformed_checkpoint_is_a_one_line_error(tmp_path):
    out = tmp_path / "run"
    toy_loop(out).run()
    path = out / CHECKPOINT_NAME
    good = torch.load(path, weights_only=True)
    torch.save({"weights": torch.zeros(1)}, path)  # another tool's file
    with pytest.raises(UserError, match=f"{path}: not a training checkpoint"):
        toy_loop(out, steps=6).run()
    good["modules"]["toy"]["weight"] = torch.zeros(5)
    torch.save(good, path)
    with pytest.raises(UserError, match=f"{path}: does not fit this model"):
        toy_loop(out, steps=6).run()


def test_fewer_steps_than_the_checkpoint_are_refused(tmp_path):
    # before: the step-4 weights were re-exported under a record saying train.steps=2 made them
    toy_loop(tmp_path).run()
    with pytest.raises(UserError, match="train.steps 2 is below the checkpoint's step 4"):
        toy_loop(tmp_path, steps=2).run()


def test_an_lr_tail_change_is_accepted_only_while_the_steps_taken_keep_their_lr(tmp_path):
    def final_weight(out, **train):
        loop = toy_loop(out, **train)
        loop.run()
        return loop.modules["toy"].weight.detach().clone()

    # "train longer, then decay" from a run that had not decayed yet: the same path as a fresh run
    final_weight(tmp_path / "extended", steps=4)
    extended = final_weight(tmp_path / "extended", steps=8, lr_decay_start=4, lr_final_ratio=0.1)
    assert torch.equal(extended, final_weight(tmp_path / "fresh", steps=8, lr_decay_start=4, lr_final_ratio=0.1))
    # once the decay began, a longer run or another tail would change the lr of steps already taken
    final_weight(tmp_path / "decayed", steps=4, lr_decay_start=2)
    with pytest.raises(UserError, match="changing train.steps would change the learning rate of step 3 of the 4"):
        toy_loop(tmp_path / "decayed", steps=8, lr_decay_start=2).run()
    with pytest.raises(UserError, match="changing train.lr_final_ratio"):
        toy_loop(tmp_path / "decayed", steps=4, lr_decay_start=2, lr_final_ratio=0.5).run()


def test_the_evaluator_clips_own_lr_schedule_is_checked_on_resume(tmp_path):
    # its cosine spans train.steps: more steps change the lr of every step after the warm-up
    from fypbench.training import evaluator_clip

    values = {"data.cache_dir": str(tmp_path / "cache"), "train.steps": 4}
    evaluator_clip.run("debug", tmp_path / "run", overrides=values)
    with pytest.raises(UserError, match="changing train.steps would change the learning rate of step 3 of the 4"):
        evaluator_clip.run("debug", tmp_path / "run", overrides={**values, "train.steps": 6})


def test_rerunning_a_finished_training_keeps_its_final_loss(tmp_path):
    first = toy_loop(tmp_path).run()
    again = toy_loop(tmp_path).run()
    assert again.steps_run == 0 and again.losses == first.losses[-1:]
    config = {"recipe": "toy", "preset": "test", "train": TRAIN}
    assert run_record(config, None, again)["training"]["final_loss"] == first.losses[-1][1]


@pytest.mark.parametrize("setting", ["train.batch_size=0", "train.checkpoint_every=0", "train.log_every=0",
                                     "train.lr=-1", "train.grad_clip=null", "data.count=0"])
def test_bad_loop_values_are_refused_before_any_work(tmp_path, capsys, setting):
    out = tmp_path / "run"
    assert main(["train", "vae", "--preset", "debug", "--out", str(out), "--set", setting]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"{setting.split('=')[0]} must be >=" in error and not out.exists()


@pytest.mark.parametrize("setting, field", [("train.ema_decay=1", "train.ema_decay must be < 1"),
                                            ("train.ema_decay=1.5", "train.ema_decay must be < 1"),
                                            ("train.betas=[0.9, 1.0]", "train.betas must be two numbers"),
                                            ("train.betas=[-0.1, 0.9]", "train.betas must be two numbers"),
                                            ("train.betas=[0.9]", "train.betas must be two numbers")])
def test_optimiser_values_outside_their_range_are_refused(tmp_path, capsys, setting, field):
    out = tmp_path / "run"
    assert main(["train", "vae", "--preset", "debug", "--out", str(out), "--set", setting]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and field in error and not out.exists()


@pytest.mark.parametrize("module, stage", [("fypbench.training.vae", None),
                                           ("fypbench.models.followpose.train", "1")])
def test_a_recipe_modules_own_entry_point_reports_a_user_error_in_one_line(tmp_path, module, stage):
    import subprocess
    import sys

    out = tmp_path / "run"
    command = [sys.executable, "-m", module, "--preset", "debug", "--output-dir", str(out), "--set", "train.lr=-1"]
    command += ["--stage", stage] if stage else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    error = done.stderr.strip()
    assert done.returncode == 2 and error.startswith("error: ") and "\n" not in error and "train.lr" in error
    assert not out.exists()


def test_an_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_text("not a folder")
    for out in (taken, taken / "sub"):
        assert main(["train", "vae", "--preset", "debug", "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"error: --out {out}") and "\n" not in error


def test_a_second_training_into_a_busy_folder_is_refused(tmp_path):
    import fcntl

    from fypbench.training.common import TRAIN_LOCK

    out = tmp_path / "busy"
    out.mkdir()
    with open(out / TRAIN_LOCK, "a+") as held:  # another process's training holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="another training is running in this folder"):
            toy_loop(out).run()
        assert not (out / CHECKPOINT_NAME).exists()
    assert toy_loop(out).run().final_step == TRAIN["steps"]  # free again: trains
    assert toy_loop(out).run().final_step == TRAIN["steps"]  # the lock was released after the run


def test_exported_folders_get_a_mkdir_mode_not_mkdtemps(tmp_path):
    import os

    from fypbench.base.components import save_folder_atomic

    previous = os.umask(0o022)
    try:
        folder = save_folder_atomic(lambda staging: (staging / "x.txt").write_text("x"), tmp_path / "export")
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == 0o755
