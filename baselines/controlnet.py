"""ControlNet (OpenPose) baseline: per-frame pose-controlled image generation, and its mini-world training recipe.

    OMP_NUM_THREADS=1 python -m pytest tests/baselines/test_controlnet.py -q
    python -m fypbench.baselines.controlnet --preset mini          (= `fypbench train controlnet --world mini`)

Generation (reference/baselines.md §0-§1). Each frame of a sample is an independent text-to-image generation
controlled by that frame's OpenPose-18 skeleton map (`draw_openpose_video`, black background, [0, 1]). A
sample's initial noise is `fypbench.seeding.initial_noise(sample.seed, (C, F, h, w))`; noise mode "shared"
(default) starts every frame from frame 0's slice, "independent" gives frame f its own slice. The sampler is
StableDiffusionControlNetPipeline's math written out (DDIM, eta 0, classifier-free guidance with the control
applied to both halves, `guess_mode=False`): `denoise_latents` is that loop, shared with the T2I-Adapter
(t2i_adapter.py) and MasaCtrl (masactrl.py), which pass their own control module or attention processors.

Worlds. sd: SD 1.5 + `lllyasviel/sd-controlnet-openpose` (variant "v1.0", default: the checkpoint of the
paper's time) or `lllyasviel/control_v11p_sd15_openpose` ("v1.1"), from a local folder or the local Hugging
Face cache (offline). mini: `ControlNetModel.from_unet(mini base UNet)` with a conditioning embedding sized to
the 4x VAE, trained here on the mini world's image-pose pairs (`run`), shipped to fypbench/weights/mini/controlnet.

Training (`run`, diffusers' examples/controlnet/train_controlnet.py at mini scale): the base (UNet, text
encoder, VAE) is frozen; the ControlNet starts as a copy of the UNet's encoder with zero-initialised output
convolutions; epsilon-MSE with one DDPM timestep per image (optionally min-SNR weighted); captions replaced by
"" with probability data.caption_dropout (the ControlNet paper drops 50 %); conditioning maps drawn from each
pair's keypoints. Resumable checkpoints, EMA, accelerate: fypbench.training.common.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fypbench.base.components import (
    Components,
    file_hashes,
    folder_version,
    load_base,
    save_folder_atomic,
    seeded_init,
    verify_manifest,
)
from fypbench.errors import UserError, did_you_mean
from fypbench.generator import Generator, MethodUnavailable, check_video
from fypbench.sample import Sample
from fypbench.seeding import initial_noise

# --------------------------------------------------------------------------------------------------- constants
SD15_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CONTROLNET_CHECKPOINTS = {
    "v1.0": "lllyasviel/sd-controlnet-openpose",
    "v1.1": "lllyasviel/control_v11p_sd15_openpose",
}
# Sampler defaults per preset: sd = the diffusers image pipelines' published defaults (baselines.md §0);
# mini = the mini base model's defaults (fypbench.base.sample: 25 steps, guidance chosen on held-out prompts).
SAMPLER_PRESETS: dict[str, dict[str, Any]] = {
    "mini": {"num_inference_steps": 25, "guidance_scale": 5.0},
    "sd": {"num_inference_steps": 50, "guidance_scale": 7.5},
}
NOISE_MODES = ("shared", "independent")
CONDITIONING_STYLES = ("openpose", "keypose")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MANIFEST_NAME = "manifest.json"


# ------------------------------------------------------------------------------------------ conditioning maps
def conditioning_maps(sample: Sample, style: str, size: int) -> np.ndarray:
    """A sample's skeleton maps, uint8 (F, size, size, 3): "openpose" (OpenPose-18) or "keypose" (COCO-17)."""
    from fypbench.world.mini.skeleton import draw_keypose_video, draw_openpose_video

    if style == "openpose":
        return draw_openpose_video(sample.openpose, size)
    if style == "keypose":
        return draw_keypose_video(sample.keypoints, size)
    raise did_you_mean(style, CONDITIONING_STYLES, "conditioning style")


def maps_to_tensor(maps: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) skeleton maps -> float (N, 3, H, W) in [0, 1]; float tensors pass through unchanged."""
    if isinstance(maps, torch.Tensor):
        if maps.ndim != 4 or maps.shape[1] != 3 or not maps.is_floating_point():
            raise ValueError(f"conditioning tensor must be float (N, 3, H, W) in [0, 1], got {tuple(maps.shape)} "
                             f"{maps.dtype}")
        return maps
    maps = np.asarray(maps)
    if maps.ndim != 4 or maps.shape[-1] != 3 or maps.dtype != np.uint8:
        raise ValueError(f"conditioning maps must be uint8 (N, H, W, 3), got {maps.shape} {maps.dtype}")
    return torch.from_numpy(np.ascontiguousarray(maps)).permute(0, 3, 1, 2).float().div(255.0)


def frame_latents(seed: int, num_frames: int, latent_shape: Sequence[int], noise_mode: str) -> torch.Tensor:
    """(F, C, h, w) initial latents of one sample from `initial_noise(seed, (C, F, h, w))` (the shared tensor of
    every method): "shared" repeats frame 0's slice, "independent" takes each frame's own slice."""
    if noise_mode not in NOISE_MODES:
        raise did_you_mean(noise_mode, NOISE_MODES, "noise mode")
    channels, height, width = latent_shape
    noise = initial_noise(int(seed), (channels, num_frames, height, width))
    if noise_mode == "shared":
        return noise[:, :1].permute(1, 0, 2, 3).repeat(num_frames, 1, 1, 1)
    return noise.permute(1, 0, 2, 3).contiguous()


# ------------------------------------------------------------------------------ the pose-controlled sampler
def _control_kwargs(control, conditioning: torch.Tensor, scale: float, cfg: bool,
                    unconditional_pose: bool = True) -> Callable[..., dict[str, Any]]:
    """Per-step extra UNet inputs of a control module, as diffusers' ControlNet / Adapter pipelines pass them.

    ControlNet: run at every step on the (doubled) latents with the (doubled) map; residuals scaled by `scale`.
    T2I-Adapter: features computed once, scaled, doubled for CFG, a fresh copy per step (the UNet pops them).
    unconditional_pose=False: the unconditional half's control is zero (its residuals / features are zeros).
    """
    from diffusers import ControlNetModel, T2IAdapter

    if control is None:
        return lambda model_input, t, context: {}
    if isinstance(control, ControlNetModel):
        image = torch.cat([conditioning] * 2) if cfg else conditioning
        keep = None
        if cfg and not unconditional_pose:
            half = conditioning.shape[0]
            keep = torch.cat([torch.zeros(half), torch.ones(half)]).to(conditioning.device, conditioning.dtype)
            keep = keep.view(-1, 1, 1, 1)

        def controlnet_kwargs(model_input, t, context):
            down, mid = control(model_input, t, encoder_hidden_states=context, controlnet_cond=image,
                                conditioning_scale=scale, guess_mode=False, return_dict=False)
            if keep is not None:
                down, mid = [d * keep for d in down], mid * keep
            return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

        return controlnet_kwargs
    if isinstance(control, T2IAdapter):
        features = [feature * scale for feature in control(conditioning)]
        if cfg:
            features = [torch.cat([feature if unconditional_pose else torch.zeros_like(feature), feature])
                        for feature in features]
        return lambda model_input, t, context: {"down_intrablock_additional_residuals": [f.clone() for f in features]}
    raise TypeError(f"control must be a diffusers ControlNetModel, T2IAdapter or None, got {type(control).__name__}")


@torch.no_grad()
def encode_text(components: Components, prompts: Sequence[str]) -> torch.Tensor:
    """(N, L, D) text conditioning, each distinct prompt encoded once."""
    unique = list(dict.fromkeys(prompts))
    encoded = components.encode_prompts(unique).to(components.unet.dtype)
    return encoded[[unique.index(p) for p in prompts]]


@torch.no_grad()
def denoise_latents(components: Components, control, prompts: Sequence[str],
                    conditioning: np.ndarray | torch.Tensor | None, latents: torch.Tensor, *,
                    num_inference_steps: int, guidance_scale: float, negative_prompt: str = "",
                    conditioning_scale: float = 1.0, unconditional_pose: bool = True,
                    on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """One DDIM denoising pass of N images, each with its prompt, skeleton map and initial latents.

    control: a diffusers ControlNetModel or T2IAdapter (or None: the plain base model); conditioning: uint8
    (N, H, W, 3) maps or float (N, 3, H, W) in [0, 1] at the output resolution (ignored when control is None);
    latents: (N, C, h, w) initial noise. Returns the final (N, C, h, w) latents (decode with `decode_images`).
    The UNet sees a batch of 2N = [negative prompt x N; prompts] when guidance_scale > 1 (classifier-free
    guidance, the control in both halves; in the text half only with unconditional_pose=False, "pose guidance"),
    else N; `on_step(i, t)` is called before step i's UNet call (a hook
    for attention processors that count steps, e.g. MasaCtrl). Nothing is chunked here: the caller decides
    the batch.
    """
    num = int(latents.shape[0])
    if len(prompts) != num:
        raise ValueError(f"{len(prompts)} prompts for {num} latents")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    unet = components.unet
    device, dtype = unet.device, unet.dtype
    cfg = guidance_scale > 1.0
    context = encode_text(components, prompts)
    if cfg:
        negative = encode_text(components, [negative_prompt]).expand(num, -1, -1)
        context = torch.cat([negative, context])
    control_input = None
    if control is not None:
        if conditioning is None:
            raise ValueError("a control module needs conditioning maps")
        control_input = maps_to_tensor(conditioning).to(device, dtype)
        if control_input.shape[0] != num:
            raise ValueError(f"{control_input.shape[0]} conditioning maps for {num} latents")
    extra_inputs = _control_kwargs(control, control_input, float(conditioning_scale), cfg, unconditional_pose)

    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(components.scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    latents = latents.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        if on_step is not None:
            on_step(i, int(t))
        model_input = torch.cat([latents] * 2) if cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        prediction = unet(model_input, t, encoder_hidden_states=context,
                          **extra_inputs(model_input, t, context), return_dict=False)[0]
        if cfg:
            unconditional, text = prediction.chunk(2)
            prediction = unconditional + guidance_scale * (text - unconditional)
        latents = scheduler.step(prediction, t, latents, eta=0.0, return_dict=False)[0]
    return latents


@torch.no_grad()
def decode_images(components: Components, latents: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """(N, C, h, w) latents -> uint8 (N, H, W, 3), as the pipelines decode ((x / 2 + 0.5) clamped, rounded)."""
    from fypbench.base.sample import to_uint8

    vae = components.vae
    vae_dtype = next(vae.parameters()).dtype
    scaled = latents / vae.config.scaling_factor
    images = torch.cat([vae.decode(chunk.to(vae.device, vae_dtype)).sample.float()
                        for chunk in scaled.split(batch_size)])
    if not torch.isfinite(images).all():
        raise RuntimeError(f"non-finite pixels after decoding ({latents.dtype} latents); run with "
                           "dtype='float32'")
    return to_uint8((images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())


def sample_pose_controlled(components: Components, control, prompts: Sequence[str],
                           conditioning: np.ndarray | torch.Tensor | None, latents: torch.Tensor, *,
                           num_inference_steps: int, guidance_scale: float, negative_prompt: str = "",
                           conditioning_scale: float = 1.0, unconditional_pose: bool = True,
                           on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """`denoise_latents` then `decode_images`: uint8 (N, H, W, 3) images."""
    final = denoise_latents(components, control, prompts, conditioning, latents,
                            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                            negative_prompt=negative_prompt, conditioning_scale=conditioning_scale,
                            unconditional_pose=unconditional_pose, on_step=on_step)
    return decode_images(components, final)


# ------------------------------------------------------------------------------------- weights and identities
def resolve_folder(path_or_hub_id: str | os.PathLike, what: str) -> Path:
    """A local folder, or a hub id looked up in the local Hugging Face cache only; UserError naming it otherwise."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_hub_id)
    if not path.exists() and text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            raise UserError(f"{what} {text}: no such folder and not in the local Hugging Face cache (offline: "
                            "download it once, or pass a local folder)") from None
    raise UserError(f"{what} {path}: folder not found")


def folder_identity(folder: Path) -> str:
    """A short id of a weights folder: its manifest's version, else its hub snapshot commit, else a file hash."""
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        version = json.loads(manifest.read_text()).get("version")
        if version:
            return str(version)
    if folder.parent.name == "snapshots":
        return f"hub:{folder.parent.parent.name.removeprefix('models--').replace('--', '/')}@{folder.name}"
    return folder_version(file_hashes(folder))


def module_fingerprint(*modules: torch.nn.Module) -> str:
    """A short hash of in-memory weights (for configs of generators built from modules, e.g. in tests)."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_control_folder(folder: Path, loader: Callable[[Path], torch.nn.Module], what: str) -> tuple[
        torch.nn.Module, dict[str, Any] | None]:
    """Load a control module folder (manifest checked first when present); UserError naming the folder."""
    manifest = verify_manifest(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: not a diffusers {what} folder (no config.json)")
    try:
        module = loader(folder)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError, safetensors errors
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{folder}: cannot load the {what} ({type(exc).__name__}: {first_line})") from None
    return module.eval(), manifest


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise UserError(f"dtype {dtype}: expected one of {', '.join(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise did_you_mean(str(dtype), DTYPES, "dtype")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


# ------------------------------------------------------------------------------------ the per-frame generator
@dataclass(frozen=True)
class LoadedControl:
    """A control module with where it came from."""

    module: torch.nn.Module
    identity: str
    manifest: dict[str, Any] | None


class PoseControlledImageGenerator(Generator):
    """Per-frame generation with a pose-control module on an SD-style base (ControlNet, T2I-Adapter).

    Subclasses set `name`, `default_variant`, `checkpoints` (sd variant -> hub id), `sd_base`, and implement
    `load_control(folder)`, `check_control(components, module, where)` and `conditioning_style()`.
    """

    default_variant: ClassVar[str]
    checkpoints: ClassVar[dict[str, str]]
    sd_base: ClassVar[str]
    control_kind: ClassVar[str]

    def __init__(self, world=None, *, base: str | os.PathLike | None = None,
                 weights: str | os.PathLike | None = None, variant: str | None = None,
                 components: Components | None = None, control: torch.nn.Module | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 negative_prompt: str = "", conditioning_scale: float = 1.0, noise_mode: str = "shared",
                 frames_per_batch: int = 16, size: int | None = None, device: str = "cpu",
                 dtype: str | torch.dtype = "float32", preset: str | None = None, unconditional_pose: bool = True):
        """world: gives the base model, the method's weights and the frame size (mini world: shipped folders).
        base / weights: explicit pipeline and control folders or hub ids (local cache only); without a world
        they default to the sd checkpoints (`variant`, else `default_variant`). components / control: in-memory
        modules instead of folders. preset: sampler defaults ("mini" or "sd"; default: the world's name, else
        sd). conditioning_scale: ControlNet's controlnet_conditioning_scale / the adapter's
        adapter_conditioning_scale. noise_mode: "shared" or "independent". frames_per_batch: frames per UNet
        call (all samples' frames are pooled; per-frame methods batch frames, the video models' `batch_size`
        counts samples). size: output side in pixels (default: the world's, else the base's).
        unconditional_pose: the control in both CFG halves (True, as diffusers' pipelines) or in the text half
        only ("pose guidance": the guidance term amplifies the pose too)."""
        if variant is not None and variant not in self.checkpoints:
            raise did_you_mean(variant, self.checkpoints, f"{self.name} variant")
        self.variant = variant
        self.world_name = getattr(world, "name", None)
        preset = preset or (self.world_name if self.world_name in SAMPLER_PRESETS else "sd")
        if preset not in SAMPLER_PRESETS:
            raise did_you_mean(preset, SAMPLER_PRESETS, f"{self.name} preset")
        self.preset = preset
        defaults = SAMPLER_PRESETS[preset]
        self.num_inference_steps = int(defaults["num_inference_steps"] if num_inference_steps is None
                                       else num_inference_steps)
        self.guidance_scale = float(defaults["guidance_scale"] if guidance_scale is None else guidance_scale)
        if self.num_inference_steps < 1:
            raise UserError(f"{self.name}: num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if noise_mode not in NOISE_MODES:
            raise did_you_mean(noise_mode, NOISE_MODES, f"{self.name} noise mode")
        if not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise UserError(f"{self.name}: frames_per_batch must be an integer >= 1, got {frames_per_batch!r}")
        self.negative_prompt = str(negative_prompt)
        self.conditioning_scale = float(conditioning_scale)
        if not isinstance(unconditional_pose, bool):
            raise UserError(f"{self.name}: unconditional_pose must be true or false, got {unconditional_pose!r}")
        self.unconditional_pose = unconditional_pose
        self.noise_mode = noise_mode
        self.frames_per_batch = frames_per_batch
        self.device = torch.device(device)
        self.dtype = parse_dtype(dtype)

        # The method's own weights first: a missing folder is the likelier problem and names the train command.
        if control is None:
            if weights is None:
                if world is None:
                    weights = self.checkpoints[variant or self.default_variant]
                elif variant is not None:  # a world with several checkpoints (sd) picks the variant's
                    weights = world.method_weights(self.name, variant=variant)
                else:
                    weights = world.method_weights(self.name)
            folder = resolve_folder(weights, f"{self.name} weights")
            module, manifest = load_control_folder(folder, self.load_control, self.control_kind)
            loaded = LoadedControl(module, folder_identity(folder), manifest)
            where = str(folder)
        else:
            loaded = LoadedControl(control.eval(), "modules:" + module_fingerprint(control), None)
            where = f"the given {self.control_kind}"
        if components is None:
            base = base if base is not None else (world.base_model() if world is not None else self.sd_base)
            folder = resolve_folder(base, f"{self.name} base model")
            components = load_base(folder)
            self.base_identity = folder_identity(folder)
        else:
            self.base_identity = "modules:" + module_fingerprint(components.unet, components.text_encoder,
                                                                components.vae)
        self._check_base_match(loaded, where)
        self.check_control(components, loaded.module, where)
        self.control_identity = loaded.identity
        self.manifest = loaded.manifest
        self.style = self.conditioning_style()
        self.size = int(size or (world.size if world is not None else components.resolution))
        self._check_size(components, loaded.module)
        self.components = components.to(self.device).eval()
        self.control = loaded.module.to(self.device).eval()
        if self.dtype != torch.float32:  # the VAE stays in float32: fp16 decoding gives black/NaN frames
            for module in (components.text_encoder, components.unet, self.control):
                module.to(dtype=self.dtype)

    @classmethod
    def from_components(cls, components: Components, control: torch.nn.Module, **options: Any):
        """Build from in-memory modules (tests, MasaCtrl, notebooks); they are moved to `device` (and cast to
        `dtype`, the VAE excepted) in place."""
        return cls(components=components, control=control, **options)

    # ---- subclass hooks
    @abstractmethod
    def load_control(self, folder: Path) -> torch.nn.Module:
        """Load the control module stored in a diffusers folder (float32)."""

    @abstractmethod
    def check_control(self, components: Components, module: torch.nn.Module, where: str) -> None:
        """Raise UserError naming `where` when the module does not fit the base model."""

    @abstractmethod
    def conditioning_style(self) -> str:
        """The skeleton style the module reads: "openpose" or "keypose"."""

    # ---- checks
    def _check_base_match(self, loaded: LoadedControl, where: str) -> None:
        trained_on = (loaded.manifest or {}).get("base_version")
        if trained_on and not self.base_identity.startswith("modules:") and trained_on != self.base_identity:
            raise MethodUnavailable(f"{self.name}: {where} was trained on base model version {trained_on}, but the "
                                    f"base model is version {self.base_identity}; retrain with "
                                    f"`fypbench train {self.name} --world mini`")

    def _check_size(self, components: Components, module: torch.nn.Module) -> None:
        unet_factor = 2 ** (len(components.unet.config.block_out_channels) - 1)
        multiple = components.vae_scale_factor * unet_factor
        multiple = max(multiple, int(getattr(module, "total_downscale_factor", 1)))
        if self.size < multiple or self.size % multiple:
            raise UserError(f"{self.name}: size {self.size} must be a positive multiple of {multiple} for this "
                            "base model and control module")

    def check_inputs(self, samples: Sequence[Sample]) -> None:
        super().check_inputs(samples)
        for sample in samples:
            frames = sample.num_frames
            if frames < 1 or sample.keypoints.shape != (frames, 17, 3) or sample.openpose.shape != (frames, 18, 3):
                raise ValueError(f"sample {sample.id!r}: keypoints {sample.keypoints.shape} / openpose "
                                 f"{sample.openpose.shape}, expected (F, 17, 3) / (F, 18, 3) with F >= 1")

    # ---- the interface
    def config(self) -> dict[str, Any]:
        return {
            "base": self.base_identity, "weights": self.control_identity, "variant": self.variant,
            "conditioning": self.style, "conditioning_scale": self.conditioning_scale,
            "num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt, "noise_mode": self.noise_mode, "size": self.size,
            "dtype": dtype_name(self.dtype), "scheduler": "DDIM eta=0", "preset": self.preset,
            # only when set, so that the runs made before the option keep their config hashes
            **({} if self.unconditional_pose else {"unconditional_pose": False}),
        }

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.size // self.components.vae_scale_factor
        return int(self.components.unet.config.in_channels), side, side

    def generate(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """One uint8 (F, size, size, 3) video per sample; frames run in UNet batches of `frames_per_batch`."""
        self.check_inputs(samples)
        prompts: list[str] = []
        maps, latents = [], []
        for sample in samples:
            prompts += [sample.prompt] * sample.num_frames
            maps.append(conditioning_maps(sample, self.style, self.size))
            latents.append(frame_latents(sample.seed, sample.num_frames, self.latent_shape, self.noise_mode))
        all_maps, all_latents = np.concatenate(maps), torch.cat(latents)
        frames = []
        for lo in range(0, len(prompts), self.frames_per_batch):
            hi = lo + self.frames_per_batch
            frames.append(sample_pose_controlled(
                self.components, self.control, prompts[lo:hi], all_maps[lo:hi], all_latents[lo:hi],
                num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                negative_prompt=self.negative_prompt, conditioning_scale=self.conditioning_scale,
                unconditional_pose=self.unconditional_pose))
        images = np.concatenate(frames)
        videos, start = [], 0
        for sample in samples:
            video = images[start:start + sample.num_frames]
            videos.append(check_video(video, sample.num_frames, (self.size, self.size)))
            start += sample.num_frames
        return videos


class ControlNetGenerator(PoseControlledImageGenerator):
    """ControlNet (OpenPose-18 maps), frame by frame. Options: see PoseControlledImageGenerator.__init__."""

    name = "controlnet"
    default_variant = "v1.0"
    checkpoints = CONTROLNET_CHECKPOINTS
    sd_base = SD15_BASE
    control_kind = "ControlNetModel"

    def load_control(self, folder: Path) -> torch.nn.Module:
        from diffusers import ControlNetModel

        return ControlNetModel.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)

    def check_control(self, components: Components, module: torch.nn.Module, where: str) -> None:
        from diffusers import ControlNetModel

        if not isinstance(module, ControlNetModel):
            raise UserError(f"{where}: expected a ControlNetModel, got {type(module).__name__}")
        check_controlnet_fits(components, module, where)

    def conditioning_style(self) -> str:
        return "openpose"


def check_controlnet_fits(components: Components, controlnet, where: str) -> None:
    """The ControlNet must mirror the UNet's encoder and map pixels to latents at the VAE's factor."""
    unet, config = components.unet.config, controlnet.config
    for key in ("block_out_channels", "cross_attention_dim", "in_channels", "layers_per_block"):
        if tuple(np.atleast_1d(config[key])) != tuple(np.atleast_1d(unet[key])):
            raise UserError(f"{where}: ControlNet {key} {config[key]} does not match the base UNet's {unet[key]}")
    factor = 2 ** (len(config.conditioning_embedding_out_channels) - 1)
    if factor != components.vae_scale_factor:
        raise UserError(f"{where}: the ControlNet's conditioning embedding downsamples by {factor}, the base "
                        f"VAE by {components.vae_scale_factor}")


def build_controlnet(unet, vae_scale_factor: int, conditioning_channels: Sequence[int], seed: int):
    """A fresh ControlNet from a UNet (its encoder copied, zero convolutions), seeded; the conditioning
    embedding needs log2(vae factor) + 1 widths (one stride-2 convolution between consecutive widths)."""
    from diffusers import ControlNetModel

    if 2 ** (len(conditioning_channels) - 1) != vae_scale_factor:
        raise UserError(f"model.conditioning_embedding_out_channels {list(conditioning_channels)}: needs "
                        f"{int(math.log2(vae_scale_factor)) + 1} widths for a {vae_scale_factor}x VAE")
    with seeded_init("controlnet", seed):
        return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(conditioning_channels))


# ======================================================================================= training (mini world)
RECIPE = "controlnet"
# loss.timesteps: "uniform" (one DDPM timestep per image, as SD and ControlNet train) or "cubic"
# (t = (1 - u^3) T, train_t2i_adapter_sdxl.py's emphasis on the noisy steps where the layout is decided)
TIMESTEP_SAMPLING = ("uniform", "cubic")


def pose_pair_cache(data: Mapping[str, Any], log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray,
                                                                                   list[str]]:
    """Items 0..count-1 of an image-pose stream (`ds[i] -> (image, keypoints (17, 3), caption)`), rendered once
    into data.cache_dir (images.npy, keypoints.npy, captions.json, info.json; a cache of other data is rebuilt)."""
    from fypbench.io import atomic_path, write_json_atomic
    from fypbench.training.common import import_object, resolve_path

    cache_dir = resolve_path(data["cache_dir"])
    count = int(data["count"])
    info = {"target": data["target"], "kwargs": dict(data["kwargs"]), "count": count}
    paths = {name: cache_dir / name for name in ("images.npy", "keypoints.npy", "captions.json", "info.json")}
    if all(p.exists() for p in paths.values()) and json.loads(paths["info.json"].read_text()) == info:
        return (np.load(paths["images.npy"], mmap_mode="r"), np.load(paths["keypoints.npy"]),
                json.loads(paths["captions.json"].read_text()))
    dataset = import_object(data["target"])(**data["kwargs"])
    start = time.perf_counter()
    images, keypoints, captions = [], [], []
    for index in range(count):
        image, points, caption = dataset[index]
        images.append(np.asarray(image, dtype=np.uint8))
        keypoints.append(np.asarray(points, dtype=np.float32))
        captions.append(str(caption))
        if (index + 1) % 5000 == 0:
            log(f"rendered {index + 1}/{count} image-pose pairs")
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, array in (("images.npy", np.stack(images)), ("keypoints.npy", np.stack(keypoints))):
        with atomic_path(paths[name]) as tmp:
            np.save(tmp, array)
    write_json_atomic(paths["captions.json"], captions)
    write_json_atomic(paths["info.json"], info)
    log(f"rendered {count} image-pose pairs in {time.perf_counter() - start:.0f} s -> {cache_dir}")
    return np.load(paths["images.npy"], mmap_mode="r"), np.stack(keypoints), captions


def draw_conditioning_batch(keypoints: np.ndarray, style: str, size: int) -> torch.Tensor:
    """(B, 17, 3) COCO-17 keypoints -> float (B, 3, size, size) skeleton maps in [0, 1]."""
    from fypbench.world.mini.skeleton import draw_keypose, draw_openpose_from_coco

    draw = {"openpose": draw_openpose_from_coco, "keypose": draw_keypose}.get(style)
    if draw is None:
        raise did_you_mean(style, CONDITIONING_STYLES, "conditioning style")
    return maps_to_tensor(np.stack([draw(points, size) for points in keypoints]))


@dataclass
class PoseControlTraining:
    """What both pose-control recipes share: the frozen base, cached pairs + latents, the noising objective.

    `loss(step, batch, unet_inputs)` computes the (min-SNR weighted) epsilon MSE, where
    `unet_inputs(noisy, timesteps, context, conditioning) -> dict` returns the control's extra UNet kwargs.
    """

    config: dict[str, Any]
    components: Components
    base_dir: Path
    base_version: str
    keypoints: np.ndarray
    latent_mean: np.ndarray
    latent_std: np.ndarray
    input_ids: torch.Tensor
    empty_ids: torch.Tensor
    style: str
    device: torch.device

    def __post_init__(self) -> None:
        self.timestep_sampling = self.config["loss"]["timesteps"]
        if self.timestep_sampling not in TIMESTEP_SAMPLING:
            raise did_you_mean(str(self.timestep_sampling), TIMESTEP_SAMPLING, "loss.timesteps")
        self.noise_scheduler = self.components.noise_scheduler()
        alphas = self.noise_scheduler.alphas_cumprod.float()
        self.snr = alphas / (1.0 - alphas)

    @classmethod
    def prepare(cls, config: dict[str, Any], output_dir: Path, accelerator, log: Callable[[str], None],
                style: str) -> PoseControlTraining:
        from fypbench.base.components import vae_identity
        from fypbench.training.base import encode_latents, tokenize
        from fypbench.training.common import resolve_path

        base_dir = resolve_path(config["model"]["base"])
        if not (base_dir / "model_index.json").is_file():
            raise UserError(f"{base_dir}: no base model here (model.base); train it first with "
                            "`fypbench train base --world mini`")
        components = load_base(base_dir).eval()
        for module in components.modules().values():
            module.requires_grad_(False)
        base_version = folder_identity(base_dir)
        with accelerator.main_process_first():
            images, keypoints, captions = pose_pair_cache(config["data"], log)
            key = {"vae": vae_identity(base_dir) or base_version,
                   "data": json.loads((resolve_path(config["data"]["cache_dir"]) / "info.json").read_text())}
            latent_mean, latent_std = encode_latents(components.vae, images, output_dir / "latents.npz", key, log)
        size = int(images.shape[1])
        if size != components.resolution:
            raise UserError(f"data.kwargs.size {size} != the base model's resolution {components.resolution}")
        return cls(config=config, components=components.to(accelerator.device), base_dir=base_dir,
                   base_version=base_version, keypoints=keypoints, latent_mean=latent_mean, latent_std=latent_std,
                   input_ids=tokenize(components.tokenizer, captions),
                   empty_ids=tokenize(components.tokenizer, [""])[0], style=style, device=accelerator.device)

    @property
    def size(self) -> int:
        return self.components.resolution

    def _predict(self, noisy, timesteps, ids, keypoints, unet_inputs) -> torch.Tensor:
        """The frozen UNet's epsilon prediction with the control's extra inputs (all on the training device)."""
        noisy, timesteps, ids = noisy.to(self.device), timesteps.to(self.device), ids.to(self.device)
        with torch.no_grad():
            context = self.components.text_encoder(ids)[0]
        conditioning = draw_conditioning_batch(keypoints, self.style, self.size).to(self.device)
        extra = unet_inputs(noisy, timesteps, context, conditioning)
        return self.components.unet(noisy, timesteps, context, **extra).sample.float()

    def loss(self, step: int, batch, unet_inputs: Callable[..., dict[str, Any]]) -> torch.Tensor:
        from fypbench.training.common import per_sample_randint, per_sample_randn, per_sample_uniform

        seed, recipe = int(self.config["seed"]), self.config["recipe"]
        index, positions = batch.indices, batch.positions
        latent_shape = tuple(self.latent_mean.shape[1:])
        mean = torch.from_numpy(self.latent_mean[index].astype(np.float32))
        std = torch.from_numpy(self.latent_std[index].astype(np.float32))
        posterior = per_sample_randn(seed, f"{recipe}-posterior", positions, latent_shape)
        latents = (mean + std * posterior) * float(self.components.vae.config.scaling_factor)
        noise = per_sample_randn(seed, f"{recipe}-noise", positions, latent_shape)
        num_train = int(self.noise_scheduler.config.num_train_timesteps)
        if self.timestep_sampling == "cubic":
            u = torch.from_numpy(per_sample_uniform(seed, f"{recipe}-timestep", positions))
            timesteps = ((1.0 - u ** 3) * num_train).long().clamp(0, num_train - 1)
        else:
            timesteps = per_sample_randint(seed, f"{recipe}-timestep", positions, num_train)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        ids = self.input_ids[index].clone()
        drop = per_sample_uniform(seed, f"{recipe}-caption-dropout", positions) < float(
            self.config["data"]["caption_dropout"])
        ids[torch.from_numpy(drop)] = self.empty_ids
        prediction = self._predict(noisy, timesteps, ids, self.keypoints[index], unet_inputs)
        per_sample = (prediction - noise.to(self.device)).pow(2).mean(dim=(1, 2, 3))
        gamma = float(self.config["loss"]["snr_gamma"])
        if gamma > 0:
            snr = self.snr[timesteps].to(self.device)
            per_sample = per_sample * torch.clamp(snr, max=gamma) / snr
        return per_sample.mean()

    @torch.no_grad()
    def denoising_error(self, unet_inputs: Callable[..., dict[str, Any]], count: int = 16) -> float:
        """Epsilon MSE on the first `count` pairs at fixed timesteps and noise (a fixed yardstick)."""
        from fypbench.training.common import per_sample_randn

        count = min(count, len(self.latent_mean))
        latents = torch.from_numpy(self.latent_mean[:count].astype(np.float32)) * float(
            self.components.vae.config.scaling_factor)
        timesteps = torch.linspace(50, 950, count).long()
        noise = per_sample_randn(0, "pose-control-yardstick", range(count), latents.shape[1:])
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self._predict(noisy, timesteps, self.input_ids[:count], self.keypoints[:count], unet_inputs)
        return float((prediction - noise.to(self.device)).pow(2).mean())


def export_control(module: torch.nn.Module, export_dir: Path, half: bool, record: Mapping[str, Any]) -> Path:
    """Save a control module as a diffusers folder (safetensors; float16 when `half`) with a manifest.json."""
    stored = copy.deepcopy(module).to("cpu", torch.float16 if half else torch.float32)

    def write(staging: Path) -> None:
        stored.save_pretrained(staging, safe_serialization=True)
        hashes = file_hashes(staging)
        manifest = {"format": f"diffusers {type(module).__name__}", "version": folder_version(hashes),
                    "files": hashes, "float16": bool(half),
                    "parameters": sum(p.numel() for p in module.parameters()), **dict(record)}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    return save_folder_atomic(write, export_dir)


def train_pose_control(recipe: str, preset: str, output_dir: Path | None, resume: bool,
                       overrides: Mapping[str, Any] | None, style: str,
                       build: Callable[[PoseControlTraining], torch.nn.Module],
                       unet_inputs: Callable[[torch.nn.Module], Callable[..., dict[str, Any]]],
                       cli_name: str | None = None) -> Path:
    """The loop both recipes run: prepare, build the control module, train it (base frozen), export it.

    `build(training)` makes the fresh module; `unet_inputs(module)` gives the per-batch extra UNet kwargs;
    `cli_name` is the recipe's name on the command line when it differs from the config prefix.
    """
    from fypbench.training.common import (
        TrainingLoop,
        command_line,
        make_accelerator,
        make_logger,
        recipe_config,
        resolve_path,
        run_record,
    )

    config, output_dir = recipe_config(recipe, preset, overrides, output_dir, resume)
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    training = PoseControlTraining.prepare(config, output_dir, accelerator, log, style)
    # Recorded in the checkpoint's config, so resuming on another base model fails loudly.
    config["model"]["base_version"] = training.base_version
    control = build(training)
    control.train()
    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config,
                        modules={"control": control}, parameters=list(control.parameters()),
                        dataset_size=len(training.latent_mean),
                        loss_fn=lambda step, batch, modules: training.loss(step, batch,
                                                                           unet_inputs(modules["control"])),
                        log=log)
    result = loop.run(resume=resume)
    loop.export_parameters()
    control.eval()
    export = config["export"]
    export_dir = resolve_path(export["dir"]) if export["dir"] else output_dir / recipe
    if accelerator.is_main_process:
        record = {**run_record(config, overrides, result), "conditioning": style,
                  "base": str(training.base_dir), "base_version": training.base_version}
        record["training"]["command"] = command_line(cli_name or recipe, preset, overrides)
        export_control(control, export_dir, bool(export["float16"]), record)
        log(f"exported {export_dir}")
    accelerator.wait_for_everyone()
    return export_dir


def controlnet_unet_inputs(controlnet) -> Callable[..., dict[str, Any]]:
    def inputs(noisy, timesteps, context, conditioning):
        down, mid = controlnet(noisy, timesteps, encoder_hidden_states=context, controlnet_cond=conditioning,
                               return_dict=False)
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

    return inputs


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the mini-world ControlNet of `preset`; returns the exported folder."""

    def build(training: PoseControlTraining):
        return build_controlnet(training.components.unet, training.components.vae_scale_factor,
                                training.config["model"]["conditioning_embedding_out_channels"],
                                int(training.config["seed"]))

    return train_pose_control(RECIPE, preset, output_dir, resume, overrides, style="openpose", build=build,
                              unet_inputs=controlnet_unet_inputs)


def main(argv: Sequence[str] | None = None) -> None:
    from fypbench.training.common import recipe_main

    recipe_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
