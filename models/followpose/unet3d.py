"""Follow-Your-Pose's inflated UNet on current diffusers, its pose injection, official-checkpoint loading.

    python -c "from fypbench.models.followpose.unet3d import describe_sd; print(describe_sd())"

`FollowPoseUNet3D` wraps a diffusers `UNet2DConditionModel` inflated in place (`inflate.py`: sparse-causal
attn1, attn_temp + norm_temp + conv_temporal after every FFN, GroupNorm pooled across frames in the ResNets and
conv_norm_out) and runs videos (b, c, f, h, w) with the frames folded into the batch. `FollowPose` bundles it
with the pose encoder (the official UNet holds it as `skeleton_adapter`); its sd-config parameter count is the
official 998,470,084.

Pose injection (followpose.md §4), `FollowPoseConfig.injection`:
- "residual" (official): the pose feature of scale s is added to the output of down block s's last
  (resnet, transformer) pair (last resnet for a block without attention), before its downsampler, so the
  skip connection sent to the decoder carries it. This is where diffusers' `down_intrablock_additional_residuals`
  adds (for a final DownBlock2D without downsampler, whose in-place add also changes its skip); unlike that
  path, a DownBlock2D with a downsampler also gets the add before downsampling. For layers_per_block=2 this is
  the official "after the 2nd pair" rule.
- "concat" (ablation): at the same point, h <- Conv1x1([h ; p]) with the 1x1 conv (C + P -> C, bias)
  initialised to identity on h and zero on p, so the model at init is the model without pose and training
  learns how much of the pose to mix in (and may reweight h). The paper's ablation (§11 of the spec) reports,
  qualitatively, that residual addition preserves quality better than concatenation; its concat variant is
  not specified beyond "concatenation", so this is fypbench's definition.
`depth` = k injects into down blocks 0..k-1 (from the highest resolution); no pose in mid or up blocks.
Pose features must be given in both CFG halves (the pipeline duplicates them). `pose_features=None` injects
nothing (residual), or concatenates zeros (concat): the official training forward drops the features.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from fypbench.errors import UserError
from fypbench.io import atomic_path, write_json_atomic
from fypbench.models.followpose.inflate import SD_CONV_TEMPORAL_RANK, InflationOptions, inflate_unet2d
from fypbench.models.followpose.layers import VideoContext, build_seeded
from fypbench.models.followpose.pose_encoder import (
    PoseEncoder,
    PoseEncoderConfig,
    fypbench_pose_key_to_official,
    official_pose_key_to_fypbench,
)
from fypbench.seeding import derive_seed

# SD 1.4/1.5 unet/config.json (the values that differ from diffusers' defaults are sample_size,
# cross_attention_dim and attention_head_dim; all are spelled out).
SD_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32,
    "norm_eps": 1e-5, "cross_attention_dim": 768, "attention_head_dim": 8, "use_linear_projection": False,
    "upcast_attention": False,
}

# followpose.md §2 / §6
SD_COUNTS = {"pose_encoder": 77_369_280, "unet2d": 859_520_964, "attn_temp": 49_574_080, "norm_temp": 24_960,
             "conv_temporal": 11_980_800, "total": 998_470_084}
STAGE2_TRAINABLE_SUFFIXES = ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal")
INJECTIONS = ("residual", "concat")
OFFICIAL_ADAPTER_PREFIX = "skeleton_adapter."
UNET_PREFIX = "unet.unet2d."
POSE_PREFIX = "pose_encoder."
CONFIG_NAME = "followpose.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class FollowPoseConfig:
    """Architecture switches of the Follow-Your-Pose model. Defaults = the official model at SD scale."""

    injection: str = "residual"
    depth: int | None = None  # down blocks receiving pose features, from the highest resolution; None = all
    sparse_causal_attention: bool = True
    temporal_attention: bool = True
    conv_temporal: bool = True
    conv_temporal_rank: int = SD_CONV_TEMPORAL_RANK
    pooled_group_norm: bool = True
    pose_downscale_factor: int = 8  # = the VAE's spatial factor
    pose_num_res_blocks: int = 2
    pose_zero_init: bool = False  # paper's abstract; the official code has no zero-init

    def __post_init__(self) -> None:
        if self.injection not in INJECTIONS:
            raise UserError(f"followpose config: injection {self.injection!r} is not one of {', '.join(INJECTIONS)}")
        if self.depth is not None and (not isinstance(self.depth, int) or self.depth < 1):
            raise UserError(f"followpose config: depth must be a positive integer or null, got {self.depth!r}")
        if self.conv_temporal_rank < 1:
            raise UserError(f"followpose config: conv_temporal_rank must be >= 1, got {self.conv_temporal_rank}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "followpose config") -> FollowPoseConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def inflation_options(self) -> InflationOptions:
        return InflationOptions(sparse_causal_attention=self.sparse_causal_attention,
                                temporal_attention=self.temporal_attention, zero_init_temporal_out=False,
                                conv_temporal=self.conv_temporal, conv_temporal_rank=self.conv_temporal_rank,
                                pooled_group_norm=self.pooled_group_norm)

    def pose_encoder_config(self, channels: Sequence[int]) -> PoseEncoderConfig:
        return PoseEncoderConfig(channels=tuple(channels), num_res_blocks=self.pose_num_res_blocks,
                                 downscale_factor=self.pose_downscale_factor, zero_init=self.pose_zero_init)


# ------------------------------------------------------------------------------------------ pose injection
@dataclass
class PoseFeatures:
    """The folded pose features (b*f, c, h, w) of the current forward, one per injected down block.

    Left set after the forward (like `VideoContext`) so gradient checkpointing recomputes the same add."""

    folded: list[torch.Tensor] | None = None


class PoseConcatProjection(nn.Module):
    """[h ; p] -> 1x1 conv -> C: identity on h and zero on p at init (see the module docstring)."""

    def __init__(self, channels: int, pose_channels: int) -> None:
        super().__init__()
        self.channels, self.pose_channels = channels, pose_channels
        self.proj = nn.Conv2d(channels + pose_channels, channels, kernel_size=1)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.weight[:, : self.channels, 0, 0] = torch.eye(self.channels)
            self.proj.bias.zero_()

    def forward(self, hidden_states: torch.Tensor, pose: torch.Tensor | None) -> torch.Tensor:
        if pose is None:
            batch, _, height, width = hidden_states.shape
            pose = hidden_states.new_zeros(batch, self.pose_channels, height, width)
        return self.proj(torch.cat([hidden_states, pose.to(hidden_states.dtype)], dim=1))


class PoseInjectionHook:
    """Forward hook on the last layer of a down block's last (resnet, transformer) pair: adds (residual) or
    concat-projects (concat) the pose feature of that block into the layer's output."""

    def __init__(self, features: PoseFeatures, index: int, where: str,
                 projection: PoseConcatProjection | None) -> None:
        self.features, self.index, self.where, self.projection = features, index, where, projection

    def _inject(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pose = None if self.features.folded is None else self.features.folded[self.index]
        if pose is not None and (pose.shape[0] != hidden_states.shape[0] or pose.shape[2:] != hidden_states.shape[2:]
                                 or (self.projection is None and pose.shape[1] != hidden_states.shape[1])):
            raise ValueError(f"{self.where}: pose feature {tuple(pose.shape)} does not fit the hidden states "
                             f"{tuple(hidden_states.shape)} (pose encoder downscale vs VAE factor?)")
        if self.projection is not None:
            return self.projection(hidden_states, pose)
        return hidden_states if pose is None else hidden_states + pose.to(hidden_states.dtype)

    def __call__(self, module: nn.Module, args: tuple, output):
        if isinstance(output, torch.Tensor):
            return self._inject(output)
        if isinstance(output, tuple):
            return (self._inject(output[0]), *output[1:])
        raise TypeError(f"{self.where}: cannot inject pose into an output of type {type(output).__name__}")


def injection_points(unet2d: UNet2DConditionModel, depth: int) -> list[tuple[str, nn.Module, int]]:
    """(name, module whose output receives the pose, channels) for down blocks 0..depth-1."""
    points = []
    for index in range(depth):
        block = unet2d.down_blocks[index]
        attentions = getattr(block, "attentions", None)
        if attentions:
            if len(attentions) != len(block.resnets):
                raise ValueError(f"down_blocks.{index}: {len(block.resnets)} resnets but {len(attentions)} "
                                 "attentions; the injection point (last pair) is undefined")
            points.append((f"down_blocks.{index}.attentions.{len(attentions) - 1}", attentions[-1],
                           block.resnets[-1].out_channels))
        else:
            points.append((f"down_blocks.{index}.resnets.{len(block.resnets) - 1}", block.resnets[-1],
                           block.resnets[-1].out_channels))
    return points


# ----------------------------------------------------------------------------------------------- the UNet
class FollowPoseUNet3D(nn.Module):
    """The inflated denoiser: (b, c, f, h, w) noisy latents -> (b, c, f, h, w) prediction.

    Takes ownership of `unet2d` and inflates it in place (call `copy.deepcopy` first to keep a 2D copy).
    """

    def __init__(self, unet2d: UNet2DConditionModel, config: FollowPoseConfig = FollowPoseConfig(),
                 init_seed: int = 0) -> None:
        super().__init__()
        if not isinstance(unet2d, UNet2DConditionModel):
            raise TypeError(f"expected a diffusers UNet2DConditionModel, got {type(unet2d).__name__}")
        num_down = len(unet2d.down_blocks)
        depth = num_down if config.depth is None else config.depth
        if depth > num_down:
            raise UserError(f"followpose config: depth {depth} exceeds the UNet's {num_down} down blocks")
        self.config = config
        self.depth = depth
        self.video = VideoContext()
        self.pose = PoseFeatures()
        self.unet2d = inflate_unet2d(unet2d, self.video, config.inflation_options(), init_seed)

        points = injection_points(unet2d, depth)
        self.pose_projections: nn.ModuleList | None = None
        if config.injection == "concat":
            reference = next(unet2d.parameters())
            self.pose_projections = nn.ModuleList(
                build_seeded(lambda c=channels: PoseConcatProjection(c, c), reference.device, reference.dtype,
                             torch.Generator().manual_seed(derive_seed("followpose-concat", init_seed, name))
                             if reference.device.type != "meta" else None,
                             lambda module, gen: module.reset_parameters(gen))
                for name, _, channels in points)
        for index, (name, module, _) in enumerate(points):
            projection = None if self.pose_projections is None else self.pose_projections[index]
            module.register_forward_hook(PoseInjectionHook(self.pose, index, name, projection))

    @classmethod
    def from_unet2d(cls, unet2d: UNet2DConditionModel, config: FollowPoseConfig = FollowPoseConfig(),
                    init_seed: int = 0) -> FollowPoseUNet3D:
        return cls(unet2d, config, init_seed)

    @classmethod
    def from_pretrained_2d(cls, path_or_hub_id: str | os.PathLike, config: FollowPoseConfig = FollowPoseConfig(),
                           subfolder: str | None = "unet", init_seed: int = 0,
                           dtype: torch.dtype = torch.float32) -> FollowPoseUNet3D:
        return cls(load_unet2d(path_or_hub_id, subfolder, dtype), config, init_seed)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.unet2d.config.block_out_channels)

    def set_video(self, num_frames: int, pose_features: Sequence[torch.Tensor] | None = None) -> None:
        """Set the frame count and the pose features that the next call of `self.unet2d` uses.

        `forward` does this itself; call it only to drive `self.unet2d` directly with folded inputs.
        pose_features: one (b, c_s, f, h_s, w_s) per scale (at least `depth`; extra scales are unused)."""
        self.video.set(num_frames)
        if pose_features is None:
            self.pose.folded = None
            return
        if len(pose_features) < self.depth:
            raise ValueError(f"{len(pose_features)} pose feature maps for injection depth {self.depth}")
        folded = []
        for index, feature in enumerate(pose_features[: self.depth]):
            if feature.ndim != 5 or feature.shape[2] != num_frames:
                raise ValueError(f"pose feature {index}: expected (b, c, {num_frames}, h, w), "
                                 f"got {tuple(feature.shape)}")
            folded.append(feature.transpose(1, 2).flatten(0, 1))
        self.pose.folded = folded

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor,
                pose_features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """sample (b, c, f, h, w); timestep scalar or (b,); encoder_hidden_states (b, L, D), shared by the
        frames of a video; pose_features from `PoseEncoder` (b, c_s, f, h_s, w_s) per scale, or None."""
        if sample.ndim != 5:
            raise ValueError(f"sample must be (batch, channels, frames, height, width), got {tuple(sample.shape)}")
        batch, channels, frames, height, width = sample.shape
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != batch:
            raise ValueError(f"encoder_hidden_states must be ({batch}, tokens, dim), "
                             f"got {tuple(encoder_hidden_states.shape)}")
        if pose_features is not None and any(f.shape[0] != batch for f in pose_features[: self.depth]):
            raise ValueError(f"pose features must have batch {batch} (duplicate them for both CFG halves)")
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 1 and timestep.shape[0] == batch:
            timestep = timestep.repeat_interleave(frames)
        elif timestep.ndim != 0:
            raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(timestep.shape)}")
        self.set_video(frames, pose_features)
        folded = sample.transpose(1, 2).reshape(batch * frames, channels, height, width)
        text = encoder_hidden_states.repeat_interleave(frames, dim=0)
        out = self.unet2d(folded, timestep, text, return_dict=False)[0]
        return out.unflatten(0, (batch, frames)).transpose(1, 2)


def load_unet2d(path_or_hub_id: str | os.PathLike, subfolder: str | None = "unet",
                dtype: torch.dtype = torch.float32) -> UNet2DConditionModel:
    """A diffusers UNet2DConditionModel from a local folder or a hub id already in the local cache (offline)."""
    try:
        return UNet2DConditionModel.from_pretrained(str(path_or_hub_id), subfolder=subfolder, local_files_only=True,
                                                    torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        where = f"{path_or_hub_id}" + (f"/{subfolder}" if subfolder else "")
        raise UserError(f"{where}: cannot load a UNet2DConditionModel offline ({str(exc).splitlines()[0]})") from None


# ---------------------------------------------------------------------------------------------- the bundle
class FollowPose(nn.Module):
    """Pose encoder + inflated UNet: the trainable/saveable unit (state dict keys `unet.unet2d.*`,
    `unet.pose_projections.*`, `pose_encoder.*`)."""

    def __init__(self, unet: FollowPoseUNet3D, pose_encoder: PoseEncoder) -> None:
        super().__init__()
        channels, pose_channels = unet.block_out_channels, pose_encoder.config.channels
        if len(pose_channels) < unet.depth or tuple(pose_channels[: unet.depth]) != channels[: unet.depth]:
            raise ValueError(f"pose encoder channels {pose_channels} do not match the UNet's down blocks "
                             f"{channels} over injection depth {unet.depth}")
        self.unet = unet
        self.pose_encoder = pose_encoder

    @property
    def config(self) -> FollowPoseConfig:
        return self.unet.config

    @classmethod
    def from_unet2d(cls, unet2d: UNet2DConditionModel, config: FollowPoseConfig = FollowPoseConfig(),
                    init_seed: int = 0) -> FollowPose:
        reference = next(unet2d.parameters())
        pose_encoder = PoseEncoder(config.pose_encoder_config(unet2d.config.block_out_channels), init_seed,
                                   device=reference.device, dtype=reference.dtype)
        return cls(FollowPoseUNet3D(unet2d, config, init_seed), pose_encoder)

    @classmethod
    def from_pretrained_2d(cls, path_or_hub_id: str | os.PathLike, config: FollowPoseConfig = FollowPoseConfig(),
                           subfolder: str | None = "unet", init_seed: int = 0,
                           dtype: torch.dtype = torch.float32) -> FollowPose:
        """SD 1.4/1.5 (or the mini base) UNet weights + freshly initialised video modules and pose encoder."""
        return cls.from_unet2d(load_unet2d(path_or_hub_id, subfolder, dtype), config, init_seed)

    @classmethod
    def from_unet_config(cls, unet_config: Mapping[str, Any], config: FollowPoseConfig = FollowPoseConfig(),
                         init_seed: int = 0, device: str | torch.device = "cpu") -> FollowPose:
        """Random weights for a UNet config (`device="meta"`: shapes only, e.g. the sd conformance checks)."""
        if torch.device(device).type == "meta":
            with torch.device("meta"):
                unet2d = UNet2DConditionModel.from_config(dict(unet_config))
        else:
            # diffusers initialises from the global RNG: fork it and seed it from stable parts
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed("followpose-unet2d", init_seed))
                unet2d = UNet2DConditionModel.from_config(dict(unet_config))
            unet2d = unet2d.to(device)
        return cls.from_unet2d(unet2d, config, init_seed)

    def encode_pose(self, pose_video: torch.Tensor) -> list[torch.Tensor]:
        return self.pose_encoder(pose_video)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor, pose_video: torch.Tensor | None = None) -> torch.Tensor:
        """Training forward: pose_video (b, 3, f, H, W) in [0, 1], or None for pose-free (stage 2) videos."""
        features = None if pose_video is None else self.pose_encoder(pose_video)
        return self.unet(sample, timestep, encoder_hidden_states, features)


def describe_sd(config: FollowPoseConfig = FollowPoseConfig()) -> str:
    model = FollowPose.from_unet_config(SD_UNET_CONFIG, config, device="meta")
    counts = parameter_counts(model)
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())


def parameter_counts(model: FollowPose) -> dict[str, int]:
    """Parameter counts by part, in the spec's terms (followpose.md §2)."""
    counts = {"pose_encoder": 0, "unet2d": 0, "attn_temp": 0, "norm_temp": 0, "conv_temporal": 0,
              "pose_projections": 0}
    for name, parameter in model.named_parameters():
        if name.startswith(POSE_PREFIX):
            part = "pose_encoder"
        elif name.startswith("unet.pose_projections."):
            part = "pose_projections"
        else:
            part = next((p for p in ("attn_temp", "norm_temp", "conv_temporal") if f".{p}." in name), "unet2d")
        counts[part] += parameter.numel()
    counts["total"] = sum(counts.values())
    return counts


# ------------------------------------------------------------------------------------- official checkpoints
def fypbench_key_to_official(key: str, num_res_blocks: int = 2) -> str | None:
    """Our state-dict key -> the official one (UNet keys as in `pytorch_model.bin`, the pose encoder as
    `skeleton_adapter.*`); None for keys the official model does not have (concat projections, zero convs)."""
    if key.startswith(UNET_PREFIX):
        return key[len(UNET_PREFIX):]
    if key.startswith(POSE_PREFIX):
        official = fypbench_pose_key_to_official(key[len(POSE_PREFIX):], num_res_blocks)
        return None if official is None else OFFICIAL_ADAPTER_PREFIX + official
    return None


def official_key_to_fypbench(key: str, num_res_blocks: int = 2) -> str | None:
    if key.startswith(OFFICIAL_ADAPTER_PREFIX):
        ours = official_pose_key_to_fypbench(key[len(OFFICIAL_ADAPTER_PREFIX):], num_res_blocks)
        return None if ours is None else POSE_PREFIX + ours
    return UNET_PREFIX + key


def to_official_state_dicts(model: FollowPose) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(UNet state dict with `skeleton_adapter.*`, `pose_encoder.pth` state dict) in the official names.

    Raises if the model has parameters without an official name (a non-official configuration)."""
    nrb = model.pose_encoder.config.num_res_blocks
    unet_sd, pose_sd, unnamed = {}, {}, []
    for key, value in model.state_dict().items():
        official = fypbench_key_to_official(key, nrb)
        if official is None:
            unnamed.append(key)
            continue
        unet_sd[official] = value
        if official.startswith(OFFICIAL_ADAPTER_PREFIX):
            pose_sd[official[len(OFFICIAL_ADAPTER_PREFIX):]] = value
    if unnamed:
        raise ValueError(f"{len(unnamed)} parameters have no official name (e.g. {unnamed[0]}): "
                         "the official model has no such module")
    return unet_sd, pose_sd


@dataclass
class LoadReport:
    """Key coverage of an official checkpoint load (official names for unexpected keys, ours for missing)."""

    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    adapter_conflicts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def summary(self) -> str:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")

        parts = [f"{self.loaded} tensors loaded"]
        for label, keys in (("MISSING", self.missing), ("UNEXPECTED", self.unexpected),
                            ("SHAPE MISMATCH", self.shape_mismatches),
                            ("skeleton_adapter differs from pose_encoder.pth (checkpoint wins)",
                             self.adapter_conflicts)):
            if keys:
                parts.append(f"{len(keys)} {label}: {head(keys)}")
        return "; ".join(parts)


def load_official_checkpoint(model: FollowPose, unet_state_dict: Mapping[str, torch.Tensor] | None,
                             pose_encoder_state_dict: Mapping[str, torch.Tensor] | None = None,
                             strict: bool = True) -> LoadReport:
    """Load the official weights: the UNet state dict of `followyourpose_checkpoint-1000/pytorch_model.bin`
    (2D keys + attn_temp/norm_temp/conv_temporal, and `skeleton_adapter.*` if present) and `pose_encoder.pth`.

    As in the official code, `pose_encoder.pth` is loaded first and a checkpoint's `skeleton_adapter.*` then
    overrides it (differences are reported). Every key is accounted for: strict=True raises UserError on any
    missing/unexpected/mis-shaped key before changing the model; strict=False loads what fits and warns.
    """
    nrb = model.pose_encoder.config.num_res_blocks
    expected = model.state_dict()
    report = LoadReport()
    converted: dict[str, torch.Tensor] = {}
    for key, value in (pose_encoder_state_dict or {}).items():
        ours = official_pose_key_to_fypbench(key, nrb)
        if ours is None:
            report.unexpected.append(f"pose_encoder.pth:{key}")
        else:
            converted[POSE_PREFIX + ours] = value
    for key, value in (unet_state_dict or {}).items():
        ours = official_key_to_fypbench(key, nrb)
        if ours is None or ours not in expected:
            report.unexpected.append(key)
            continue
        if ours in converted and converted[ours].shape == value.shape and not torch.equal(converted[ours], value):
            report.adapter_conflicts.append(key)
        converted[ours] = value
    for key, value in list(converted.items()):
        if key not in expected:
            report.unexpected.append(fypbench_key_to_official(key, nrb) or key)
            del converted[key]
        elif tuple(value.shape) != tuple(expected[key].shape):
            report.shape_mismatches.append(f"{fypbench_key_to_official(key, nrb)} {tuple(value.shape)} "
                                           f"vs {tuple(expected[key].shape)}")
            del converted[key]
    report.missing = sorted(set(expected) - set(converted))
    if strict and not report.ok:
        raise UserError(f"official Follow-Your-Pose checkpoint does not match the model: {report.summary()}")
    model.load_state_dict(converted, strict=False)
    report.loaded = len(converted)
    if not report.ok or report.adapter_conflicts:
        warnings.warn(f"official Follow-Your-Pose checkpoint: {report.summary()}", stacklevel=2)
    return report


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors / .bin / .pth / .pt, or from an accelerate `save_state` folder
    (its `model.safetensors` or `pytorch_model.bin`)."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return read_state_dict(path / name)
        raise UserError(f"{path}: no model.safetensors or pytorch_model.bin in this checkpoint folder")
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".bin", ".pth", ".pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors have many types; report the file, not a trace
            raise UserError(f"{path}: not a readable torch state dict ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, Mapping):
            raise UserError(f"{path}: expected a state dict, found {type(state).__name__}")
        return dict(state)
    raise UserError(f"{path}: unknown checkpoint format (expected .safetensors, .bin, .pth or .pt)")


def load_official_files(model: FollowPose, checkpoint: str | os.PathLike | None,
                        pose_encoder: str | os.PathLike | None = None, strict: bool = True) -> LoadReport:
    """`load_official_checkpoint` from files: e.g. `followyourpose_checkpoint-1000/` and `pose_encoder.pth`."""
    if checkpoint is None and pose_encoder is None:
        raise UserError("official checkpoint: give the UNet checkpoint, pose_encoder.pth, or both")
    unet_sd = None if checkpoint is None else read_state_dict(checkpoint)
    pose_sd = None if pose_encoder is None else read_state_dict(pose_encoder)
    return load_official_checkpoint(model, unet_sd, pose_sd, strict=strict)


# ------------------------------------------------------------------------------------------ save / load
def save_followpose(model: FollowPose, folder: str | os.PathLike) -> Path:
    """Write `followpose.json` (architecture) and `model.safetensors` (all weights, float32) into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    unet_config = {k: v for k, v in dict(model.unet.unet2d.config).items() if not k.startswith("_")}
    write_json_atomic(folder / CONFIG_NAME, {"format": 1, "followpose": model.config.to_dict(),
                                             "unet2d": json.loads(json.dumps(unet_config, default=list))})
    return folder


def load_followpose(folder: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> FollowPose:
    """Inverse of `save_followpose` (every tensor must be present; nothing is left randomly initialised)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise UserError(f"{folder}: not a Follow-Your-Pose folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        record = json.loads(config_path.read_text())
        config = FollowPoseConfig.from_dict(record["followpose"], where=str(config_path))
        unet_config = dict(record["unet2d"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{config_path}: unreadable ({exc})") from None
    model = FollowPose.from_unet_config(unet_config, config, device="meta")
    state = load_file(str(folder / WEIGHTS_NAME))
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise UserError(f"{folder / WEIGHTS_NAME}: weights do not match {config_path} "
                        f"({str(exc).splitlines()[0]})") from None
    leftovers = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise UserError(f"{folder / WEIGHTS_NAME}: no values for {', '.join(leftovers[:5])}")
    return model.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------- trainable sets
def trainable_parameters(model: FollowPose, stage: int) -> dict[str, nn.Parameter]:
    """The parameters a training stage updates (followpose.md §6).

    Stage 1: the pose encoder (and, for concat injection, the concat projections, which start at zero weight
    on the pose channels and would otherwise block every gradient). Stage 2 (the released config):
    modules whose name ends with attn1.to_q, attn2.to_q, attn_temp or conv_temporal (sd: 144 tensors,
    86,335,680 parameters); norm_temp, the pose encoder and everything else stay frozen.
    """
    if stage == 1:
        return {name: p for name, p in model.named_parameters()
                if name.startswith(POSE_PREFIX) or name.startswith("unet.pose_projections.")}
    if stage == 2:
        selected: dict[str, nn.Parameter] = {}
        for module_name, module in model.unet.named_modules():
            if module_name.endswith(STAGE2_TRAINABLE_SUFFIXES):
                for name, parameter in module.named_parameters():
                    selected[f"unet.{module_name}.{name}"] = parameter
        return selected
    raise UserError(f"followpose training stage must be 1 or 2, got {stage!r}")


def freeze_for_stage(model: FollowPose, stage: int) -> dict[str, nn.Parameter]:
    """Set requires_grad for a stage (trainable set on, everything else off); returns the trainable set."""
    selected = trainable_parameters(model, stage)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in selected)
    return selected
