"""The VAE and base recipes on the debug presets with a synthetic dataset:
OMP_NUM_THREADS=1 python -m pytest tests/training/test_recipes.py -q"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fypbench.base.components import build_text_encoder, build_unet, build_vae, load_base, preset_config, seeded_init
from fypbench.errors import UserError
from fypbench.training import base as base_recipe
from fypbench.training import vae as vae_recipe
from fypbench.training.common import images_to_tensor, load_config, per_sample_randn

SYNTHETIC = "tests.training.synthetic:Squares"


def data_overrides(tmp_path, **extra):
    return {"data.target": SYNTHETIC, "data.cache_dir": str(tmp_path / "cache"), **extra}


@torch.no_grad()
def reconstruction_error(vae, images: np.ndarray) -> float:
    x = images_to_tensor(images)
    return float((vae.decode(vae.encode(x).latent_dist.mean).sample - x).pow(2).mean())


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("vae")
    overrides = data_overrides(tmp_path, **{"train.steps": 16})
    export = vae_recipe.run("debug", tmp_path / "run", overrides=overrides)
    return tmp_path, export, overrides


def test_vae_debug_learns(trained_vae):
    tmp_path, export, overrides = trained_vae
    from diffusers import AutoencoderKL

    config = load_config("vae", "debug", overrides)
    with seeded_init("vae", config["seed"]):
        initial = build_vae(vae_recipe.vae_config(config)).eval()
    trained = AutoencoderKL.from_pretrained(export).eval()
    images = np.load(tmp_path / "cache" / "images.npy")[:16]
    assert reconstruction_error(trained, images) < 0.7 * reconstruction_error(initial, images)
    record = json.loads((tmp_path / "run" / "vae_record.json").read_text())
    assert record["training"]["final_step"] == 16 and record["scaling_factor"] == trained.config.scaling_factor
    assert "fypbench train vae --world mini --preset debug" in record["training"]["command"]


def test_resume_continues_at_the_right_step(tmp_path):
    overrides = data_overrides(tmp_path)
    interrupted = tmp_path / "interrupted"
    vae_recipe.run("debug", interrupted, overrides={**overrides, "train.steps": 4})
    export = vae_recipe.run("debug", interrupted, overrides={**overrides, "train.steps": 6})
    assert "resumed from" in (interrupted / "train.log").read_text()
    assert "at step 4" in (interrupted / "train.log").read_text()
    steps = [json.loads(line)["step"] for line in (interrupted / "losses.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    straight = vae_recipe.run("debug", tmp_path / "straight", overrides={**overrides, "train.steps": 6})
    from safetensors.torch import load_file

    a = load_file(export / "diffusion_pytorch_model.safetensors")
    b = load_file(straight / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="different config.*train.lr"):
        vae_recipe.run("debug", interrupted, overrides={**overrides, "train.steps": 8, "train.lr": 1e-4})


@torch.no_grad()
def denoising_error(unet, text_encoder, tokenizer, latents: torch.Tensor, captions: list[str]) -> float:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(preset_config("debug")["scheduler"])
    timesteps = torch.linspace(50, 950, len(latents)).long()
    noise = per_sample_randn(0, "test-noise", range(len(latents)), latents.shape[1:])
    ids = base_recipe.tokenize(tokenizer, captions)
    prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, text_encoder(ids)[0]).sample
    return float((prediction - noise).pow(2).mean())


def test_base_debug_learns_and_exports_a_pipeline(trained_vae):
    tmp_path, vae_export, overrides = trained_vae
    overrides = {**overrides, "model.vae_dir": str(vae_export), "train.steps": 24, "train.lr": 5e-3}
    folder = base_recipe.run("debug", tmp_path / "base", overrides=overrides)
    assert folder == tmp_path / "base" / "pipeline"
    pipeline = load_base(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["training"]["config"]["train"]["steps"] == 24 and manifest["vae_training"]["final_step"] == 16
    assert "unet/diffusion_pytorch_model.safetensors" in manifest["files"]

    config = load_config("base", "debug", overrides)
    parts = preset_config("debug")
    with seeded_init("base", "debug", "unet", config["seed"]):
        unet = build_unet({**parts["unet"], "sample_size": 8}).eval()
    with seeded_init("base", "debug", "text_encoder", config["seed"]):
        text_encoder = build_text_encoder(parts["text_encoder"]).eval()
    images = np.load(tmp_path / "cache" / "images.npy")[:16]
    captions = json.loads((tmp_path / "cache" / "captions.json").read_text())[:16]
    with torch.no_grad():
        latents = pipeline.vae.encode(images_to_tensor(images)).latent_dist.mean * pipeline.vae.config.scaling_factor
    before = denoising_error(unet, text_encoder, pipeline.tokenizer, latents, captions)
    after = denoising_error(pipeline.unet, pipeline.text_encoder, pipeline.tokenizer, latents, captions)
    assert after < 0.8 * before


def test_base_needs_a_trained_vae(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / 'no-vae'}: no trained VAE"):
        base_recipe.run("debug", tmp_path / "run", overrides={**data_overrides(tmp_path),
                                                               "model.vae_dir": str(tmp_path / "no-vae")})


def test_decoder_fine_tune_keeps_the_latent_space_and_exports_into_the_pipeline(trained_vae):
    tmp_path, export, overrides = trained_vae
    from diffusers import AutoencoderKL

    tuned_dir = vae_recipe.run("debug", tmp_path / "decoder", overrides={
        **overrides, "model.init_from": str(export), "model.train": "decoder", "train.steps": 4, "seed": 1})
    before, after = AutoencoderKL.from_pretrained(export), AutoencoderKL.from_pretrained(tuned_dir)
    assert base_recipe.same_encoder(before, after)
    assert not torch.equal(before.decoder.conv_out.weight, after.decoder.conv_out.weight)
    folder = base_recipe.run("debug", tmp_path / "base_tuned", overrides={
        **overrides, "model.vae_dir": str(export), "export.vae_dir": str(tuned_dir), "train.steps": 2})
    pipeline = load_base(folder)
    torch.testing.assert_close(pipeline.vae.decoder.conv_out.weight, after.decoder.conv_out.weight.half().float())
    assert json.loads((folder / "manifest.json").read_text())["vae_decoder_training"]["final_step"] == 4
    other = vae_recipe.run("debug", tmp_path / "other", overrides={**overrides, "train.steps": 2, "seed": 3})
    with pytest.raises(UserError, match="share model.vae_dir's encoder"):
        base_recipe.run("debug", tmp_path / "base_other", overrides={
            **overrides, "model.vae_dir": str(tuned_dir), "export.vae_dir": str(other), "train.steps": 2})
    with pytest.raises(UserError, match="model.train 'encoder'"):
        vae_recipe.run("debug", tmp_path / "bad", overrides={**overrides, "model.train": "encoder"})


def test_a_checkpoint_older_than_a_config_field_resumes_only_with_the_fields_old_value():
    from fypbench.training.common import config_differences

    old = {"train": {"lr": 1e-3}, "loss": {"timesteps": "cubic"}}
    same = {"train": {"lr": 1e-3}, "loss": {"timesteps": "cubic", "weighting": "none", "max_weight": None}}
    assert config_differences(old, same) == []
    changed = {"train": {"lr": 1e-3}, "loss": {"timesteps": "cubic", "weighting": "inverse_snr", "max_weight": 5.0}}
    assert config_differences(old, changed) == ["loss.max_weight", "loss.weighting"]
