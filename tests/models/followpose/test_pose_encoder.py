"""Pose encoder: shapes, official key conversion, parity with the official T2I-Adapter computation, zero_init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fypbench.models.followpose.pose_encoder import (
    SD_POSE_PARAMETERS,
    PoseEncoder,
    PoseEncoderConfig,
    convert_official_pose_encoder,
    pose_videos_to_tensor,
    to_official_pose_encoder,
)
from tests.models.followpose.tiny import generator

TINY = PoseEncoderConfig(channels=(8, 16, 24, 24), downscale_factor=2)


def official_adapter_forward(state: dict[str, torch.Tensor], images: torch.Tensor, scales: int,
                             downscale: int, num_res_blocks: int = 2) -> list[torch.Tensor]:
    """The official `Adapter(cin, channels, nums_rb, ksize=1, sk=True, use_conv=False)` forward, written from
    followpose.md §3 against official key names: unshuffle, conv_in, then body.k = [AvgPool2d(2) if k starts a
    scale > 0] -> [1x1 in_conv if present] -> x + block2(relu(block1(x))); one output per scale."""
    x = F.conv2d(F.pixel_unshuffle(images, downscale), state["conv_in.weight"], state["conv_in.bias"], padding=1)
    outputs = []
    for scale in range(scales):
        for r in range(num_res_blocks):
            k = scale * num_res_blocks + r
            if scale > 0 and r == 0:
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
            if f"body.{k}.in_conv.weight" in state:
                x = F.conv2d(x, state[f"body.{k}.in_conv.weight"], state[f"body.{k}.in_conv.bias"])
            h = F.relu(F.conv2d(x, state[f"body.{k}.block1.weight"], state[f"body.{k}.block1.bias"], padding=1))
            x = x + F.conv2d(h, state[f"body.{k}.block2.weight"], state[f"body.{k}.block2.bias"])
        outputs.append(x)
    return outputs


def official_names(channels: tuple[int, ...], downscale: int, in_channels: int = 3) -> dict[str, tuple]:
    """The official pose_encoder.pth names and shapes (followpose.md §3)."""
    names = {"conv_in.weight": (channels[0], in_channels * downscale**2, 3, 3), "conv_in.bias": (channels[0],)}
    for scale, width in enumerate(channels):
        for r in range(2):
            k = 2 * scale + r
            names[f"body.{k}.block1.weight"] = (width, width, 3, 3)
            names[f"body.{k}.block1.bias"] = (width,)
            names[f"body.{k}.block2.weight"] = (width, width, 1, 1)
            names[f"body.{k}.block2.bias"] = (width,)
        if scale > 0 and channels[scale - 1] != width:
            names[f"body.{2 * scale}.in_conv.weight"] = (width, channels[scale - 1], 1, 1)
            names[f"body.{2 * scale}.in_conv.bias"] = (width,)
    return names


def test_sd_pose_encoder_has_the_official_38_tensors_and_77m_parameters():
    encoder = PoseEncoder(PoseEncoderConfig(), device="meta")
    assert sum(p.numel() for p in encoder.parameters()) == SD_POSE_PARAMETERS == 77_369_280
    official, unmapped = to_official_pose_encoder(encoder.state_dict())
    assert unmapped == []
    expected = official_names((320, 640, 1280, 1280), 8)
    assert len(expected) == 38
    assert {k: tuple(v.shape) for k, v in official.items()} == expected
    assert "body.2.in_conv.weight" in official and "body.4.in_conv.weight" in official
    assert "body.6.in_conv.weight" not in official


@torch.no_grad()
def test_parity_with_the_official_computation_on_random_weights():
    encoder = PoseEncoder(TINY, init_seed=3)
    official, _ = to_official_pose_encoder(encoder.state_dict())
    assert set(official) == set(official_names(TINY.channels, TINY.downscale_factor))
    video = torch.rand(2, 3, 3, 32, 32, generator=generator("pose-video"))
    features = encoder(video)
    images = video.transpose(1, 2).flatten(0, 1)
    expected = official_adapter_forward(official, images, len(TINY.channels), TINY.downscale_factor)
    for s, (ours, ref) in enumerate(zip(features, expected)):
        assert ours.shape == (2, TINY.channels[s], 3, 16 >> s, 16 >> s)
        torch.testing.assert_close(ours, ref.unflatten(0, (2, 3)).transpose(1, 2), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_official_state_dict_round_trip_and_frames_are_independent():
    source = PoseEncoder(TINY, init_seed=1)
    official, _ = to_official_pose_encoder(source.state_dict())
    converted, unmapped = convert_official_pose_encoder({**official, "stray.weight": torch.zeros(1)})
    assert unmapped == ["stray.weight"]
    target = PoseEncoder(TINY, init_seed=2)
    assert not torch.equal(target.adapter.conv_in.weight, source.adapter.conv_in.weight)
    target.load_state_dict(converted, strict=True)
    video = torch.rand(1, 3, 4, 32, 32, generator=generator("frames"))
    whole = target(video)
    for f in range(4):
        single = target(video[:, :, f:f + 1])
        for a, b in zip(whole, single):
            torch.testing.assert_close(a[:, :, f:f + 1], b, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_zero_init_outputs_zero_and_adds_unofficial_keys():
    encoder = PoseEncoder(PoseEncoderConfig(channels=TINY.channels, downscale_factor=2, zero_init=True))
    video = torch.rand(1, 3, 2, 32, 32, generator=generator("zero"))
    assert all(torch.count_nonzero(f) == 0 for f in encoder(video))
    _, unmapped = to_official_pose_encoder(encoder.state_dict())
    assert sorted(unmapped) == sorted(f"zero_convs.{s}.{p}" for s in range(4) for p in ("weight", "bias"))
    default = PoseEncoder(TINY)
    assert all(torch.count_nonzero(f) > 0 for f in default(video))


@torch.no_grad()
def test_state_dict_is_a_diffusers_t2i_adapter_state_dict():
    from diffusers import T2IAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapter = T2IAdapter(in_channels=3, channels=list(TINY.channels), num_res_blocks=2,
                             downscale_factor=TINY.downscale_factor, adapter_type="full_adapter").eval()
    encoder = PoseEncoder(TINY)
    encoder.load_state_dict(adapter.state_dict(), strict=True)
    images = torch.rand(2, 3, 32, 32, generator=generator("t2i"))
    for ours, theirs in zip(encoder(images[:, :, None]), adapter(images)):
        torch.testing.assert_close(ours[:, :, 0], theirs)


def test_input_validation_and_uint8_conversion():
    encoder = PoseEncoder(TINY)
    with pytest.raises(ValueError, match="multiples of 16"):
        encoder(torch.zeros(1, 3, 2, 24, 32))
    with pytest.raises(ValueError, match=r"\(batch, 3, frames, H, W\)"):
        encoder(torch.zeros(1, 2, 3, 32, 32))
    frames = np.zeros((2, 4, 6, 3), dtype=np.uint8)
    frames[1, 2, 3] = (255, 0, 51)
    tensor = pose_videos_to_tensor([frames])
    assert tensor.shape == (1, 3, 2, 4, 6)
    assert tensor[0, :, 1, 2, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(ValueError, match="uint8"):
        pose_videos_to_tensor([frames.astype(np.float32)])
    with pytest.raises(ValueError, match="differs"):
        pose_videos_to_tensor([frames, frames[:1]])
