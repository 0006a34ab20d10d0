"""MasaCtrl: mutual self-attention control over a pose video, with T2I-Adapter (or ControlNet) pose control.

    OMP_NUM_THREADS=1 python -m pytest tests/baselines/test_masactrl.py -q
    python -c "from fypbench.baselines.masactrl import describe_layers; print(describe_layers('debug'))"

Method (baselines.md §4; TencentARC/MasaCtrl re-implemented as diffusers attention processors). A sample's
frame 0 is the source (its prompt, pose_0); frames 1..F-1 are the targets (same prompt, pose_i), all from the
same initial noise (frame 0's slice of `initial_noise(sample.seed, (C, F, h, w))`). From denoising step
`start_step` on, in the self-attention (`attn1`) of transformer layers `start_layer`.. (counted in forward
order: down 0-5, mid 6, up 7-15 for SD 1.x), every query of a group - the source and its targets - reads the
keys/values of the group's source only, within each classifier-free-guidance half; the source itself is
therefore unchanged (it attends to itself), and the targets copy its appearance while their layout follows
their own pose control. Cross-attention is never touched. Official defaults (sd preset): start step 4 and
start layer 10 of 16, 50 DDIM steps; the maintainer also suggests smaller settings with extra controls, e.g.
(2, 8): pass start_step/start_layer.

Pose control: the T2I-Adapter (keypose by default, `variant="openpose"` for the openpose adapter) or a ControlNet
(`control="controlnet"`, OpenPose-18 maps), loaded exactly as the per-frame baselines load them
(fypbench.baselines.t2i_adapter / controlnet: mini weights from the world, sd checkpoints from a folder or the
local hub cache), with their denoising loop (`denoise_latents`), to which MasaCtrl only adds its processors.

Guards against the official code's known bugs:
- processors are registered on the UNet only (never on a ControlNet), for one denoising pass, and the UNet's
  previous processors are restored afterwards; each pass gets a fresh controller (the official step counter
  is never reset between calls);
- registration refuses any self-attention whose processor is not diffusers' plain one, or a layer count other
  than `expected_layers` (the official editor silently patches nothing on a mismatched diffusers);
- every denoising step must see each registered layer exactly once, in forward order (a processor replaced
  behind our back, e.g. by enable_xformers_memory_efficient_attention, raises instead of running uncontrolled).

Chunks: a sample's frames run in groups [source, targets...] of at most `frames_per_chunk`; every group holds
the source (regenerated with the same noise, pose and prompt, so it is the same image in every group).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fypbench.errors import UserError, did_you_mean
from fypbench.generator import Generator, check_video
from fypbench.sample import Sample

METHOD_NAME = "masactrl"
SD_SELF_ATTENTION_LAYERS = 16  # SD 1.x: 16 transformer blocks (official: 32 attention calls, 16 self + 16 cross)
CONTROLS = ("t2i-adapter", "controlnet")


@dataclass(frozen=True)
class MasaCtrlPreset:
    num_inference_steps: int
    guidance_scale: float
    start_step: int
    start_layer: int


PRESETS: dict[str, MasaCtrlPreset] = {
    "debug": MasaCtrlPreset(num_inference_steps=3, guidance_scale=5.0, start_step=1, start_layer=10),
    # the mini base's sampler (25 steps, guidance 5); start step 4 of 50 scaled to 2 of 25; same 16 layers
    "mini": MasaCtrlPreset(num_inference_steps=25, guidance_scale=5.0, start_step=2, start_layer=10),
    # official MasaCtrl defaults; guidance = the diffusers adapter pipeline's default
    "sd": MasaCtrlPreset(num_inference_steps=50, guidance_scale=7.5, start_step=4, start_layer=10),
}


def get_preset(name: str) -> MasaCtrlPreset:
    if name not in PRESETS:
        raise did_you_mean(name, PRESETS, "masactrl preset")
    return PRESETS[name]


# --------------------------------------------------------------------------------------------- layers
def self_attention_layers(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, attn1) of every transformer block of a diffusers UNet2DConditionModel, in forward order:
    down blocks, mid block, up blocks; within a block its `attentions` in order (each after its resnet)."""
    from diffusers.models.attention import BasicTransformerBlock

    layers: list[tuple[str, nn.Module]] = []
    parts = [(f"down_blocks.{i}", block) for i, block in enumerate(unet.down_blocks)]
    if getattr(unet, "mid_block", None) is not None:
        parts.append(("mid_block", unet.mid_block))
    parts += [(f"up_blocks.{i}", block) for i, block in enumerate(unet.up_blocks)]
    for prefix, block in parts:
        for a, transformer in enumerate(getattr(block, "attentions", None) or []):
            for name, module in transformer.named_modules():
                if isinstance(module, BasicTransformerBlock):
                    layers.append((f"{prefix}.attentions.{a}.{name}.attn1", module.attn1))
    every = sum(1 for m in unet.modules() if isinstance(m, BasicTransformerBlock))
    if every != len(layers):
        raise ValueError(f"found {every} transformer blocks but only {len(layers)} inside down/mid/up "
                         "attentions: the forward order of this UNet is unknown")
    return layers


def describe_layers(preset: str = "debug") -> str:
    """The layer numbering MasaCtrl uses on a base preset's UNet (built on the meta device)."""
    from fypbench.base.components import build_components

    unet = build_components(preset, device="meta").unet
    return "\n".join(f"{i:2d} {name}" for i, (name, _) in enumerate(self_attention_layers(unet)))


# ------------------------------------------------------------------------------------------- processor
class _PassState:
    """The per-pass bookkeeping of one controller: current step, the layers seen in this step."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.seen: list[int] = []


class MutualSelfAttentionProcessor:
    """attn1 processor of one layer. Inactive (before the start step / below the start layer): the layer's
    original processor, unchanged. Active: queries of every group read the keys/values of the group's first
    element (the source). The batch is [CFG half][groups][group_size] with frames folded in."""

    def __init__(self, controller: MutualSelfAttentionControl, layer: int, original) -> None:
        self.controller = controller
        self.layer = layer
        self.original = original

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 temb: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError(f"MasaCtrl layer {self.layer}: a self-attention was called with "
                             "encoder_hidden_states (cross-attention is never controlled)")
        active = self.controller.record(self.layer)
        if not active:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if attention_mask is not None or kwargs:
            raise ValueError(f"MasaCtrl layer {self.layer}: attention masks / extra arguments are not supported")
        return mutual_self_attention(attn, hidden_states, self.controller.group_size)


def mutual_self_attention(attn: nn.Module, hidden_states: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B, n, c) tokens, B a multiple of `group_size`: every element attends to its group's element 0."""
    if hidden_states.ndim != 3:
        raise ValueError(f"MasaCtrl expects (batch, tokens, channels), got {tuple(hidden_states.shape)}")
    batch, tokens, _ = hidden_states.shape
    if batch % group_size:
        raise ValueError(f"batch {batch} is not a multiple of the MasaCtrl group size {group_size}")

    def from_source(x: torch.Tensor) -> torch.Tensor:
        grouped = x.view(batch // group_size, group_size, tokens, x.shape[-1])
        return grouped[:, :1].expand(-1, group_size, -1, -1).reshape(batch, tokens, x.shape[-1])

    query = attn.to_q(hidden_states)
    key = from_source(attn.to_k(hidden_states))
    value = from_source(attn.to_v(hidden_states))
    heads = attn.heads
    head_dim = query.shape[-1] // heads
    query, key, value = (x.view(batch, -1, heads, head_dim).transpose(1, 2) for x in (query, key, value))
    out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
    out = attn.to_out[0](out)
    out = attn.to_out[1](out)
    return out / attn.rescale_output_factor


class MutualSelfAttentionControl:
    """Installs MasaCtrl on a UNet for one denoising pass (`installed()`), with fresh state.

    `begin_step(i)` must be called before step i's UNet call (denoise_latents' `on_step`), `finish()` after the
    last; both check that the previous step ran every layer once, in forward order.
    """

    def __init__(self, unet: nn.Module, *, start_step: int, start_layer: int, num_steps: int, group_size: int,
                 expected_layers: int = SD_SELF_ATTENTION_LAYERS) -> None:
        from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

        from fypbench.models.followpose.layers import check_plain_attention

        if start_step < 0 or start_layer < 0 or num_steps < 1 or group_size < 1:
            raise ValueError("start_step and start_layer must be >= 0, num_steps and group_size >= 1")
        self.unet = unet
        self.layers = self_attention_layers(unet)
        if len(self.layers) != expected_layers:
            raise ValueError(f"MasaCtrl expects {expected_layers} self-attention layers, this UNet has "
                             f"{len(self.layers)} (pass expected_layers to confirm a different layout)")
        if start_layer >= len(self.layers):
            raise ValueError(f"start_layer {start_layer} leaves no layer controlled (the UNet has {len(self.layers)})")
        for name, attn in self.layers:
            if not isinstance(attn, Attention):
                raise TypeError(f"{name}: expected a diffusers Attention, got {type(attn).__name__}")
            check_plain_attention(attn, name)
            if type(attn.processor) not in (AttnProcessor2_0, AttnProcessor):
                raise TypeError(f"{name}: MasaCtrl replaces diffusers' plain attention processor only, found "
                                f"{type(attn.processor).__name__} (another method's processor is installed)")
        self.start_step, self.start_layer = int(start_step), int(start_layer)
        self.num_steps, self.group_size = int(num_steps), int(group_size)
        self.state = _PassState()
        self.active_calls = 0
        self._installed = False

    def record(self, layer: int) -> bool:
        """Called by each layer's processor; returns whether the layer is controlled now."""
        if not self._installed or self.state.step is None:
            raise RuntimeError("a MasaCtrl processor ran outside its denoising pass (call begin_step first)")
        self.state.seen.append(layer)
        active = self.state.step >= self.start_step and layer >= self.start_layer
        self.active_calls += int(active)
        return active

    def _check_step(self) -> None:
        if self.state.step is None:
            return
        expected = list(range(len(self.layers)))
        if self.state.seen != expected:
            raise RuntimeError(f"MasaCtrl step {self.state.step}: self-attention layers ran as "
                               f"{self.state.seen[:20]} ({len(self.state.seen)} calls), expected each of the "
                               f"{len(expected)} layers once in order (a processor was replaced or the UNet was "
                               "called more than once per step)")

    def begin_step(self, step: int, timestep: int | None = None) -> None:
        self._check_step()
        if not 0 <= step < self.num_steps:
            raise RuntimeError(f"MasaCtrl step {step} outside the pass's {self.num_steps} steps")
        self.state.step, self.state.seen = int(step), []

    def finish(self) -> None:
        self._check_step()
        if self.state.step != self.num_steps - 1:
            raise RuntimeError(f"MasaCtrl pass ended after step {self.state.step}, expected {self.num_steps} steps")

    @contextlib.contextmanager
    def installed(self) -> Iterator[MutualSelfAttentionControl]:
        originals = [attn.processor for _, attn in self.layers]
        for index, (_, attn) in enumerate(self.layers):
            attn.set_processor(MutualSelfAttentionProcessor(self, index, originals[index]))
        self._installed = True
        try:
            yield self
        finally:
            self._installed = False
            for (_, attn), original in zip(self.layers, originals):
                attn.set_processor(original)


# ------------------------------------------------------------------------------------------- generator
class MasaCtrlGenerator(Generator):
    """MasaCtrl over a pose video (see the module docstring).

    `control`: "t2i-adapter" (default) or "controlnet"; the base model and control weights are found as the
    matching per-frame baseline finds them (`world`, or `base=` + `weights=`/`variant=`, or in-memory
    `components=` + `control_module=`). `preset`: "mini" (default), "sd" or "debug"; start_step, start_layer,
    num_inference_steps and guidance_scale override it. `frames_per_batch` caps the frames per UNet batch (at
    least one group); `frames_per_chunk` caps a group (source + targets; None = the whole sample).
    """

    name = METHOD_NAME

    def __init__(self, world=None, *, control: str = "t2i-adapter", base: str | os.PathLike | None = None,
                 weights: str | os.PathLike | None = None, variant: str | None = None, components=None,
                 control_module: nn.Module | None = None, preset: str = "mini", start_step: int | None = None,
                 start_layer: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str = "", conditioning_scale: float = 1.0,
                 frames_per_batch: int = 16, frames_per_chunk: int | None = None, size: int | None = None,
                 device: str = "cpu", dtype: str | torch.dtype = "float32",
                 expected_layers: int = SD_SELF_ATTENTION_LAYERS, unconditional_pose: bool = True) -> None:
        if control not in CONTROLS:
            raise did_you_mean(control, CONTROLS, "masactrl control")
        chosen = get_preset(preset)
        self.preset_name = preset
        self.control_name = control
        self.num_inference_steps = int(num_inference_steps or chosen.num_inference_steps)
        self.guidance_scale = float(chosen.guidance_scale if guidance_scale is None else guidance_scale)
        self.start_step = int(chosen.start_step if start_step is None else start_step)
        self.start_layer = int(chosen.start_layer if start_layer is None else start_layer)
        if self.num_inference_steps < 1 or self.start_step < 0 or self.start_layer < 0:
            raise UserError("masactrl: num_inference_steps must be >= 1, start_step and start_layer >= 0")
        if not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise UserError(f"masactrl: frames_per_batch must be an integer >= 1, got {frames_per_batch!r}")
        if frames_per_chunk is not None and (not isinstance(frames_per_chunk, int) or frames_per_chunk < 2):
            raise UserError(f"masactrl: frames_per_chunk must be an integer >= 2 (source + a target) or None, "
                            f"got {frames_per_chunk!r}")
        self.frames_per_batch, self.frames_per_chunk = frames_per_batch, frames_per_chunk
        self.expected_layers = int(expected_layers)
        # denoising passes run and controlled self-attention calls made (layer x step activations), all passes
        self.stats = {"passes": 0, "controlled_calls": 0}

        from fypbench.baselines.controlnet import ControlNetGenerator
        from fypbench.baselines.t2i_adapter import T2IAdapterGenerator

        pose_generator = T2IAdapterGenerator if control == "t2i-adapter" else ControlNetGenerator
        # The per-frame baseline loads and checks base + control; its steps/guidance are not used here.
        self.pose = pose_generator(world, base=base, weights=weights, variant=variant, components=components,
                                   control=control_module, num_inference_steps=self.num_inference_steps,
                                   guidance_scale=self.guidance_scale, negative_prompt=negative_prompt,
                                   conditioning_scale=conditioning_scale, noise_mode="shared",
                                   frames_per_batch=frames_per_batch, size=size, device=device, dtype=dtype,
                                   preset="sd" if preset == "sd" else "mini", unconditional_pose=unconditional_pose)
        self.negative_prompt = self.pose.negative_prompt
        self.conditioning_scale = self.pose.conditioning_scale
        self.size = self.pose.size
        # Fail at construction, not mid-run, when the UNet does not fit (wrong layout, foreign processors).
        MutualSelfAttentionControl(self.pose.components.unet, start_step=self.start_step,
                                   start_layer=self.start_layer, num_steps=self.num_inference_steps, group_size=1,
                                   expected_layers=self.expected_layers)

    @property
    def components(self):
        return self.pose.components

    def config(self) -> dict[str, Any]:
        pose = self.pose.config()
        return {**pose, "control": self.control_name, "preset": self.preset_name, "start_step": self.start_step,
                "start_layer": self.start_layer, "expected_layers": self.expected_layers,
                "num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
                "noise_mode": "shared", "attention": "mutual self-attention: source K/V only"}

    def check_inputs(self, samples: Sequence[Sample]) -> None:
        self.pose.check_inputs(samples)

    def _groups(self, samples: Sequence[Sample]) -> list[tuple[int, list[int]]]:
        """(sample index, frame indices) of every group; each group starts with frame 0 (the source)."""
        groups = []
        for index, sample in enumerate(samples):
            frames = sample.num_frames
            per_chunk = (self.frames_per_chunk or frames) - 1
            targets = list(range(1, frames))
            if not targets:
                groups.append((index, [0]))
            for lo in range(0, len(targets), max(per_chunk, 1)):
                groups.append((index, [0] + targets[lo:lo + per_chunk]))
        return groups

    def generate(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        from fypbench.baselines.controlnet import conditioning_maps, decode_images, denoise_latents, frame_latents

        samples = list(samples)
        self.check_inputs(samples)
        maps = [conditioning_maps(s, self.pose.style, self.size) for s in samples]
        latents = [frame_latents(s.seed, s.num_frames, self.pose.latent_shape, "shared") for s in samples]
        frames: dict[tuple[int, int], np.ndarray] = {}
        groups = self._groups(samples)
        start = 0
        while start < len(groups):
            # consecutive groups of one size share a UNet batch, up to frames_per_batch frames (at least one group)
            size = len(groups[start][1])
            stop = start + 1
            while (stop < len(groups) and len(groups[stop][1]) == size
                   and (stop - start + 1) * size <= self.frames_per_batch):
                stop += 1
            batch = groups[start:stop]
            prompts = [samples[i].prompt for i, frame_ids in batch for _ in frame_ids]
            batch_maps = np.concatenate([maps[i][frame_ids] for i, frame_ids in batch])
            batch_latents = torch.cat([latents[i][frame_ids] for i, frame_ids in batch])
            controller = MutualSelfAttentionControl(self.components.unet, start_step=self.start_step,
                                                    start_layer=self.start_layer,
                                                    num_steps=self.num_inference_steps, group_size=size,
                                                    expected_layers=self.expected_layers)
            with controller.installed():
                final = denoise_latents(self.components, self.pose.control, prompts, batch_maps, batch_latents,
                                        num_inference_steps=self.num_inference_steps,
                                        guidance_scale=self.guidance_scale, negative_prompt=self.negative_prompt,
                                        conditioning_scale=self.conditioning_scale,
                                        unconditional_pose=self.pose.unconditional_pose,
                                        on_step=controller.begin_step)
                controller.finish()
            self.stats["passes"] += 1
            self.stats["controlled_calls"] += controller.active_calls
            images = decode_images(self.components, final)
            position = 0
            for i, frame_ids in batch:
                for frame in frame_ids:
                    frames.setdefault((i, frame), images[position])
                    position += 1
            start = stop
        return [check_video(np.stack([frames[(i, f)] for f in range(s.num_frames)]), s.num_frames,
                            (self.size, self.size)) for i, s in enumerate(samples)]


__all__ = ["CONTROLS", "PRESETS", "MasaCtrlGenerator", "MasaCtrlPreset", "MutualSelfAttentionControl",
           "MutualSelfAttentionProcessor", "describe_layers", "mutual_self_attention", "self_attention_layers"]
