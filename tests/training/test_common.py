"""Shared training utilities: OMP_NUM_THREADS=1 python -m pytest tests/training/test_common.py -q"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fypbench.errors import UserError
from fypbench.training.common import (
    cached_dataset,
    global_batch,
    load_config,
    parse_overrides,
    per_sample_randint,
    per_sample_randn,
    process_batch,
    resolve_path,
    warmup_constant_cosine,
)

SYNTHETIC = "tests.training.synthetic:Squares"


def test_presets_load_and_overrides_apply():
    config = load_config("vae", "debug", {"train.lr": 1, "data.count": 32, "loss.kl": "2e-6"})
    assert config["recipe"] == "vae" and config["preset"] == "debug"
    assert config["train"]["lr"] == 1.0 and isinstance(config["train"]["lr"], float)
    assert config["data"]["count"] == 32 and config["loss"]["kl"] == 2e-6
    assert load_config("base", "mini")["export"]["float16"] == ["text_encoder", "unet", "vae"]


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="did you mean 'mini'"):
        load_config("vae", "mni")
    with pytest.raises(UserError, match="train.lrr.*did you mean 'train.lr'"):
        load_config("vae", "debug", {"train.lrr": 1e-3})
    with pytest.raises(UserError, match="train.steps=.*wrong type"):
        load_config("vae", "debug", {"train.steps": 1.5})
    with pytest.raises(UserError, match="wrong type"):
        load_config("base", "debug", {"model.train_text_encoder": "maybe"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: base\nseed: [\n")
    with pytest.raises(UserError, match=f"{bad}: not valid YAML"):
        load_config("base", bad)
    other = tmp_path / "other.yaml"
    other.write_text("recipe: vae\nseed: 0\n")
    with pytest.raises(UserError, match="field 'recipe'"):
        load_config("base", other)
    with pytest.raises(UserError, match="expected key=value"):
        parse_overrides(["train.lr"])
    assert parse_overrides(["train.lr=1e-4", "model.train_text_encoder=false", "x=[1, 2]"]) == {
        "train.lr": 1e-4, "model.train_text_encoder": False, "x": [1, 2]}


def test_data_order_is_independent_of_process_count():
    size, batch = 37, 12
    for step in (0, 3, 7):
        full = global_batch(step, batch, size, seed=5)
        for world in (1, 2, 3, 4):
            slices = [process_batch(step, batch, size, 5, rank, world) for rank in range(world)]
            np.testing.assert_array_equal(np.concatenate([s.indices for s in slices]), full)
            assert np.concatenate([s.positions for s in slices]).tolist() == list(range(step * batch, (step + 1) * batch))
    # every epoch is a permutation, and epochs differ
    stream = np.concatenate([global_batch(s, 1, size, seed=5) for s in range(2 * size)])
    assert sorted(stream[:size]) == list(range(size)) and sorted(stream[size:]) == list(range(size))
    assert not np.array_equal(stream[:size], stream[size:])
    with pytest.raises(UserError, match="not divisible"):
        process_batch(0, 10, size, 0, 0, 3)


def test_per_sample_noise_depends_on_position_only():
    both = per_sample_randn(1, "noise", [10, 11], (2, 3))
    np.testing.assert_array_equal(per_sample_randn(1, "noise", [11], (2, 3))[0], both[1])
    assert not torch.equal(both[0], both[1])
    assert per_sample_randint(1, "t", [10, 11], 1000).tolist() == per_sample_randint(1, "t", [10, 11], 1000).tolist()


def test_cached_dataset_renders_once_and_reuses(tmp_path):
    images, captions = cached_dataset(SYNTHETIC, {"size": 8}, 20, tmp_path / "cache")
    assert images.shape == (20, 8, 8, 3) and images.dtype == np.uint8 and len(captions) == 20
    (tmp_path / "cache" / "captions.json").write_text('["marker"]')  # a reuse does not re-render
    _, again = cached_dataset(SYNTHETIC, {"size": 8}, 20, tmp_path / "cache")
    assert again == ["marker"]
    rebuilt, captions = cached_dataset(SYNTHETIC, {"size": 8}, 24, tmp_path / "cache")
    assert len(rebuilt) == 24 and captions[:20] != ["marker"]
    with pytest.raises(UserError, match="cannot import"):
        cached_dataset("tests.training.synthetic:Nope", {}, 2, tmp_path / "x")


def test_package_paths():
    assert resolve_path("package:weights/mini/base").parts[-4:] == ("fypbench", "weights", "mini", "base")
    assert str(resolve_path("runs/x")) == "runs/x"


def test_lr_schedule_warms_up_holds_then_anneals():
    factor = warmup_constant_cosine(10, 100, 200, final_ratio=0.05)
    assert factor(0) == pytest.approx(0.1) and factor(9) == 1.0 and factor(99) == 1.0
    tail = [factor(step) for step in range(100, 200)]
    assert all(a >= b for a, b in zip(tail, tail[1:])) and tail[0] > 0.99
    assert tail[-1] == pytest.approx(0.05) and factor(150) == pytest.approx(0.05 + 0.95 * 0.5, abs=0.02)
    assert warmup_constant_cosine(10, None, 200)(150) == 1.0
    with pytest.raises(UserError, match="lr_decay_start=200"):
        warmup_constant_cosine(10, 200, 200)
