"""Train the mini world's AutoencoderKL (4x downsampling, 4 latent channels) on rendered captioned images.

    fypbench train vae --world mini            (the lead's CLI; the same as the line below)
    python -m fypbench.training.vae --preset mini [--output-dir DIR] [--no-resume] [--set train.steps=100]

Loss: L1 + MSE reconstruction (PSNR is the quality bar) + a tiny KL term (SD's VAE uses 1e-6), on posterior
samples whose noise is drawn per sample from (seed, stream position). No LPIPS/GAN terms: no pretrained
perceptual network exists offline, and the mini world's flat-shaded renders do not need them.
Writes checkpoints to <output_dir>/checkpoint.pt and the trained VAE (diffusers AutoencoderKL folder, with the
latent scaling factor measured as 1/std of training latents, as SD did) to <output_dir>/vae; returns that path.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.io import write_json_atomic
from fypbench.base.components import build_vae, preset_config, save_folder_atomic, seeded_init
from fypbench.training.common import (
    TrainingLoop,
    cached_dataset,
    default_output_dir,
    images_to_tensor,
    load_config,
    make_accelerator,
    make_logger,
    parse_overrides,
    per_sample_randn,
    resolve_path,
    run_record,
)

RECIPE = "vae"


class AutoencoderObjective(torch.nn.Module):
    """Wraps the VAE so one forward (what DDP synchronises) gives the reconstruction and the KL term."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
        reconstruction = self.vae.decode(latents).sample
        return reconstruction, posterior.kl().mean() / float(np.prod(posterior.mean.shape[1:]))


def vae_config(config: dict[str, Any]) -> dict[str, Any]:
    vae = preset_config(config["model"]["preset"])["vae"]
    vae["sample_size"] = int(config["data"]["kwargs"]["size"])
    return vae


@torch.no_grad()
def latent_std(vae: torch.nn.Module, images: np.ndarray, seed: int, batch: int = 64) -> float:
    """Std of posterior samples over `images` (SD's way of choosing the latent scaling factor)."""
    vae.eval()
    values = []
    for lo in range(0, len(images), batch):
        x = images_to_tensor(images[lo:lo + batch])
        posterior = vae.encode(x).latent_dist
        noise = per_sample_randn(seed, "vae-scaling", range(lo, lo + len(x)), posterior.mean.shape[1:])
        values.append((posterior.mean + posterior.std * noise).flatten())
    return float(torch.cat(values).std())


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the VAE of `preset`; returns the exported AutoencoderKL folder."""
    config = load_config(RECIPE, preset, overrides)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(RECIPE, preset)
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    seed = int(config["seed"])
    data = config["data"]
    with accelerator.main_process_first():
        images, _ = cached_dataset(data["target"], data["kwargs"], int(data["count"]),
                                   resolve_path(data["cache_dir"]), int(data["workers"]), log)
    with seeded_init("vae", seed):
        vae = build_vae(vae_config(config))
    objective = AutoencoderObjective(vae)
    weights = config["loss"]
    device = accelerator.device

    latent_side = int(data["kwargs"]["size"]) // (2 ** (len(vae.config.block_out_channels) - 1))

    def loss_fn(step: int, batch, modules) -> torch.Tensor:
        x = images_to_tensor(images[batch.indices]).to(device)
        noise = per_sample_randn(seed, "vae-posterior", batch.positions,
                                 (int(vae.config.latent_channels), latent_side, latent_side))
        reconstruction, kl = modules["objective"](x, noise.to(device))
        reconstruction = reconstruction.float()
        return (float(weights["l1"]) * (reconstruction - x).abs().mean()
                + float(weights["mse"]) * (reconstruction - x).pow(2).mean() + float(weights["kl"]) * kl.float())

    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config,
                        modules={"objective": objective}, parameters=list(vae.parameters()),
                        dataset_size=len(images), loss_fn=loss_fn, log=log)
    result = loop.run(resume=resume)
    loop.export_parameters()
    export = output_dir / "vae"
    if accelerator.is_main_process:
        count = min(int(config["scaling"]["count"]), len(images))
        std = latent_std(vae, images[:count], seed)
        vae.register_to_config(scaling_factor=round(1.0 / std, 5))
        staging = copy.deepcopy(vae).float()
        save_folder_atomic(staging.save_pretrained, export)
        write_json_atomic(output_dir / "vae_record.json",
                          {**run_record(config, overrides, result), "latent_std": std,
                           "scaling_factor": vae.config.scaling_factor})
        log(f"exported {export} (scaling_factor {vae.config.scaling_factor})")
    accelerator.wait_for_everyone()
    return export


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    print(run(args.preset, args.output_dir, not args.no_resume, parse_overrides(args.set)))


if __name__ == "__main__":
    main()
