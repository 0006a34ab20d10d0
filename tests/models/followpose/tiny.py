"""Tiny random configs shared by the Follow-Your-Pose tests (SD's layout at toy widths, CPU, < 1 s to build)."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel

from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig
from fypbench.seeding import derive_seed

TINY_UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 16, "attention_head_dim": 2, "norm_num_groups": 4,
}
TEXT_TOKENS, TEXT_DIM = 5, 16
POSE_DOWNSCALE = 2  # pose video pixels per latent pixel in these tests
TINY_CONFIG = FollowPoseConfig(conv_temporal_rank=4, pose_downscale_factor=POSE_DOWNSCALE)


def generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed("test-followpose", *parts))


def randn(*shape: int, seed: object = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator("randn", seed, shape))


def tiny_unet2d(seed: int = 0) -> UNet2DConditionModel:
    """Random tiny 2D UNet, with non-trivial norm affines so GroupNorm changes are visible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("test-unet2d", seed))
        unet = UNet2DConditionModel(**TINY_UNET)
        with torch.no_grad():
            for module in unet.modules():
                if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and module.weight is not None:
                    module.weight.add_(0.2 * torch.randn_like(module.weight))
                    module.bias.add_(0.2 * torch.randn_like(module.bias))
            # diffusers zero-initialises nothing here, but make conv_out clearly non-trivial
            unet.conv_out.weight.mul_(5.0)
    return unet.eval()


def tiny_followpose(config: FollowPoseConfig = TINY_CONFIG, unet_seed: int = 0, init_seed: int = 0) -> FollowPose:
    return FollowPose.from_unet2d(tiny_unet2d(unet_seed), config, init_seed).eval()


def video_inputs(batch: int = 2, frames: int = 3, seed: int = 0, identical_frames: bool = False):
    """(latents (b, 4, f, 8, 8), timesteps (b,), text (b, L, D), pose video (b, 3, f, 16, 16) in [0, 1])."""
    latents = randn(batch, 4, frames, 8, 8, seed=("latents", seed))
    pose = torch.rand(batch, 3, frames, 16, 16, generator=generator("pose", seed))
    if identical_frames:
        latents = latents[:, :, :1].expand(-1, -1, frames, -1, -1).contiguous()
        pose = pose[:, :, :1].expand(-1, -1, frames, -1, -1).contiguous()
    timesteps = torch.tensor([10, 500][:batch] + [900] * max(0, batch - 2))
    text = randn(batch, TEXT_TOKENS, TEXT_DIM, seed=("text", seed))
    return latents, timesteps, text, pose
