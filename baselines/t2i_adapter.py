"""T2I-Adapter (keypose / openpose) baseline: per-frame pose-controlled generation, and its mini-world recipe.

    OMP_NUM_THREADS=1 python -m pytest tests/baselines/test_t2i_adapter.py -q
    python -m fypbench.baselines.t2i_adapter --preset mini        (= `fypbench train t2i-adapter --world mini`)

Generation (reference/baselines.md §0, §2): the same per-frame protocol as the ControlNet baseline (shared
initial noise by default, DDIM eta 0, classifier-free guidance), with a diffusers `T2IAdapter` whose feature
maps are computed once per image from its skeleton map, scaled by `conditioning_scale`
(StableDiffusionAdapterPipeline's `adapter_conditioning_scale`), doubled for guidance and added inside the UNet's
down blocks (`down_intrablock_additional_residuals`). The loop is controlnet.py's `denoise_latents`, so MasaCtrl
reuses the same code with this adapter as its pose control.

Variants. sd (SD 1.4 `CompVis/stable-diffusion-v1-4`): "keypose" (default: `TencentARC/t2iadapter_keypose_sd14v1`,
mmpose COCO-17 skeletons, the input Follow-Your-Pose reads) and "openpose" (`TencentARC/t2iadapter_openpose_sd14v1`,
OpenPose-18 maps), from a local folder or the local Hugging Face cache. mini: a `full_adapter` with the mini UNet's
widths and the VAE's downscale factor, trained here on image-pose pairs with keypose maps (`run`), shipped to
fypbench/weights/mini/t2i-adapter; its manifest records the conditioning style it reads.

Training (`run`): diffusers ships only an SDXL adapter script (train_t2i_adapter_sdxl.py); this is its recipe
for an SD 1.x-layout base: frozen base, adapter from scratch, epsilon-MSE, timesteps drawn with the script's
cubic schedule t = (1 - u^3) T (more weight on the noisy steps, where the layout is decided), caption dropout.
The shared objective, data cache and export live in controlnet.py (`train_pose_control`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from fypbench.base.components import Components, seeded_init
from fypbench.baselines.controlnet import (
    CONDITIONING_STYLES,
    PoseControlledImageGenerator,
    PoseControlTraining,
    train_pose_control,
)
from fypbench.errors import UserError

SD14_BASE = "CompVis/stable-diffusion-v1-4"
ADAPTER_CHECKPOINTS = {
    "keypose": "TencentARC/t2iadapter_keypose_sd14v1",
    "openpose": "TencentARC/t2iadapter_openpose_sd14v1",
}


class T2IAdapterGenerator(PoseControlledImageGenerator):
    """T2I-Adapter, frame by frame. Options: see PoseControlledImageGenerator.__init__ (`conditioning_scale` is the
    adapter conditioning scale; `variant` "keypose" or "openpose" picks the sd checkpoint and skeleton style)."""

    name = "t2i-adapter"
    default_variant = "keypose"
    checkpoints = ADAPTER_CHECKPOINTS
    sd_base = SD14_BASE
    control_kind = "T2IAdapter"

    def load_control(self, folder: Path) -> torch.nn.Module:
        from diffusers import T2IAdapter

        return T2IAdapter.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)

    def check_control(self, components: Components, module: torch.nn.Module, where: str) -> None:
        from diffusers import T2IAdapter

        if not isinstance(module, T2IAdapter):
            raise UserError(f"{where}: expected a T2IAdapter, got {type(module).__name__}")
        check_adapter_fits(components, module, where)

    def conditioning_style(self) -> str:
        """The fypbench manifest's style (mini-trained adapters), else the variant's (sd checkpoints)."""
        recorded = (self.manifest or {}).get("conditioning")
        if recorded is None:
            return self.variant or self.default_variant
        if recorded not in CONDITIONING_STYLES:
            raise UserError(f"{self.name} weights manifest: unknown conditioning {recorded!r}")
        if self.variant is not None and self.variant != recorded:
            raise UserError(f"{self.name}: variant {self.variant!r} asked, but the weights read {recorded!r} maps")
        return recorded


def check_adapter_fits(components: Components, adapter, where: str) -> None:
    """Adapter features must land on the UNet's down blocks: same widths, first feature at latent resolution,
    and a cross-attention first block (a plain first block adds the feature at the wrong place)."""
    unet = components.unet.config
    channels = list(adapter.config.channels)
    if channels != list(unet.block_out_channels):
        raise UserError(f"{where}: adapter channels {channels} != the base UNet's block_out_channels "
                        f"{list(unet.block_out_channels)}")
    if int(adapter.config.downscale_factor) != components.vae_scale_factor:
        raise UserError(f"{where}: adapter downscale_factor {adapter.config.downscale_factor} != the base VAE's "
                        f"factor {components.vae_scale_factor}")
    if adapter.config.adapter_type not in ("full_adapter", "light_adapter"):
        raise UserError(f"{where}: adapter_type {adapter.config.adapter_type!r} is not an SD 1.x adapter")
    if not str(unet.down_block_types[0]).startswith("CrossAttn"):
        raise UserError(f"{where}: a T2I-Adapter needs a UNet whose first down block has cross-attention "
                        f"(got {unet.down_block_types[0]})")


def build_adapter(unet, vae_scale_factor: int, num_res_blocks: int, seed: int):
    """A fresh full adapter sized to the UNet (channels = block_out_channels), seeded."""
    from diffusers import T2IAdapter

    with seeded_init("t2i_adapter", seed):
        return T2IAdapter(in_channels=3, channels=list(unet.config.block_out_channels),
                          num_res_blocks=int(num_res_blocks), downscale_factor=int(vae_scale_factor),
                          adapter_type="full_adapter")


# ======================================================================================= training (mini world)
RECIPE = "t2i_adapter"  # configs/t2i_adapter_<preset>.yaml
CLI_NAME = "t2i-adapter"


def adapter_unet_inputs(adapter) -> Callable[..., dict[str, Any]]:
    def inputs(noisy, timesteps, context, conditioning):
        return {"down_intrablock_additional_residuals": list(adapter(conditioning))}

    return inputs


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the mini-world T2I-Adapter of `preset`; returns the exported folder."""

    def build(training: PoseControlTraining):
        return build_adapter(training.components.unet, training.components.vae_scale_factor,
                             training.config["model"]["num_res_blocks"], int(training.config["seed"]))

    style = str(load_style(preset, overrides))
    return train_pose_control(RECIPE, preset, output_dir, resume, overrides, style=style, build=build,
                              unet_inputs=adapter_unet_inputs, cli_name=CLI_NAME)


def load_style(preset: str, overrides: dict[str, Any] | None) -> str:
    from fypbench.training.common import load_config

    style = load_config(RECIPE, preset, overrides)["model"]["conditioning"]
    if style not in CONDITIONING_STYLES:
        raise UserError(f"{RECIPE} preset {preset}: model.conditioning {style!r} (expected keypose or openpose)")
    return style


def main(argv: Sequence[str] | None = None) -> None:
    from fypbench.training.common import recipe_main

    recipe_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
