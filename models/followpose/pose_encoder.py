"""Follow-Your-Pose's pose encoder: a T2I-Adapter "full adapter" run per frame on skeleton videos.

    python -c "from fypbench.models.followpose.pose_encoder import describe; print(describe())"

Structure (followpose.md §3): PixelUnshuffle(downscale) -> conv_in 3x3 -> one AdapterBlock per UNet down
block (2 residual blocks each: 3x3 conv, ReLU, 1x1 conv, identity skip; AvgPool2d(2) and a 1x1 in_conv when
the width changes at the start of scales 1..). Built from diffusers' `FullAdapter`, so the parameter names
are those of a diffusers `T2IAdapter` (`adapter.conv_in.weight`, `adapter.body.{s}.resnets.{r}.block1.weight`);
`convert_official_pose_encoder` maps the official `pose_encoder.pth` names (`body.{2s+r}.block1.weight`).

`zero_init=False` (default) is the official code: PyTorch's default init, features added from step 0.
`zero_init=True` follows the paper's abstract ("zero-initialized convolutional encoder"): the full adapter has
no output convolution to zero, so one zero-initialised 1x1 conv per scale (ControlNet-style, `zero_convs.{s}`)
is added on the feature outputs; the encoder then outputs exactly zero at init. Those keys have no official name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from diffusers.models.adapter import FullAdapter
from torch import nn

from fypbench.models.followpose.layers import build_seeded
from fypbench.seeding import derive_seed

SD_POSE_CHANNELS = (320, 640, 1280, 1280)
SD_POSE_PARAMETERS = 77_369_280


@dataclass(frozen=True)
class PoseEncoderConfig:
    """`channels` = the UNet's block_out_channels; `downscale_factor` = the VAE's spatial factor (8 for SD)."""

    channels: tuple[int, ...] = SD_POSE_CHANNELS
    num_res_blocks: int = 2
    downscale_factor: int = 8
    in_channels: int = 3
    zero_init: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"pose encoder channels must be positive, got {self.channels}")
        if self.num_res_blocks < 1 or self.downscale_factor < 1 or self.in_channels < 1:
            raise ValueError("pose encoder num_res_blocks, downscale_factor and in_channels must be >= 1")

    @property
    def spatial_multiple(self) -> int:
        """Input height and width must be multiples of this (every AvgPool then halves exactly)."""
        return self.downscale_factor * 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}


class PoseEncoder(nn.Module):
    """Skeleton video (b, 3, f, H, W), RGB in [0, 1] -> one feature map (b, c_s, f, H/(d*2^s), W/(d*2^s)) per
    scale s (d = downscale_factor). Frames are folded into the batch: every frame is encoded independently."""

    def __init__(self, config: PoseEncoderConfig = PoseEncoderConfig(), init_seed: int = 0,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = config
        device = torch.device(device)
        generator = None
        if device.type != "meta":
            generator = torch.Generator(device="cpu").manual_seed(derive_seed("followpose-pose-encoder", init_seed))
        self.adapter = build_seeded(
            lambda: FullAdapter(in_channels=config.in_channels, channels=list(config.channels),
                                num_res_blocks=config.num_res_blocks, downscale_factor=config.downscale_factor),
            device, dtype, generator)
        self.zero_convs = None
        if config.zero_init:
            def zero(module, gen):
                for conv in module:
                    nn.init.zeros_(conv.weight)
                    nn.init.zeros_(conv.bias)

            self.zero_convs = build_seeded(
                lambda: nn.ModuleList(nn.Conv2d(c, c, kernel_size=1) for c in config.channels),
                device, dtype, generator, zero)

    def forward(self, pose_video: torch.Tensor) -> list[torch.Tensor]:
        if pose_video.ndim != 5 or pose_video.shape[1] != self.config.in_channels:
            raise ValueError(f"pose video must be (batch, {self.config.in_channels}, frames, H, W), "
                             f"got {tuple(pose_video.shape)}")
        batch, channels, frames, height, width = pose_video.shape
        multiple = self.config.spatial_multiple
        if height % multiple or width % multiple:
            raise ValueError(f"pose video frames are {height}x{width}; both sides must be multiples of {multiple}")
        images = pose_video.transpose(1, 2).reshape(batch * frames, channels, height, width)
        features = self.adapter(images.to(self.adapter.conv_in.weight.dtype))
        if self.zero_convs is not None:
            features = [conv(feature) for conv, feature in zip(self.zero_convs, features)]
        return [f.unflatten(0, (batch, frames)).transpose(1, 2) for f in features]


def pose_videos_to_tensor(videos: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 skeleton videos, each (F, H, W, 3) and all the same shape -> float (b, 3, F, H, W) in [0, 1]."""
    arrays = [np.asarray(v) for v in videos]
    if not arrays:
        raise ValueError("no pose videos")
    for i, video in enumerate(arrays):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"pose video {i}: expected uint8 (F, H, W, 3), got {video.dtype} {video.shape}")
        if video.shape != arrays[0].shape:
            raise ValueError(f"pose video {i}: shape {video.shape} differs from {arrays[0].shape}")
    stacked = torch.from_numpy(np.stack(arrays)).float() / 255.0  # (b, F, H, W, 3)
    return stacked.permute(0, 4, 1, 2, 3).contiguous()


# -------------------------------------------------------------------------------- official key conversion
_OURS_RESNET = re.compile(r"^adapter\.body\.(\d+)\.resnets\.(\d+)\.(block[12]\.(?:weight|bias))$")
_OURS_IN_CONV = re.compile(r"^adapter\.body\.(\d+)\.(in_conv\.(?:weight|bias))$")
_OURS_CONV_IN = re.compile(r"^adapter\.(conv_in\.(?:weight|bias))$")
_OFFICIAL_BODY = re.compile(r"^body\.(\d+)\.((block[12]|in_conv)\.(?:weight|bias))$")
_OFFICIAL_CONV_IN = re.compile(r"^(conv_in\.(?:weight|bias))$")


def fypbench_pose_key_to_official(key: str, num_res_blocks: int = 2) -> str | None:
    """`adapter.body.{s}.resnets.{r}.block1.weight` -> `body.{s*n+r}.block1.weight` (n = num_res_blocks), etc.
    None for keys the official encoder does not have (the zero_init convs)."""
    if match := _OURS_CONV_IN.match(key):
        return match.group(1)
    if match := _OURS_RESNET.match(key):
        scale, resnet, rest = int(match.group(1)), int(match.group(2)), match.group(3)
        return f"body.{scale * num_res_blocks + resnet}.{rest}"
    if match := _OURS_IN_CONV.match(key):
        return f"body.{int(match.group(1)) * num_res_blocks}.{match.group(2)}"
    return None


def official_pose_key_to_fypbench(key: str, num_res_blocks: int = 2) -> str | None:
    """Inverse of `fypbench_pose_key_to_official`; None for names the official encoder never has."""
    if match := _OFFICIAL_CONV_IN.match(key):
        return f"adapter.{match.group(1)}"
    if match := _OFFICIAL_BODY.match(key):
        index, rest, kind = int(match.group(1)), match.group(2), match.group(3)
        scale, resnet = divmod(index, num_res_blocks)
        if kind == "in_conv":
            return f"adapter.body.{scale}.{rest}" if resnet == 0 else None
        return f"adapter.body.{scale}.resnets.{resnet}.{rest}"
    return None


def convert_official_pose_encoder(state_dict: Mapping[str, torch.Tensor], num_res_blocks: int = 2
                                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official `pose_encoder.pth` state dict -> (PoseEncoder state dict, official keys that did not map)."""
    converted, unmapped = {}, []
    for key, value in state_dict.items():
        ours = official_pose_key_to_fypbench(key, num_res_blocks)
        if ours is None:
            unmapped.append(key)
        else:
            converted[ours] = value
    return converted, unmapped


def to_official_pose_encoder(state_dict: Mapping[str, torch.Tensor], num_res_blocks: int = 2
                             ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """PoseEncoder state dict -> (official `pose_encoder.pth` state dict, our keys with no official name)."""
    converted, unmapped = {}, []
    for key, value in state_dict.items():
        official = fypbench_pose_key_to_official(key, num_res_blocks)
        if official is None:
            unmapped.append(key)
        else:
            converted[official] = value
    return converted, unmapped


def describe(config: PoseEncoderConfig = PoseEncoderConfig()) -> str:
    encoder = PoseEncoder(config, device="meta")
    count = sum(p.numel() for p in encoder.parameters())
    return f"pose encoder {config.to_dict()}: {count:,} parameters, {len(encoder.state_dict())} tensors"
