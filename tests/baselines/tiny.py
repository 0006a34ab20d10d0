"""Tiny random components shared by the baseline tests (the real architectures at toy widths, CPU, < 1 s)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from fypbench.base.components import Components, build_components, save_pipeline
from fypbench.sample import Sample
from fypbench.seeding import derive_seed

SIZE = 16  # the debug base: 8x8 latents, 2x VAE
STEPS = 3


def components() -> Components:
    """The debug base, its UNet's output convolution scaled x5: a random UNet barely reacts to residuals
    otherwise, which hides what control modules (and their training) change."""
    base = build_components("debug").eval()
    with torch.no_grad():
        base.unet.conv_out.weight.mul_(5.0)
    return base


def perturb_(module: torch.nn.Module, names: tuple[str, ...], seed: object, scale: float = 0.3) -> None:
    """Give zero-initialised layers (ControlNet's zero convolutions) random weights, so control is visible."""
    generator = torch.Generator().manual_seed(derive_seed("test-perturb", seed))
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if any(part in name for part in names):
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))


def random_controlnet(base: Components, seed: int = 0):
    from fypbench.baselines.controlnet import build_controlnet

    controlnet = build_controlnet(base.unet, base.vae_scale_factor, (8, 16), seed)
    perturb_(controlnet, ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out"),
             ("controlnet", seed))
    return controlnet.eval()


def random_adapter(base: Components, seed: int = 0):
    from fypbench.baselines.t2i_adapter import build_adapter

    return build_adapter(base.unet, base.vae_scale_factor, 1, seed).eval()


@lru_cache(maxsize=1)
def _protocol_samples() -> tuple[Sample, ...]:
    from fypbench.protocol import load_protocol

    return tuple(load_protocol("fyp-1024").samples[:8])


def sample(index: int = 0, frames: int = 3, identical_poses: bool = False) -> Sample:
    """A fyp-1024 sample cut to `frames` frames (optionally every frame = frame 0's pose)."""
    base = _protocol_samples()[index]
    keypoints, openpose = base.keypoints[:frames].copy(), base.openpose[:frames].copy()
    if identical_poses:
        keypoints[:] = keypoints[:1]
        openpose[:] = openpose[:1]
    return dataclasses.replace(base, keypoints=keypoints, openpose=openpose)


def save_base(base: Components, folder: Path, manifest: bool = True) -> Path:
    """A base pipeline folder: fypbench's (with manifest.json) or a plain diffusers one (as SD folders are)."""
    if manifest:
        return save_pipeline(base, folder)
    base.pipeline().save_pretrained(folder, safe_serialization=True)
    return folder


def put_in_hub_cache(module: torch.nn.Module, cache: Path, repo_id: str) -> Path:
    """Store a module as the local Hugging Face cache stores a downloaded model repo (offline resolution)."""
    commit = f"{derive_seed('test-commit', repo_id):040x}"[-40:]
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    module.save_pretrained(snapshot, safe_serialization=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def use_hub_cache(monkeypatch, cache: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))


def base_pipeline_images(base: Components, prompts: list[str], latents: torch.Tensor, guidance: float,
                         negative_prompt: str = "") -> np.ndarray:
    """diffusers' StableDiffusionPipeline on explicit latents, rounded to uint8 like the generators."""
    from fypbench.base.sample import to_uint8

    out = base.pipeline()(prompt=prompts, negative_prompt=[negative_prompt] * len(prompts), latents=latents,
                          num_inference_steps=STEPS, guidance_scale=guidance, height=SIZE, width=SIZE,
                          output_type="np")
    return to_uint8(out.images)


def copy_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())
