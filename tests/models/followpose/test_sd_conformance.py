"""The sd-config model on the meta device (shapes only) vs the official counts and key names.

Spec: followpose.md §2-3 and §6.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from fypbench.models.followpose.unet3d import (
    SD_UNET_CONFIG,
    FollowPose,
    FollowPoseConfig,
    fypbench_key_to_official,
    official_key_to_fypbench,
    parameter_counts,
    trainable_parameters,
)

# (path of each of the 16 transformer blocks, width)
SD_TRANSFORMER_BLOCKS = (
    [(f"down_blocks.{b}.attentions.{a}.transformer_blocks.0", w) for b, w in ((0, 320), (1, 640), (2, 1280))
     for a in range(2)]
    + [("mid_block.attentions.0.transformer_blocks.0", 1280)]
    + [(f"up_blocks.{b}.attentions.{a}.transformer_blocks.0", w) for b, w in ((1, 1280), (2, 640), (3, 320))
       for a in range(3)]
)


def official_added_keys() -> dict[str, tuple[int, ...]]:
    """The 182 keys the official UNet adds to SD 1.4's, with shapes, written from the spec."""
    keys: dict[str, tuple[int, ...]] = {}
    for path, c in SD_TRANSFORMER_BLOCKS:
        for proj in ("to_q", "to_k", "to_v"):
            keys[f"{path}.attn_temp.{proj}.weight"] = (c, c)
        keys[f"{path}.attn_temp.to_out.0.weight"] = (c, c)
        keys[f"{path}.attn_temp.to_out.0.bias"] = (c,)
        keys[f"{path}.norm_temp.weight"] = (c,)
        keys[f"{path}.norm_temp.bias"] = (c,)
        keys[f"{path}.conv_temporal.down.weight"] = (160, c, 3)
        keys[f"{path}.conv_temporal.up.weight"] = (c, 160, 3)
    widths = (320, 640, 1280, 1280)
    keys["skeleton_adapter.conv_in.weight"] = (320, 192, 3, 3)
    keys["skeleton_adapter.conv_in.bias"] = (320,)
    for k in range(8):
        c = widths[k // 2]
        keys[f"skeleton_adapter.body.{k}.block1.weight"] = (c, c, 3, 3)
        keys[f"skeleton_adapter.body.{k}.block1.bias"] = (c,)
        keys[f"skeleton_adapter.body.{k}.block2.weight"] = (c, c, 1, 1)
        keys[f"skeleton_adapter.body.{k}.block2.bias"] = (c,)
    for k, (c_in, c_out) in ((2, (320, 640)), (4, (640, 1280))):
        keys[f"skeleton_adapter.body.{k}.in_conv.weight"] = (c_out, c_in, 1, 1)
        keys[f"skeleton_adapter.body.{k}.in_conv.bias"] = (c_out,)
    return keys


@pytest.fixture(scope="module")
def sd_model() -> FollowPose:
    return FollowPose.from_unet_config(SD_UNET_CONFIG, FollowPoseConfig(), device="meta")


def test_official_parameter_counts(sd_model):
    assert parameter_counts(sd_model) == {
        "pose_encoder": 77_369_280, "unet2d": 859_520_964, "attn_temp": 49_574_080, "norm_temp": 24_960,
        "conv_temporal": 11_980_800, "pose_projections": 0, "total": 998_470_084}


def test_official_key_names_and_shapes_through_the_converter(sd_model):
    with torch.device("meta"):
        plain = UNet2DConditionModel(**SD_UNET_CONFIG)
    expected = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    added = official_added_keys()
    assert len(added) == 182
    assert sum(".attn_temp." in k for k in added) == 80 and sum(".norm_temp." in k for k in added) == 32
    assert sum(".conv_temporal." in k for k in added) == 32
    assert sum(k.startswith("skeleton_adapter.") for k in added) == 38
    assert not set(added) & set(expected)
    expected.update(added)

    ours = sd_model.state_dict()
    official = {fypbench_key_to_official(k): tuple(v.shape) for k, v in ours.items()}
    assert None not in official
    assert official == expected
    assert all(official_key_to_fypbench(fypbench_key_to_official(k)) == k for k in ours)


def test_stage_trainable_sets(sd_model):
    stage2 = trainable_parameters(sd_model, 2)
    assert len(stage2) == 144
    assert sum(p.numel() for p in stage2.values()) == 86_335_680
    by_kind = {kind: sum(p.numel() for n, p in stage2.items() if f".{kind}." in n)
               for kind in ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal")}
    assert by_kind == {"attn1.to_q": 12_390_400, "attn2.to_q": 12_390_400, "attn_temp": 49_574_080,
                       "conv_temporal": 11_980_800}
    stage1 = trainable_parameters(sd_model, 1)
    assert len(stage1) == 38 and sum(p.numel() for p in stage1.values()) == 77_369_280
