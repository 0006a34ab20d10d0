"""Tune-A-Video: inflate the base UNet, tune it one-shot on the sample's source video, sample from its inversion.

    OMP_NUM_THREADS=1 python -m pytest tests/baselines/test_tune_a_video.py -q
    python -c "from fypbench.baselines.tune_a_video import describe_presets; print(describe_presets())"

Method (baselines.md §3, showlab/Tune-A-Video re-implemented on the pinned diffusers):
- The base UNet is inflated in place by `fypbench.models.followpose.inflate` with Tune-A-Video's options:
  sparse-causal `attn1` (frame i attends to frames 0 and i-1), temporal attention `attn_temp` after every
  feed-forward with a zero-initialised output projection (identity at init), GroupNorm pooled over frames; no
  pose input, no `conv_temporal`.
- One-shot tuning on the source video (mini world: `world.render_source(sample)`, the neutral-appearance render
  of the sample's motion; sd world: none is shipped, so `tune-a-video` is unavailable there unless you pass
  `source_video=` yourself) with the source's prompt: only modules named
  `attn1.to_q`, `attn2.to_q`, `attn_temp` train; AdamW (constant lr, weight decay 1e-2, grad-norm clip 1.0),
  eps-MSE with one DDPM timestep per step, the VAE posterior sampled anew each step as in the official loop.
- DDIM inversion of the source latents (posterior mean, float32, empty prompt, no CFG, as many steps as
  sampling; the official `ddim_inversion`) gives the starting latents; DDIM sampling with CFG and the sample's
  prompt follows.

Seeds. The tuning's random draws (VAE posterior samples, noise, timesteps) come from
`derive_seed("tune-a-video", "tuning", tuning.seed, tuning key)`, so every sample sharing a source shares one
tuning. With inversion on (the official default) the starting latents come from the source, not from
`initial_noise`: the sample's seed then does not enter the output at all, and two samples with the same source
and prompt give the same video. `use_inversion=False` starts from the paired noise
`initial_noise(sample.seed, (C, F, h, w))` instead (i.i.d. over frames, the official sampler without inversion).

Caching. Tuned weights (only the trainable tensors, float32 safetensors) are cached per tuning key = sha256 of
(source frames, source reference, source prompt, tuning config, base-model id, inflation options, frame size)
in `cache_dir` (default `$XDG_CACHE_HOME/fypbench/tune-a-video`, i.e. ~/.cache/fypbench/tune-a-video); the
inverted latents of a source are cached beside them. Samples sharing a source are grouped in one `generate`
call and share one tuning and one inversion.

Precision. The model's weights stay float32. `tuning.mixed_precision` ("fp16"/"bf16") is autocast during
tuning on CUDA only (CPU tuning is float32 and the cache key records the precision actually used); `dtype`
float16/bfloat16 autocasts the sampling UNet on CUDA; inversion and VAE decode always run in float32.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fypbench.baselines.controlnet import folder_identity, module_fingerprint, resolve_folder
from fypbench.errors import UserError, did_you_mean
from fypbench.generator import Generator, MethodUnavailable, Needs, check_video
from fypbench.io import atomic_path
from fypbench.models.followpose.inflate import InflationOptions, inflate_unet2d
from fypbench.models.followpose.layers import VideoContext
from fypbench.sample import Sample
from fypbench.seeding import derive_seed, initial_noise

METHOD_NAME = "tune-a-video"
TRAINABLE_MODULES = ("attn1.to_q", "attn2.to_q", "attn_temp")
TAV_INFLATION = InflationOptions(conv_temporal=False, zero_init_temporal_out=True)
SD_TRAINABLE_PARAMETERS = 74_354_880  # baselines.md §3: attn1.to_q + attn2.to_q + attn_temp of SD 1.x
# Part of every tuning key: bump it whenever a change to the tuning or inversion code would change what a
# cached tuning holds, so that tunings made by the former code are not reused (the key holds no git revision).
CACHE_FORMAT = 1
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "meta.json"
MIXED_PRECISIONS = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ------------------------------------------------------------------------------------------------ presets
@dataclass(frozen=True)
class TuningConfig:
    """One-shot tuning hyper-parameters (official defaults except `steps`/`learning_rate` per preset)."""

    steps: int
    learning_rate: float
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    trainable_modules: tuple[str, ...] = TRAINABLE_MODULES
    mixed_precision: str = "no"  # autocast on CUDA only
    gradient_checkpointing: bool = False  # memory only; not part of the cache key
    seed: int = 33  # the official example configs' seed

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise UserError(f"tune-a-video tuning: steps must be an integer >= 0, got {self.steps!r}")
        if not self.learning_rate > 0:
            raise UserError(f"tune-a-video tuning: learning_rate must be > 0, got {self.learning_rate!r}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise UserError(f"tune-a-video tuning: mixed_precision {self.mixed_precision!r} is not one of "
                            f"{', '.join(MIXED_PRECISIONS)}")
        if not self.trainable_modules:
            raise UserError("tune-a-video tuning: trainable_modules is empty")

    def key_dict(self, precision: str) -> dict[str, Any]:
        """The fields that change the tuned weights (gradient checkpointing does not), with the precision used."""
        values = asdict(self)
        values.pop("gradient_checkpointing")
        values["mixed_precision"] = precision
        values["betas"] = list(self.betas)
        values["trainable_modules"] = list(self.trainable_modules)
        return values


@dataclass(frozen=True)
class TuneAVideoPreset:
    tuning: TuningConfig
    num_inference_steps: int
    guidance_scale: float
    use_inversion: bool = True
    inversion_steps: int | None = None  # None: as many as sampling (the official setting)


PRESETS: dict[str, TuneAVideoPreset] = {
    # tests: seconds on the debug base
    "debug": TuneAVideoPreset(TuningConfig(steps=2, learning_rate=1e-3), num_inference_steps=3, guidance_scale=5.0),
    # mini world (64 px, 8 frames): 100 steps ~ 1 min per source on one CPU core; lr raised from 3e-5 for the
    # 5x fewer steps; sampling steps/guidance = the mini base model's defaults (fypbench.base.sample)
    "mini": TuneAVideoPreset(TuningConfig(steps=100, learning_rate=1e-4), num_inference_steps=25,
                             guidance_scale=5.0),
    # the official configs (configs/man-skiing.yaml): 500 steps, lr 3e-5, fp16, gradient checkpointing,
    # DDIM 50, CFG 12.5, inversion 50 steps
    "sd": TuneAVideoPreset(TuningConfig(steps=500, learning_rate=3e-5, mixed_precision="fp16",
                                        gradient_checkpointing=True), num_inference_steps=50, guidance_scale=12.5),
}


def get_preset(name: str) -> TuneAVideoPreset:
    if name not in PRESETS:
        raise did_you_mean(name, PRESETS, "tune-a-video preset")
    return PRESETS[name]


def describe_presets() -> str:
    lines = []
    for name, preset in PRESETS.items():
        t = preset.tuning
        lines.append(f"{name}: tune {t.steps} steps lr {t.learning_rate:g} ({t.mixed_precision}), DDIM "
                     f"{preset.num_inference_steps} steps, CFG {preset.guidance_scale}, inversion "
                     f"{'on' if preset.use_inversion else 'off'}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the model
class TuneAVideoUNet(nn.Module):
    """The inflated denoiser: (b, c, f, h, w) latents -> (b, c, f, h, w) prediction, frames folded into the batch.

    Takes ownership of `unet2d` and inflates it in place with Tune-A-Video's options.
    """

    def __init__(self, unet2d: nn.Module, init_seed: int = 0, options: InflationOptions = TAV_INFLATION) -> None:
        super().__init__()
        self.video = VideoContext()
        self.options = options
        self.unet2d = inflate_unet2d(unet2d, self.video, options, init_seed)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        if sample.ndim != 5:
            raise ValueError(f"sample must be (batch, channels, frames, height, width), got {tuple(sample.shape)}")
        batch, channels, frames, height, width = sample.shape
        if encoder_hidden_states.shape[0] != batch:
            raise ValueError(f"encoder_hidden_states batch {encoder_hidden_states.shape[0]} != latents batch {batch}")
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 1 and timestep.shape[0] == batch:
            timestep = timestep.repeat_interleave(frames)
        elif timestep.ndim != 0:
            raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(timestep.shape)}")
        self.video.set(frames)
        folded = sample.transpose(1, 2).reshape(batch * frames, channels, height, width)
        text = encoder_hidden_states.repeat_interleave(frames, dim=0)
        out = self.unet2d(folded, timestep, text, return_dict=False)[0]
        return out.unflatten(0, (batch, frames)).transpose(1, 2)


def trainable_parameters(unet2d: nn.Module, suffixes: Sequence[str] = TRAINABLE_MODULES) -> dict[str, nn.Parameter]:
    """Parameters of the modules whose names end with one of `suffixes` (names relative to the 2D UNet)."""
    selected: dict[str, nn.Parameter] = {}
    for module_name, module in unet2d.named_modules():
        if module_name.endswith(tuple(suffixes)):
            for name, parameter in module.named_parameters():
                selected[f"{module_name}.{name}"] = parameter
    if not selected:
        raise ValueError(f"no module of the UNet ends with {', '.join(suffixes)}")
    return selected


# ------------------------------------------------------------------------------------------- tuning / loss
def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def _target(noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {prediction_type!r} (epsilon or v_prediction)")


def tune_on_video(model: TuneAVideoUNet, posterior_mean: torch.Tensor, posterior_std: torch.Tensor,
                  text: torch.Tensor, noise_scheduler, config: TuningConfig, seed: int) -> list[float]:
    """One-shot tuning in place; returns the loss of every step.

    posterior_mean/std: (1, C, F, h, w) scaled VAE posterior of the source video; text: (1, L, D) source prompt.
    Every random draw comes from a CPU generator seeded with `seed` (device-independent).
    """
    device = posterior_mean.device
    precision = MIXED_PRECISIONS[config.mixed_precision] if device.type == "cuda" else None
    parameters = trainable_parameters(model.unet2d, config.trainable_modules)
    model.requires_grad_(False)
    for parameter in parameters.values():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(parameters.values()), lr=config.learning_rate, betas=config.betas,
                                  weight_decay=config.weight_decay, eps=config.adam_epsilon)
    scaler = torch.amp.GradScaler("cuda") if precision == torch.float16 else None
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    num_train_timesteps = int(noise_scheduler.config.num_train_timesteps)
    if config.gradient_checkpointing:
        model.unet2d.enable_gradient_checkpointing()
    model.train()
    losses: list[float] = []
    try:
        for _ in range(config.steps):
            shape = tuple(posterior_mean.shape)
            latents = posterior_mean + posterior_std * torch.randn(shape, generator=generator).to(device)
            noise = torch.randn(shape, generator=generator).to(device)
            timesteps = torch.randint(0, num_train_timesteps, (shape[0],), generator=generator).to(device)
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            with _autocast(device, precision):
                prediction = model(noisy, timesteps, text)
            loss = F.mse_loss(prediction.float(), _target(noise_scheduler, latents, noise, timesteps).float())
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(list(parameters.values()), config.max_grad_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    finally:
        model.eval()
        model.requires_grad_(False)
        if config.gradient_checkpointing:
            model.unet2d.disable_gradient_checkpointing()
    return losses


@torch.no_grad()
def denoising_loss(model: TuneAVideoUNet, latents: torch.Tensor, text: torch.Tensor, noise_scheduler,
                   seed: int = 0, draws: int = 8) -> float:
    """Mean eps-MSE of the model on `latents` over `draws` fixed (noise, timestep) draws: the reconstruction
    loss that tuning minimises, evaluated identically before and after."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    total = 0.0
    for _ in range(draws):
        noise = torch.randn(tuple(latents.shape), generator=generator).to(latents.device)
        timesteps = torch.randint(0, int(noise_scheduler.config.num_train_timesteps), (latents.shape[0],),
                                  generator=generator).to(latents.device)
        prediction = model(noise_scheduler.add_noise(latents, noise, timesteps), timesteps, text)
        total += float(F.mse_loss(prediction.float(), _target(noise_scheduler, latents, noise, timesteps).float()))
    return total / draws


# ---------------------------------------------------------------------------------------- DDIM loops
def _check_ddim(scheduler) -> None:
    from diffusers import DDIMScheduler

    if not isinstance(scheduler, DDIMScheduler):
        raise TypeError(f"Tune-A-Video samples and inverts with DDIM; got {type(scheduler).__name__}")


@torch.no_grad()
def ddim_invert(model: TuneAVideoUNet, latents: torch.Tensor, text: torch.Tensor, scheduler,
                num_steps: int) -> torch.Tensor:
    """DDIM inversion (official `ddim_inversion`, last latent): x at DDIM's first sampling timestep.

    For each timestep t in ascending order, eps is predicted at (x, t) and x moves from the previous timestep's
    noise level (t - 1000/n; the final alpha below 0) to t's. Run in float32: `latents`, `text` and the model
    must be float32.
    """
    _check_ddim(scheduler)
    if latents.dtype != torch.float32 or next(model.parameters()).dtype != torch.float32:
        raise ValueError("DDIM inversion runs in float32 (model and latents)")
    scheduler.set_timesteps(num_steps, device=latents.device)
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alphas = scheduler.alphas_cumprod.to(torch.float64)
    final = float(scheduler.final_alpha_cumprod)
    for timestep in reversed(scheduler.timesteps.tolist()):
        previous = timestep - stride
        alpha_previous = float(alphas[previous]) if previous >= 0 else final
        alpha = float(alphas[timestep])
        eps = model(latents, timestep, text)
        original = (latents - (1 - alpha_previous) ** 0.5 * eps) / alpha_previous ** 0.5
        latents = alpha ** 0.5 * original + (1 - alpha) ** 0.5 * eps
    return latents


@torch.no_grad()
def ddim_sample(model: TuneAVideoUNet, latents: torch.Tensor, text: torch.Tensor, uncond: torch.Tensor | None,
                scheduler, num_steps: int, guidance_scale: float,
                autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """DDIM (eta 0) with classifier-free guidance ([uncond; text] in one batch) when `uncond` is given."""
    _check_ddim(scheduler)
    scheduler.set_timesteps(num_steps, device=latents.device)
    latents = latents * scheduler.init_noise_sigma
    text = text if uncond is None else torch.cat([uncond, text])
    for timestep in scheduler.timesteps:
        model_input = latents if uncond is None else torch.cat([latents, latents])
        model_input = scheduler.scale_model_input(model_input, timestep)
        with _autocast(latents.device, autocast_dtype):
            prediction = model(model_input, timestep, text).float()
        if uncond is not None:
            uncond_prediction, text_prediction = prediction.chunk(2)
            prediction = uncond_prediction + guidance_scale * (text_prediction - uncond_prediction)
        latents = scheduler.step(prediction, timestep, latents, eta=0.0).prev_sample
    return latents


# --------------------------------------------------------------------------------------------- helpers
def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(root).expanduser() / "fypbench" / METHOD_NAME


def neutral_source_prompt(source: Mapping[str, Any]) -> str:
    """The tuning prompt of a mini-world source (`{"motion": MotionSpec}`): the neutral appearance doing the
    motion's verb, in the world's prompt grammar (e.g. "A man is walking grey simple background")."""
    from fypbench.world.mini.appearance import NEUTRAL
    from fypbench.world.mini.grammar import VERBS, PromptParts, compose, indefinite_article
    from fypbench.world.mini.motion import MotionSpec

    spec = MotionSpec.from_dict(source["motion"])
    return compose(PromptParts(NEUTRAL, VERBS[spec.name], indefinite_article(NEUTRAL.character)))


@dataclass
class SourceVideo:
    """A sample's source video, ready for tuning: frames, the tuning prompt and the tuning (cache) key."""

    frames: np.ndarray
    prompt: str
    key: str


# ---------------------------------------------------------------------------------------------- generator
class TuneAVideoGenerator(Generator):
    """Tune-A-Video behind the generator interface (see the module docstring).

    Components: `components` (a fypbench.base Components, copied: the caller's UNet is not inflated), or `base`
    (a pipeline folder / hub id in the local cache, loaded offline), or the world's `base_model()`.
    Source videos: `source_video(sample) -> uint8 (F, H, W, 3)` when given, else `world.render_source(sample,
    size)`; source prompts: `source_prompt(sample)` when given, else `world.source_prompt(sample)` when the world
    has one, else `sample.source["prompt"]`, else the neutral prompt of a mini-world motion reference.
    Any preset value can be overridden by keyword (tuning_steps, learning_rate, ...).
    """

    name = METHOD_NAME
    needs = Needs(source_video=True, per_video_tuning=True)

    def __init__(self, world=None, *, components=None, base: str | os.PathLike | None = None,
                 preset: str = "mini", tuning_steps: int | None = None, learning_rate: float | None = None,
                 mixed_precision: str | None = None, gradient_checkpointing: bool | None = None,
                 tuning_seed: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str = "", use_inversion: bool | None = None,
                 inversion_steps: int | None = None, batch_size: int = 1, size: int | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 source_video: Callable[[Sample], np.ndarray] | None = None,
                 source_prompt: Callable[[Sample], str] | None = None, init_seed: int = 0) -> None:
        from fypbench.base.components import load_base

        if source_video is None and world is not None and not hasattr(world, "render_source"):
            # before anything is loaded: a world that cannot give source videos makes the method unavailable
            reason = getattr(world, "no_renderer_reason", None) or "it has no render_source"
            raise MethodUnavailable(f"{self.name} needs each sample's source video; the "
                                    f"{getattr(world, 'name', 'given')!r} world cannot give one ({reason}); pass "
                                    "`source_video=` to TuneAVideoGenerator.from_pretrained to use your own")
        self.preset_name = preset
        chosen = get_preset(preset)
        tuning_overrides = {k: v for k, v in {"steps": tuning_steps, "learning_rate": learning_rate,
                                              "mixed_precision": mixed_precision,
                                              "gradient_checkpointing": gradient_checkpointing,
                                              "seed": tuning_seed}.items() if v is not None}
        self.tuning = replace(chosen.tuning, **tuning_overrides)
        self.num_inference_steps = int(num_inference_steps or chosen.num_inference_steps)
        self.guidance_scale = float(chosen.guidance_scale if guidance_scale is None else guidance_scale)
        self.use_inversion = bool(chosen.use_inversion if use_inversion is None else use_inversion)
        self.inversion_steps = int(inversion_steps or chosen.inversion_steps or self.num_inference_steps)
        if self.num_inference_steps < 1 or self.inversion_steps < 1 or batch_size < 1:
            raise UserError("tune-a-video: num_inference_steps, inversion_steps and batch_size must be >= 1")
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise did_you_mean(dtype, DTYPES, "tune-a-video dtype")
            dtype = DTYPES[dtype]
        if dtype not in DTYPES.values():
            raise UserError(f"tune-a-video: dtype must be one of {', '.join(DTYPES)}, got {dtype}")
        if dtype != torch.float32 and torch.device(device).type != "cuda":
            raise UserError(f"tune-a-video: dtype {dtype} (autocast sampling) needs CUDA; use float32 on "
                            f"{torch.device(device).type}")
        self.negative_prompt = negative_prompt
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dtype = dtype
        self.world = world
        self.init_seed = int(init_seed)
        self.use_cache = bool(use_cache)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self._source_video = source_video
        self._source_prompt = source_prompt

        self._base_folder: Path | None = None
        self._base_id: str | None = None
        if components is not None:
            # own copies of the modules (the caller's UNet is not inflated nor moved); the tokenizer is shared
            components = replace(components, **{name: copy.deepcopy(module) for name, module
                                                 in components.modules().items()},
                                 scheduler=copy.deepcopy(components.scheduler))
            self._base_id = "modules:" + module_fingerprint(components.unet, components.text_encoder,
                                                            components.vae)
        else:
            if base is None:
                if world is None:
                    raise UserError("tune-a-video: give a world, `components` or `base` (a pipeline folder)")
                base = world.base_model()
            self._base_folder = resolve_folder(base, f"{self.name} base model")
            components = load_base(self._base_folder)
        components.to(device=self.device).eval()
        for module in components.modules().values():
            if any(p.dtype != torch.float32 for p in module.parameters()):
                module.to(dtype=torch.float32)  # weights stay float32; `dtype` autocasts sampling only
            module.requires_grad_(False)
        self.components = components
        self.size = int(size or (world.size if world is not None else components.resolution))
        if self.size % components.vae_scale_factor:
            raise UserError(f"tune-a-video: size {self.size} is not a multiple of the VAE factor "
                            f"{components.vae_scale_factor}")
        self.model = TuneAVideoUNet(components.unet, init_seed=self.init_seed).eval()
        self._initial_state = {name: p.detach().to("cpu", copy=True)
                               for name, p in trainable_parameters(self.model.unet2d,
                                                                   self.tuning.trainable_modules).items()}
        self._loaded_key: str | None = None
        self._inverted: dict[tuple[str, int], torch.Tensor] = {}
        self.stats = {"tuned": 0, "cache_hits": 0, "tuning_seconds": 0.0}
        self.last_losses: dict[str, list[float]] = {}

    @classmethod
    def from_pretrained(cls, base: str | os.PathLike, **options: Any) -> TuneAVideoGenerator:
        """From a pipeline folder or hub id in the local cache (the sd world hands over SD 1.4 this way);
        pass `source_video=` / `source_prompt=` or a `world=` that renders sources."""
        return cls(base=base, **options)

    # ---------------------------------------------------------------------------------------- identity
    @property
    def precision(self) -> str:
        """The tuning precision actually used (mixed precision is autocast on CUDA only)."""
        return self.tuning.mixed_precision if self.device.type == "cuda" else "no"

    def base_id(self) -> str:
        """The base model's id: its folder's manifest version, hub snapshot or file hashes (as the other
        baselines record it), or a hash of the weights given in memory (taken before inflation and tuning)."""
        if self._base_id is None:
            self._base_id = folder_identity(self._base_folder)
        return self._base_id

    def config(self) -> dict[str, Any]:
        return {"preset": self.preset_name, "base": self.base_id(), "size": self.size,
                "tuning": self.tuning.key_dict(self.precision), "num_inference_steps": self.num_inference_steps,
                "guidance_scale": self.guidance_scale, "negative_prompt": self.negative_prompt,
                "use_inversion": self.use_inversion, "inversion_steps": self.inversion_steps,
                "inflation": TAV_INFLATION.to_dict(), "init_seed": self.init_seed,
                "dtype": next(name for name, value in DTYPES.items() if value == self.dtype),
                "scheduler": "DDIM eta 0"}

    # ---------------------------------------------------------------------------------------- sources
    def check_inputs(self, samples: Sequence[Sample]) -> None:
        super().check_inputs(samples)
        if self._source_video is None and not hasattr(self.world, "render_source"):
            raise MethodUnavailable(f"{self.name} needs source videos: pass `source_video=` or a world with "
                                    "render_source (this one has none)")

    def source_prompt(self, sample: Sample) -> str:
        if self._source_prompt is not None:
            return self._source_prompt(sample)
        if hasattr(self.world, "source_prompt"):
            return self.world.source_prompt(sample)
        if "prompt" in sample.source:
            return str(sample.source["prompt"])
        if "motion" in sample.source:
            return neutral_source_prompt(sample.source)
        raise MethodUnavailable(f"{self.name}: sample {sample.id!r} has no source prompt (its source has no "
                                "'prompt' and the world gives none)")

    def source_frames(self, sample: Sample) -> np.ndarray:
        if self._source_video is not None:
            frames = np.asarray(self._source_video(sample))
        else:
            rendered = self.world.render_source(sample, size=self.size)
            frames = np.asarray(getattr(rendered, "frames", rendered))
        try:
            return check_video(frames, sample.num_frames, (self.size, self.size))
        except (TypeError, ValueError) as exc:
            raise MethodUnavailable(f"{self.name}: the source video of sample {sample.id!r} is unusable "
                                    f"({exc})") from None

    def source_video_of(self, sample: Sample) -> SourceVideo:
        """The sample's source video, tuning prompt and tuning key (samples sharing a key share a tuning)."""
        frames = self.source_frames(sample)
        prompt = self.source_prompt(sample)
        digest = hashlib.sha256()
        record = {"format": CACHE_FORMAT, "source": sample.source, "prompt": prompt, "shape": list(frames.shape),
                  "tuning": self.tuning.key_dict(self.precision), "base": self.base_id(),
                  "inflation": TAV_INFLATION.to_dict(), "init_seed": self.init_seed}
        digest.update(json.dumps(record, sort_keys=True, default=str).encode("utf-8"))
        digest.update(frames.tobytes())
        return SourceVideo(frames=frames, prompt=prompt, key=digest.hexdigest()[:24])

    # ------------------------------------------------------------------------------------------ latents
    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (F, H, W, 3) -> scaled VAE posterior (mean, std), each (1, C, F, h, w) float32."""
        vae = self.components.vae
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float()
        pixels = pixels / 127.5 - 1.0
        means, stds = [], []
        for chunk in pixels.split(16):
            posterior = vae.encode(chunk).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
        scale = vae.config.scaling_factor
        mean = torch.cat(means).float() * scale
        std = torch.cat(stds).float() * scale
        return mean.transpose(0, 1).unsqueeze(0), std.transpose(0, 1).unsqueeze(0)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.components.encode_prompts(list(prompts)).to(self.device, torch.float32)

    # --------------------------------------------------------------------------------------- tuning
    def _entry(self, key: str) -> Path:
        return self.cache_dir / key

    def _set_trainable(self, state: Mapping[str, torch.Tensor]) -> None:
        parameters = trainable_parameters(self.model.unet2d, self.tuning.trainable_modules)
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(state[name].to(parameter.device, parameter.dtype))

    def _load_cached(self, key: str) -> bool:
        from safetensors.torch import load_file

        path = self._entry(key) / WEIGHTS_FILE
        if not (self.use_cache and path.is_file()):
            return False
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types on a truncated/corrupt file
            raise UserError(f"{path}: unreadable cached Tune-A-Video weights ({type(exc).__name__}: {exc}); "
                            "delete the folder to re-tune") from None
        expected = {name: tuple(t.shape) for name, t in self._initial_state.items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            raise UserError(f"{path}: cached weights do not match this model's trainable set; delete the folder "
                            "to re-tune")
        self._set_trainable(state)
        return True

    def _save_cached(self, key: str, source: SourceVideo, losses: list[float], seconds: float) -> None:
        from safetensors.torch import save_file

        from fypbench.base.components import save_folder_atomic

        state = {name: p.detach().to("cpu", torch.float32).contiguous()
                 for name, p in trainable_parameters(self.model.unet2d, self.tuning.trainable_modules).items()}
        meta = {"format": CACHE_FORMAT, "method": self.name, "key": key, "source_prompt": source.prompt,
                "tuning": self.tuning.key_dict(self.precision), "base": self.base_id(), "losses": losses,
                "seconds": round(seconds, 3), "device": self.device.type}

        def write(staging: Path) -> None:
            save_file(state, str(staging / WEIGHTS_FILE))
            (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

        save_folder_atomic(write, self._entry(key))

    def prepare_source(self, source: SourceVideo) -> None:
        """Put the source's tuned weights into the model: from memory, the cache, or by tuning now."""
        if self._loaded_key == source.key:
            return
        if self.tuning.steps == 0:
            self._set_trainable(self._initial_state)
            self._loaded_key = source.key
            return
        if self._load_cached(source.key):
            self.stats["cache_hits"] += 1
            self._loaded_key = source.key
            return
        self._set_trainable(self._initial_state)
        self._loaded_key = None
        mean, std = self.encode_video(source.frames)
        text = self.encode_text([source.prompt])
        started = time.perf_counter()
        losses = tune_on_video(self.model, mean, std, text, self.components.noise_scheduler(), self.tuning,
                               derive_seed(self.name, "tuning", self.tuning.seed, source.key))
        seconds = time.perf_counter() - started
        self.stats["tuned"] += 1
        self.stats["tuning_seconds"] += seconds
        self.last_losses[source.key] = losses
        if self.use_cache:
            self._save_cached(source.key, source, losses, seconds)
        self._loaded_key = source.key

    # -------------------------------------------------------------------------------------- inversion
    def ddim_scheduler(self):
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.components.scheduler.config)

    def inverted_latents(self, source: SourceVideo) -> torch.Tensor:
        """(1, C, F, h, w) DDIM-inverted source latents with the source's tuned weights (cached)."""
        from safetensors.torch import load_file, save_file

        memo = (source.key, self.inversion_steps)
        if memo in self._inverted:
            return self._inverted[memo]
        path = self._entry(source.key) / f"inverted-{self.inversion_steps}.safetensors"
        if self.use_cache and self.tuning.steps > 0 and path.is_file():
            latents = load_file(str(path))["latents"].to(self.device)
        else:
            self.prepare_source(source)
            mean, _ = self.encode_video(source.frames)
            # contiguous like the cached copy: sampling from a strided start differed from a cache hit by 1/255
            latents = ddim_invert(self.model, mean, self.encode_text([""]), self.ddim_scheduler(),
                                  self.inversion_steps).contiguous()
            if self.use_cache and self.tuning.steps > 0 and self._entry(source.key).is_dir():
                with atomic_path(path) as tmp:
                    save_file({"latents": latents.detach().to("cpu")}, str(tmp))
        self._inverted[memo] = latents
        return latents

    # ------------------------------------------------------------------------------------------ generate
    def generate(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        from fypbench.models.followpose.pipeline import decode_latents

        samples = list(samples)
        self.check_inputs(samples)
        sources = [self.source_video_of(s) for s in samples]
        groups: dict[str, list[int]] = {}
        for index, source in enumerate(sources):
            groups.setdefault(source.key, []).append(index)
        latent_channels = int(self.model.unet2d.config.in_channels)
        latent_side = self.size // self.components.vae_scale_factor
        use_cfg = self.guidance_scale > 1.0
        autocast_dtype = None if self.dtype == torch.float32 else self.dtype
        videos: dict[int, np.ndarray] = {}
        for key, indices in groups.items():
            source = sources[indices[0]]
            start = self.inverted_latents(source) if self.use_inversion else None
            self.prepare_source(source)
            for offset in range(0, len(indices), self.batch_size):
                batch = indices[offset:offset + self.batch_size]
                frames = samples[batch[0]].num_frames
                if start is not None:
                    latents = start.expand(len(batch), -1, -1, -1, -1).clone()
                else:
                    shape = (latent_channels, frames, latent_side, latent_side)
                    latents = torch.stack([initial_noise(samples[i].seed, shape) for i in batch]).to(self.device)
                text = self.encode_text([samples[i].prompt for i in batch])
                uncond = self.encode_text([self.negative_prompt] * len(batch)) if use_cfg else None
                latents = ddim_sample(self.model, latents, text, uncond, self.ddim_scheduler(),
                                      self.num_inference_steps, self.guidance_scale, autocast_dtype)
                with torch.no_grad():
                    decoded = decode_latents(self.components.vae, latents.float())
                for i, video in zip(batch, decoded):
                    videos[i] = check_video(video, frames, (self.size, self.size))
        return [videos[i] for i in range(len(samples))]


def group_by_source(samples: Sequence[Sample]) -> Iterator[list[Sample]]:
    """Samples grouped by source reference (first-appearance order): schedule each group on one worker so it
    shares one tuning."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(json.dumps(sample.source, sort_keys=True, default=str), []).append(sample)
    yield from groups.values()


__all__ = ["PRESETS", "TRAINABLE_MODULES", "TAV_INFLATION", "TuneAVideoGenerator", "TuneAVideoPreset",
           "TuneAVideoUNet", "TuningConfig", "ddim_invert", "ddim_sample", "default_cache_dir", "denoising_loss",
           "describe_presets", "group_by_source", "neutral_source_prompt", "trainable_parameters", "tune_on_video"]
