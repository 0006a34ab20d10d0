"""Follow-Your-Pose sampling: DDIM + classifier-free guidance, pose features in both CFG branches.

    OMP_NUM_THREADS=1 python -m pytest tests/models/followpose/test_pipeline.py -q

`generate_videos(unet3d, pose_encoder, vae, text_encoder, tokenizer, scheduler, prompts, pose_videos, seeds)`
turns (prompt, uint8 skeleton video, seed) triples into uint8 videos (F, H, W, 3) at the pose videos'
resolution. Per sample: the initial latents are `fypbench.seeding.initial_noise(seed, (C, F, h, w))` (i.i.d.
over frames, as the official sampler), so a video depends on its own (prompt, pose, seed) only, never on the
batch it was drawn in. Pose features are computed once per video (they do not depend on t) and duplicated into
the unconditional and text halves, as the official pipeline duplicates the skeleton. Official sampling values
(followpose.md §7): DDIM 50 steps, eta 0, guidance 12.5, negative prompt "", VAE decode per frame, clamp to
[0, 1].

Options beyond the official sampler (used by the stage-1-only comparison and the PA baseline):
- `per_frame=True`: every frame is denoised as its own one-frame video (frames folded into the batch for the
  UNet call only) with the temporal modules switched off, i.e. the 2D UNet + pose encoder applied frame by
  frame (with one frame, sparse-causal attention is plain self-attention and pooled GroupNorm is per image).
- `shared_noise=True`: every frame starts from frame 0's slice of the sample's noise (default: each frame
  its own slice of the same (C, F, h, w) tensor).
- `inject_pose=False`: the pose encoder is not run and nothing is injected (residual injection: exactly the
  model without pose; concat: zeros concatenated), e.g. the base model without pose.
- `unconditional_pose=False`: the unconditional CFG branch gets zero pose features (nothing injected), so the
  guidance term amplifies the pose together with the text ("pose guidance"; official: pose in both branches).
- `conditioning_scale`: the pose features are multiplied by it before injection (official: 1), as diffusers'
  adapter/ControlNet pipelines scale their residuals (`adapter_conditioning_scale`,
  `controlnet_conditioning_scale`) and as the T2I-Adapter and ControlNet generators here do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler

from fypbench.generator import check_video
from fypbench.models.followpose.pose_encoder import PoseEncoder, pose_videos_to_tensor
from fypbench.models.followpose.unet3d import FollowPoseUNet3D
from fypbench.seeding import initial_noise

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 12.5


def encode_prompts(text_encoder, tokenizer, prompts: Sequence[str], device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """SD 1.x conditioning: the text encoder's last hidden state over max-length padded tokens."""
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(device))[0].to(dtype)


def decode_latents(vae, latents: torch.Tensor, decode_batch_size: int = 16) -> np.ndarray:
    """(n, C, F, h, w) latents -> (n, F, H, W, 3) uint8, decoding frames independently in chunks."""
    batch, channels, frames, height, width = latents.shape
    folded = latents.transpose(1, 2).reshape(batch * frames, channels, height, width)
    folded = folded / vae.config.scaling_factor
    vae_dtype = next(vae.parameters()).dtype
    images = torch.cat([vae.decode(chunk.to(vae_dtype)).sample
                        for chunk in folded.split(decode_batch_size)])
    images = (images.float() / 2 + 0.5).clamp(0, 1)
    array = images.permute(0, 2, 3, 1).cpu().numpy()
    array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    return array.reshape(batch, frames, *array.shape[1:])


def _fold_frames(x: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) -> (b*f, c, 1, h, w): every frame its own one-frame video."""
    batch, channels, frames, height, width = x.shape
    return x.transpose(1, 2).reshape(batch * frames, channels, 1, height, width)


def _unfold_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of `_fold_frames`."""
    _, channels, _, height, width = x.shape
    return x.reshape(batch, -1, channels, height, width).transpose(1, 2)


def _denoise(unet3d: FollowPoseUNet3D, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
             features: list[torch.Tensor] | None, per_frame: bool) -> torch.Tensor:
    if not per_frame:
        return unet3d(latents, timestep, text, features)
    batch, frames = latents.shape[0], latents.shape[2]
    folded_features = None if features is None else [_fold_frames(f) for f in features]
    out = unet3d(_fold_frames(latents), timestep, text.repeat_interleave(frames, dim=0), folded_features)
    return _unfold_frames(out, batch)


def _batches(pose_videos: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Consecutive sample indices grouped by equal pose-video shape, at most `batch_size` each."""
    groups: list[list[int]] = []
    for index, video in enumerate(pose_videos):
        if groups and len(groups[-1]) < batch_size and pose_videos[groups[-1][0]].shape == video.shape:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


@torch.no_grad()
def generate_videos(unet3d: FollowPoseUNet3D, pose_encoder: PoseEncoder, vae, text_encoder, tokenizer,
                    scheduler: DDIMScheduler, prompts: Sequence[str], pose_videos: Sequence[np.ndarray],
                    seeds: Sequence[int], *, num_inference_steps: int = DEFAULT_STEPS,
                    guidance_scale: float = DEFAULT_GUIDANCE, negative_prompt: str = "", batch_size: int = 4,
                    decode_batch_size: int = 16, per_frame: bool = False, shared_noise: bool = False,
                    inject_pose: bool = True, unconditional_pose: bool = True,
                    conditioning_scale: float = 1.0) -> list[np.ndarray]:
    """One uint8 (F, H, W, 3) video per (prompt, pose video, seed), in order.

    pose_videos: uint8 (F, H, W, 3) skeleton maps; H and W must be multiples of the UNet's and the pose
    encoder's spatial factors. guidance_scale <= 1 runs the text branch only (no CFG). `per_frame`,
    `shared_noise`, `inject_pose`, `unconditional_pose` and `conditioning_scale`: see the module docstring.
    """
    prompts, seeds = list(prompts), [int(s) for s in seeds]
    pose_videos = [np.asarray(v) for v in pose_videos]
    if not len(prompts) == len(pose_videos) == len(seeds):
        raise ValueError(f"{len(prompts)} prompts, {len(pose_videos)} pose videos and {len(seeds)} seeds: "
                         "one of each per sample")
    if num_inference_steps < 1 or batch_size < 1 or decode_batch_size < 1:
        raise ValueError("num_inference_steps, batch_size and decode_batch_size must be >= 1")
    if not isinstance(scheduler, DDIMScheduler):
        raise TypeError(f"Follow-Your-Pose samples with DDIM (deterministic, eta 0); got {type(scheduler).__name__}")
    reference = next(unet3d.parameters())
    device, dtype = reference.device, reference.dtype
    latent_channels = int(unet3d.unet2d.config.in_channels)
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    use_cfg = guidance_scale > 1.0

    videos: list[np.ndarray] = []
    for group in _batches(pose_videos, batch_size):
        pose = pose_videos_to_tensor([pose_videos[i] for i in group]).to(device=device, dtype=dtype)
        _, _, frames, height, width = pose.shape
        if height % vae_factor or width % vae_factor:
            raise ValueError(f"pose videos are {height}x{width}; sides must be multiples of the VAE factor "
                             f"{vae_factor}")
        latent_shape = (latent_channels, frames, height // vae_factor, width // vae_factor)
        noise = torch.stack([initial_noise(seeds[i], latent_shape) for i in group])
        if shared_noise:
            noise = noise[:, :, :1].expand(-1, -1, frames, -1, -1)
        latents = noise.to(device=device, dtype=dtype).contiguous() * scheduler.init_noise_sigma

        features = pose_encoder(pose) if inject_pose else None
        if features is not None and conditioning_scale != 1.0:
            features = [feature * conditioning_scale for feature in features]
        text = encode_prompts(text_encoder, tokenizer, [prompts[i] for i in group], device, dtype)
        if use_cfg:
            uncond = encode_prompts(text_encoder, tokenizer, [negative_prompt] * len(group), device, dtype)
            text = torch.cat([uncond, text])
            if features is not None:
                features = [torch.cat([feature if unconditional_pose else torch.zeros_like(feature), feature])
                            for feature in features]

        scheduler.set_timesteps(num_inference_steps, device=device)
        temporal_was_enabled = unet3d.video.temporal_enabled
        unet3d.video.temporal_enabled = temporal_was_enabled and not per_frame
        try:
            for timestep in scheduler.timesteps:
                model_input = torch.cat([latents, latents]) if use_cfg else latents
                model_input = scheduler.scale_model_input(model_input, timestep)
                noise_pred = _denoise(unet3d, model_input, timestep, text, features, per_frame)
                if use_cfg:
                    uncond_pred, text_pred = noise_pred.chunk(2)
                    noise_pred = uncond_pred + guidance_scale * (text_pred - uncond_pred)
                latents = scheduler.step(noise_pred, timestep, latents, eta=0.0).prev_sample
        finally:
            unet3d.video.temporal_enabled = temporal_was_enabled

        for video in decode_latents(vae, latents, decode_batch_size):
            videos.append(check_video(video, frames, (height, width)))
    return videos
