"""Train the mini world's AutoencoderKL (4x downsampling, 4 latent channels) on rendered captioned images.

    fypbench train vae --world mini            (the lead's CLI; the same as the line below)
    python -m fypbench.training.vae --preset mini [--output-dir DIR] [--no-resume] [--set train.steps=100]

model.init_from starts from a trained VAE folder and model.train=decoder fine-tunes only the decoder (the
encoder, the latent space and the scaling factor stay; a base model trained on those latents stays valid).
Optionally trains on random crops (data.crop; the VAE is fully convolutional, and a 32-px crop costs a quarter
of a 64-px image), and starts the posterior log-variance low (model.initial_logvar).
Loss: L1 + MSE reconstruction (PSNR is the quality bar) + a tiny KL term (SD's VAE uses 1e-6), on posterior
samples whose noise is drawn per sample from (seed, stream position). No LPIPS/GAN terms: no pretrained
perceptual network exists offline, and the mini world's flat-shaded renders do not need them.
Writes checkpoints to <output_dir>/checkpoint.pt and the trained VAE (diffusers AutoencoderKL folder, with the
latent scaling factor measured as 1/std of training latents, as SD did) to <output_dir>/vae; returns that path.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.errors import UserError
from fypbench.io import write_json_atomic
from fypbench.seeding import numpy_rng
from fypbench.base.components import build_vae, preset_config, save_folder_atomic, seeded_init
from fypbench.training.common import (
    TrainingLoop,
    cached_dataset,
    images_to_tensor,
    make_accelerator,
    make_logger,
    per_sample_randn,
    recipe_config,
    resolve_path,
    run_record,
)

RECIPE = "vae"


class AutoencoderObjective(torch.nn.Module):
    """Wraps the VAE so one forward (what DDP synchronises) gives the reconstruction and the KL term."""

    def __init__(self, vae: torch.nn.Module, train_encoder: bool = True):
        super().__init__()
        self.vae = vae
        self.train_encoder = train_encoder

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            posterior = self.vae.encode(images).latent_dist
        latents = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
        reconstruction = self.vae.decode(latents).sample
        return reconstruction, posterior.kl().mean() / float(np.prod(posterior.mean.shape[1:]))


def vae_config(config: dict[str, Any]) -> dict[str, Any]:
    """The preset's AutoencoderKL kwargs, with model.vae_overrides applied (unknown keys: UserError)."""
    vae = preset_config(config["model"]["preset"])["vae"]
    overrides = dict(config["model"]["vae_overrides"] or {})
    unknown = set(overrides) - set(vae)
    if unknown:
        raise UserError(f"model.vae_overrides: unknown AutoencoderKL field(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(vae))})")
    vae.update(overrides)
    vae["sample_size"] = int(config["data"]["kwargs"]["size"])
    return vae


@torch.no_grad()
def latent_std(vae: torch.nn.Module, images: np.ndarray, seed: int, batch: int = 64) -> float:
    """Std of posterior samples over `images` (SD's way of choosing the latent scaling factor)."""
    vae.eval()
    device = next(vae.parameters()).device
    values = []
    for lo in range(0, len(images), batch):
        x = images_to_tensor(images[lo:lo + batch]).to(device)
        posterior = vae.encode(x).latent_dist
        noise = per_sample_randn(seed, "vae-scaling", range(lo, lo + len(x)), posterior.mean.shape[1:])
        values.append((posterior.mean + posterior.std * noise.to(device)).flatten().cpu())
    return float(torch.cat(values).std())


def load_trained_vae(folder: Path, field: str):
    from diffusers import AutoencoderKL

    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: no trained VAE here ({field})")
    try:
        return AutoencoderKL.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    except Exception as exc:  # a corrupt folder raises OSError, ValueError or a safetensors error
        raise UserError(f"{folder}: cannot load the VAE ({type(exc).__name__})") from None


def crops(images: np.ndarray, side: int, seed: int, positions) -> np.ndarray:
    """A random side x side crop of each image, its corner drawn from (seed, stream position)."""
    size = images.shape[1]
    if side == size:
        return np.asarray(images)
    out = np.empty((len(images), side, side, 3), np.uint8)
    for n, (image, position) in enumerate(zip(images, positions)):
        top, left = numpy_rng("vae-crop", seed, int(position)).integers(0, size - side + 1, 2)
        out[n] = image[top:top + side, left:left + side]
    return out


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the VAE of `preset`; returns the exported AutoencoderKL folder."""
    config, output_dir = recipe_config(RECIPE, preset, overrides, output_dir, resume)
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    seed = int(config["seed"])
    data = config["data"]
    with accelerator.main_process_first():
        images, _ = cached_dataset(data["target"], data["kwargs"], int(data["count"]),
                                   resolve_path(data["cache_dir"]), int(data["workers"]), log)
    model = config["model"]
    if model["train"] not in ("all", "decoder"):
        raise UserError(f"model.train {model['train']!r}: expected all or decoder")
    if model["init_from"]:
        vae = load_trained_vae(resolve_path(model["init_from"]), "model.init_from")
    else:
        with seeded_init("vae", seed):
            vae = build_vae(vae_config(config))
    train_encoder = model["train"] == "all"
    if not train_encoder:
        # decoder-only fine-tuning (as SD's ft-MSE VAE): the encoder, and so the latent space and every latent
        # a base model was trained on, stay exactly as they were
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    if config["model"]["initial_logvar"] is not None and not model["init_from"]:
        # quant_conv's second half is the posterior log-variance; starting it low keeps the early posterior
        # noise (std 1 at a default init) from drowning the reconstruction signal.
        with torch.no_grad():
            vae.quant_conv.bias[vae.config.latent_channels:] = float(config["model"]["initial_logvar"])
    objective = AutoencoderObjective(vae, train_encoder)
    weights = config["loss"]
    device = accelerator.device
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = int(data["kwargs"]["size"])
    crop = int(data["crop"]) or size
    if crop > size or crop % factor:
        raise UserError(f"data.crop {crop}: must be a multiple of {factor} and at most data.kwargs.size {size}")

    def loss_fn(step: int, batch, modules) -> torch.Tensor:
        x = images_to_tensor(crops(images[batch.indices], crop, seed, batch.positions)).to(device)
        noise = per_sample_randn(seed, "vae-posterior", batch.positions,
                                 (int(vae.config.latent_channels), crop // factor, crop // factor))
        reconstruction, kl = modules["objective"](x, noise.to(device))
        reconstruction = reconstruction.float()
        return (float(weights["l1"]) * (reconstruction - x).abs().mean()
                + float(weights["mse"]) * (reconstruction - x).pow(2).mean() + float(weights["kl"]) * kl.float())

    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config,
                        modules={"objective": objective},
                        parameters=[p for p in vae.parameters() if p.requires_grad],
                        dataset_size=len(images), loss_fn=loss_fn, log=log)
    result = loop.run(resume=resume)
    loop.export_parameters()
    export = output_dir / "vae"
    if accelerator.is_main_process:
        count = min(int(config["scaling"]["count"]), len(images))
        std = latent_std(vae, images[:count], seed)
        if train_encoder:  # a frozen encoder keeps its latent space, and with it the scaling factor
            vae.register_to_config(scaling_factor=round(1.0 / std, 5))
        staging = copy.deepcopy(vae).to("cpu", torch.float32)
        save_folder_atomic(staging.save_pretrained, export)
        write_json_atomic(output_dir / "vae_record.json",
                          {**run_record(config, overrides, result), "latent_std": std,
                           "scaling_factor": vae.config.scaling_factor})
        log(f"exported {export} (scaling_factor {vae.config.scaling_factor})")
    accelerator.wait_for_everyone()
    return export


def main(argv: Sequence[str] | None = None) -> None:
    from fypbench.training.common import recipe_main

    recipe_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
