"""Sampling on the base model's random `debug` components: seeding, batching, CFG with pose in both halves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from fypbench.base import build_components
from fypbench.models.followpose.pipeline import generate_videos
from fypbench.models.followpose.pose_encoder import pose_videos_to_tensor
from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig
from fypbench.seeding import numpy_rng

FRAMES, SIZE = 3, 16


@pytest.fixture(scope="module")
def parts():
    components = build_components("debug", seed=0)
    model = FollowPose.from_unet2d(components.unet, FollowPoseConfig(conv_temporal_rank=4, pose_downscale_factor=2))
    return components, model.eval()


def pose_video(index: int) -> np.ndarray:
    rng = numpy_rng("test-followpose-pipeline", index)
    video = np.zeros((FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    for f in range(FRAMES):
        y, x = rng.integers(0, SIZE - 4, size=2)
        video[f, y:y + 4, x:x + 2] = (0, 255, 0)
    return video


def run(parts, prompts, poses, seeds, **kwargs):
    components, model = parts
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("guidance_scale", 7.5)
    return generate_videos(model.unet, model.pose_encoder, components.vae, components.text_encoder,
                           components.tokenizer, components.scheduler, prompts, poses, seeds, **kwargs)


def test_videos_are_seeded_per_sample_and_independent_of_batching(parts):
    prompts = ["a man on the beach", "a robot in the park", "a man on the beach"]
    poses = [pose_video(0), pose_video(1), pose_video(0)]
    seeds = [11, 12, 13]
    batched = run(parts, prompts, poses, seeds, batch_size=3)
    assert len(batched) == 3
    assert all(v.dtype == np.uint8 and v.shape == (FRAMES, SIZE, SIZE, 3) for v in batched)
    single = [run(parts, [p], [v], [s], batch_size=1)[0] for p, v, s in zip(prompts, poses, seeds)]
    for a, b in zip(batched, single):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert all(np.array_equal(a, b) for a, b in zip(run(parts, prompts, poses, seeds, batch_size=3), batched))
    assert not np.array_equal(batched[0], batched[2])  # same prompt and pose, different seed


def test_pose_is_encoded_once_and_injected_in_both_cfg_halves(parts):
    _, model = parts
    calls, encodes = [], []
    hooks = [model.unet.register_forward_pre_hook(lambda m, args: calls.append(args)),
             model.pose_encoder.register_forward_hook(lambda m, args, out: encodes.append(out))]
    try:
        run(parts, ["a", "b"], [pose_video(2), pose_video(3)], [1, 2], batch_size=2, num_inference_steps=3)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(encodes) == 1 and len(calls) == 3
    expected = model.pose_encoder(pose_videos_to_tensor([pose_video(2), pose_video(3)]))
    for sample, timestep, text, features in calls:
        assert sample.shape == (4, 4, FRAMES, 8, 8) and text.shape[0] == 4
        for feature, reference in zip(features, expected):
            uncond, cond = feature.chunk(2)
            assert torch.equal(uncond, cond)
            torch.testing.assert_close(cond, reference)
            assert cond.abs().sum() > 0


def test_pose_and_guidance_change_the_video(parts):
    base = run(parts, ["a man"], [pose_video(4)], [5])[0]
    assert not np.array_equal(base, run(parts, ["a man"], [pose_video(5)], [5])[0])
    no_cfg = run(parts, ["a man"], [pose_video(4)], [5], guidance_scale=1.0)[0]
    assert not np.array_equal(base, no_cfg)


def test_bad_arguments(parts):
    components, model = parts
    with pytest.raises(ValueError, match="one of each per sample"):
        run(parts, ["a", "b"], [pose_video(0)], [1, 2])
    with pytest.raises(ValueError, match="uint8"):
        run(parts, ["a"], [pose_video(0).astype(np.float32)], [1])
    with pytest.raises(TypeError, match="DDIM"):
        generate_videos(model.unet, model.pose_encoder, components.vae, components.text_encoder,
                        components.tokenizer, DDPMScheduler(), ["a"], [pose_video(0)], [1])


def test_pose_guidance_zeroes_the_unconditional_halfs_pose_only(parts):
    _, model = parts
    calls = []
    hook = model.unet.register_forward_pre_hook(lambda m, args: calls.append(args))
    try:
        guided = run(parts, ["a man"], [pose_video(6)], [7], unconditional_pose=False)[0]
    finally:
        hook.remove()
    for _, _, _, features in calls:
        for feature in features:
            uncond, cond = feature.chunk(2)
            assert not uncond.any() and cond.abs().sum() > 0
    assert not np.array_equal(guided, run(parts, ["a man"], [pose_video(6)], [7])[0])
    # without CFG there is no unconditional half: the option changes nothing
    no_cfg = dict(guidance_scale=1.0)
    assert np.array_equal(run(parts, ["a man"], [pose_video(6)], [7], unconditional_pose=False, **no_cfg)[0],
                          run(parts, ["a man"], [pose_video(6)], [7], **no_cfg)[0])


def test_conditioning_scale_multiplies_the_injected_pose_features(parts):
    _, model = parts
    calls = []
    hook = model.unet.register_forward_pre_hook(lambda m, args: calls.append(args[3]))
    try:
        run(parts, ["a man"], [pose_video(6)], [7])
        run(parts, ["a man"], [pose_video(6)], [7], conditioning_scale=2.5)
    finally:
        hook.remove()
    half = len(calls) // 2
    for plain, scaled in zip(calls[:half], calls[half:]):
        for a, b in zip(plain, scaled):
            assert torch.allclose(b, 2.5 * a) and a.abs().sum() > 0
    assert np.array_equal(run(parts, ["a man"], [pose_video(6)], [7], conditioning_scale=1.0)[0],
                          run(parts, ["a man"], [pose_video(6)], [7])[0])
    # scale 0 injects zeros: residual injection adds nothing, i.e. the model without pose
    assert np.array_equal(run(parts, ["a man"], [pose_video(6)], [7], conditioning_scale=0.0)[0],
                          run(parts, ["a man"], [pose_video(6)], [7], inject_pose=False)[0])
