"""Train the mini world's base text-to-image model: UNet (and text encoder) on latents of a trained VAE.

    fypbench train base --world mini           (the lead's CLI; the same as the line below)
    python -m fypbench.training.base --preset mini [--output-dir DIR] [--no-resume] [--set train.steps=100]

SD 1.x's objective: epsilon prediction, one DDPM timestep per image (scaled_linear betas, 1000 steps), latents
sampled from the VAE posterior and multiplied by the VAE's scaling factor, captions dropped (replaced by "") with
probability data.caption_dropout so classifier-free guidance works. Optional min-SNR-gamma loss weighting
(loss.snr_gamma > 0; Hang et al. 2023) speeds up convergence. The text encoder is trained jointly when
model.train_text_encoder is true (the mini preset's choice; see benchmarks/bench_base_training.py and the
report), else frozen at its seeded initialisation. EMA weights are exported.

Needs the VAE exported by `fypbench.training.vae` (model.vae_dir). Renders (or reuses) the same image cache,
encodes it once with the VAE (cached in <output_dir>/latents.npz), trains, and saves a standard diffusers
StableDiffusionPipeline folder with a manifest.json (file hashes, training command and config) to export.dir
(default <output_dir>/pipeline); returns that path. export.vae_dir (default: model.vae_dir) is the VAE put in the
pipeline: a decoder-only fine-tune of model.vae_dir (same encoder, checked), e.g. vae preset mini_decoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.base.components import (
    Components,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    preset_config,
    save_pipeline,
    seeded_init,
    sha256_file,
)
from fypbench.errors import UserError
from fypbench.io import atomic_path, write_json_atomic
from fypbench.training.common import (
    TrainingLoop,
    cached_dataset,
    channels_last_layout,
    images_to_tensor,
    make_accelerator,
    make_logger,
    per_sample_randint,
    per_sample_randn,
    per_sample_uniform,
    recipe_config,
    resolve_path,
    run_record,
)

RECIPE = "base"


class DenoiserObjective(torch.nn.Module):
    """UNet (+ text encoder when trained) in one forward, so DDP synchronises both."""

    def __init__(self, unet: torch.nn.Module, text_encoder: torch.nn.Module, train_text_encoder: bool):
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder
        self.train_text_encoder = train_text_encoder

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.train_text_encoder and torch.is_grad_enabled()):
            context = self.text_encoder(input_ids)[0]
        return self.unet(noisy, timesteps, context).sample


def load_vae(vae_dir: Path):
    from diffusers import AutoencoderKL

    if not (vae_dir / "config.json").is_file():
        raise UserError(f"{vae_dir}: no trained VAE here (model.vae_dir); run `fypbench train vae` first")
    try:
        return AutoencoderKL.from_pretrained(vae_dir, local_files_only=True, torch_dtype=torch.float32).eval()
    except Exception as exc:  # a corrupt folder raises OSError, ValueError or a safetensors error
        raise UserError(f"{vae_dir}: cannot load the VAE ({type(exc).__name__})") from None


@torch.no_grad()
def encode_latents(vae, images: np.ndarray, path: Path, key: dict[str, Any], log, batch: int = 128):
    """Posterior mean and std of every image (float16, unscaled), cached in `path` with `key` beside it."""
    key_path = path.with_suffix(".json")
    if path.exists() and key_path.exists() and json.loads(key_path.read_text()) == key:
        with np.load(path) as cached:
            return channels_last_layout(cached["mean"]), channels_last_layout(cached["std"])
    means, stds = [], []
    device = next(vae.parameters()).device
    for lo in range(0, len(images), batch):
        posterior = vae.encode(images_to_tensor(images[lo:lo + batch]).to(device)).latent_dist
        means.append(posterior.mean.half().cpu().numpy())
        stds.append(posterior.std.half().cpu().numpy())
        if (lo // batch) % 50 == 0:
            log(f"encoded {lo + len(means[-1])}/{len(images)} images")
    # one memory layout for fresh and cached latents (a resumed session must feed the UNet what a fresh one did)
    mean, std = channels_last_layout(np.concatenate(means)), channels_last_layout(np.concatenate(stds))
    with atomic_path(path) as tmp:
        np.savez(tmp, mean=mean, std=std)
    write_json_atomic(key_path, key)
    return mean, std


def same_encoder(a, b) -> bool:
    """Whether two AutoencoderKLs encode identically (same encoder and quant_conv weights, same scaling)."""
    parts = lambda vae: {k: v for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}  # noqa: E731
    left, right = parts(a), parts(b)
    return (left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)
            and a.config.scaling_factor == b.config.scaling_factor)


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the base model of `preset`; returns the exported pipeline folder."""
    config, output_dir = recipe_config(RECIPE, preset, overrides, output_dir, resume)
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    seed = int(config["seed"])
    data, model = config["data"], config["model"]
    vae_dir = resolve_path(model["vae_dir"])
    vae = load_vae(vae_dir)
    with accelerator.main_process_first():
        images, captions = cached_dataset(data["target"], data["kwargs"], int(data["count"]),
                                          resolve_path(data["cache_dir"]), int(data["workers"]), log)
        key = {"vae": sha256_file(vae_dir / "diffusion_pytorch_model.safetensors"),
               "data": json.loads((resolve_path(data["cache_dir"]) / "info.json").read_text()),
               "count": len(images)}
        latent_mean, latent_std = encode_latents(vae.to(accelerator.device), images, output_dir / "latents.npz",
                                                 key, log)
        vae.to("cpu")
    scaling = float(vae.config.scaling_factor)
    tokenizer = build_tokenizer()
    input_ids = tokenize(tokenizer, captions)
    empty_ids = tokenize(tokenizer, [""])[0]

    parts = preset_config(model["preset"])
    with seeded_init("base", model["preset"], "text_encoder", seed):
        text_encoder = build_text_encoder(parts["text_encoder"])
    with seeded_init("base", model["preset"], "unet", seed):
        unet = build_unet({**parts["unet"], "sample_size": int(latent_mean.shape[-1])})
    train_text = bool(model["train_text_encoder"])
    text_encoder.requires_grad_(train_text)
    if not train_text:
        text_encoder.eval()
    objective = DenoiserObjective(unet, text_encoder, train_text)
    parameters = list(unet.parameters()) + (list(text_encoder.parameters()) if train_text else [])

    noise_scheduler = build_scheduler(parts["scheduler"])
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(noise_scheduler.config)
    alphas_cumprod = noise_scheduler.alphas_cumprod.float()
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    gamma = float(config["loss"]["snr_gamma"])
    num_timesteps = int(noise_scheduler.config.num_train_timesteps)
    latent_shape = tuple(latent_mean.shape[1:])
    dropout = float(data["caption_dropout"])
    device = accelerator.device

    def loss_fn(step: int, batch, modules) -> torch.Tensor:
        index = batch.indices
        mean = torch.from_numpy(latent_mean[index].astype(np.float32))
        std = torch.from_numpy(latent_std[index].astype(np.float32))
        posterior_noise = per_sample_randn(seed, "base-posterior", batch.positions, latent_shape)
        latents = (mean + std * posterior_noise) * scaling
        noise = per_sample_randn(seed, "base-noise", batch.positions, latent_shape)
        timesteps = per_sample_randint(seed, "base-timestep", batch.positions, num_timesteps)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        ids = input_ids[index].clone()
        drop = per_sample_uniform(seed, "base-caption-dropout", batch.positions) < dropout
        ids[torch.from_numpy(drop)] = empty_ids
        prediction = modules["objective"](noisy.to(device), timesteps.to(device), ids.to(device)).float()
        per_sample = (prediction - noise.to(device)).pow(2).mean(dim=(1, 2, 3))
        if gamma > 0:
            weight = torch.clamp(snr[timesteps], max=gamma) / snr[timesteps]
            per_sample = per_sample * weight.to(device)
        return per_sample.mean()

    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config,
                        modules={"objective": objective}, parameters=parameters,
                        dataset_size=len(latent_mean), loss_fn=loss_fn, log=log)
    result = loop.run(resume=resume)
    loop.export_parameters()
    export_dir = resolve_path(config["export"]["dir"]) if config["export"]["dir"] else output_dir / "pipeline"
    if accelerator.is_main_process:
        record = run_record(config, overrides, result)
        export_vae_dir = resolve_path(config["export"]["vae_dir"]) if config["export"]["vae_dir"] else vae_dir
        export_vae = vae if export_vae_dir == vae_dir else load_vae(export_vae_dir)
        if export_vae_dir != vae_dir and not same_encoder(vae, export_vae):
            raise UserError(f"{export_vae_dir}: export.vae_dir must share model.vae_dir's encoder (latent space)")
        for name, folder in (("vae_training", vae_dir), ("vae_decoder_training", export_vae_dir)):
            vae_record_path = folder.parent / "vae_record.json"
            if vae_record_path.exists() and (name == "vae_training" or folder != vae_dir):
                record[name] = json.loads(vae_record_path.read_text()).get("training")
        components = Components(tokenizer=tokenizer, text_encoder=text_encoder.eval(), vae=export_vae,
                                unet=unet.eval(), scheduler=build_scheduler(parts["scheduler"]))
        save_pipeline(components, export_dir, half=tuple(config["export"]["float16"]), manifest=record)
        log(f"exported {export_dir}")
    accelerator.wait_for_everyone()
    return export_dir


def main(argv: Sequence[str] | None = None) -> None:
    from fypbench.training.common import recipe_main

    recipe_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
