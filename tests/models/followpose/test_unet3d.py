"""Inflated UNet on tiny random configs: 2D equivalence, pose injection semantics, checkpoints, freezing."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from fypbench.errors import UserError
from fypbench.models.followpose.inflate import InflationOptions, inflate_unet2d
from fypbench.models.followpose.layers import VideoContext
from fypbench.models.followpose.unet3d import (
    FollowPose,
    FollowPoseConfig,
    FollowPoseUNet3D,
    freeze_for_stage,
    load_followpose,
    load_official_checkpoint,
    save_followpose,
    to_official_state_dicts,
    trainable_parameters,
)
from tests.models.followpose.tiny import TINY_CONFIG, tiny_followpose, tiny_unet2d, video_inputs

FRAMES = 3
NO_TEMPORAL = replace(TINY_CONFIG, temporal_attention=False, conv_temporal=False)


def fold(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).flatten(0, 1)


def assert_frames_equal_2d(out: torch.Tensor, expected: torch.Tensor) -> None:
    for i in range(out.shape[2]):
        torch.testing.assert_close(out[:, :, i], expected, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_identical_frames_without_temporal_modules_or_pose_equal_the_2d_unet():
    unet2d = tiny_unet2d()
    reference = copy.deepcopy(unet2d)
    model = FollowPoseUNet3D(unet2d, NO_TEMPORAL).eval()
    latents, timesteps, text, _ = video_inputs(frames=FRAMES, identical_frames=True)
    assert_frames_equal_2d(model(latents, timesteps, text), reference(latents[:, :, 0], timesteps, text).sample)


@torch.no_grad()
def test_tune_a_video_inflation_zero_out_is_2d_at_init_on_identical_frames():
    """The reusable inflation with TAV's options (attn_temp.to_out zero, conv_temporal identity) is 2D at init."""
    unet2d = tiny_unet2d(1)
    reference = copy.deepcopy(unet2d)
    context = VideoContext()
    inflate_unet2d(unet2d, context, InflationOptions(zero_init_temporal_out=True, conv_temporal_rank=4))
    latents, timesteps, text, _ = video_inputs(frames=FRAMES, identical_frames=True)
    context.set(FRAMES)
    out = unet2d(fold(latents), timesteps.repeat_interleave(FRAMES), text.repeat_interleave(FRAMES, 0)).sample
    expected = reference(latents[:, :, 0], timesteps, text).sample
    assert_frames_equal_2d(out.unflatten(0, (2, FRAMES)).transpose(1, 2), expected)
    with pytest.raises(ValueError, match="already inflated"):
        inflate_unet2d(unet2d, context)


@torch.no_grad()
def test_pooled_group_norm_matters_on_different_frames_only():
    latents, timesteps, text, _ = video_inputs(frames=FRAMES)
    pooled = FollowPoseUNet3D(tiny_unet2d(), NO_TEMPORAL).eval()
    per_frame = FollowPoseUNet3D(tiny_unet2d(), replace(NO_TEMPORAL, pooled_group_norm=False)).eval()
    assert not torch.allclose(pooled(latents, timesteps, text), per_frame(latents, timesteps, text), atol=1e-4)
    same, _, _, _ = video_inputs(frames=FRAMES, identical_frames=True)
    torch.testing.assert_close(pooled(same, timesteps, text), per_frame(same, timesteps, text),
                               atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_conv_temporal_is_identity_at_init_inside_the_model():
    latents, timesteps, text, _ = video_inputs(frames=FRAMES)
    with_conv = FollowPoseUNet3D(tiny_unet2d(), TINY_CONFIG).eval()
    without = FollowPoseUNet3D(tiny_unet2d(), replace(TINY_CONFIG, conv_temporal=False)).eval()
    assert sum(1 for n, _ in with_conv.named_parameters() if ".conv_temporal." in n) == 2 * 16
    out = with_conv(latents, timesteps, text)
    torch.testing.assert_close(out, without(latents, timesteps, text), atol=1e-6, rtol=1e-5)
    # the temporal attention is not the identity at init (official: TAV's zero-init is commented out)
    no_temporal = FollowPoseUNet3D(tiny_unet2d(), NO_TEMPORAL).eval()
    assert not torch.allclose(out, no_temporal(latents, timesteps, text), atol=1e-4)
    with_conv.video.temporal_enabled = False
    torch.testing.assert_close(with_conv(latents, timesteps, text), no_temporal(latents, timesteps, text))


@torch.no_grad()
def test_pose_changes_the_output_and_zero_pose_is_not_no_pose():
    model = tiny_followpose()
    latents, timesteps, text, pose = video_inputs(frames=FRAMES)
    with_pose = model(latents, timesteps, text, pose)
    zero_pose = model(latents, timesteps, text, torch.zeros_like(pose))
    no_pose = model(latents, timesteps, text, None)
    assert not torch.allclose(with_pose, zero_pose, atol=1e-4)
    assert not torch.allclose(zero_pose, no_pose, atol=1e-4)  # encoder(0) != 0: the biases


@torch.no_grad()
def test_residual_injection_equals_diffusers_down_intrablock_additional_residuals():
    model = tiny_followpose()
    latents, timesteps, text, pose = video_inputs(frames=FRAMES)
    features = model.encode_pose(pose)
    ours = model.unet(latents, timesteps, text, features)
    model.unet.set_video(FRAMES, None)  # frames set, nothing injected by our hooks
    diffusers_path = model.unet.unet2d(fold(latents), timesteps.repeat_interleave(FRAMES),
                                       text.repeat_interleave(FRAMES, 0),
                                       down_intrablock_additional_residuals=[fold(f) for f in features]).sample
    torch.testing.assert_close(ours, diffusers_path.unflatten(0, (2, FRAMES)).transpose(1, 2),
                               atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_concat_at_init_equals_no_injection():
    latents, timesteps, text, pose = video_inputs(frames=FRAMES)
    concat = tiny_followpose(replace(TINY_CONFIG, injection="concat"))
    residual = tiny_followpose(TINY_CONFIG)
    projection = concat.unet.pose_projections[1].proj
    assert projection.weight.shape == (16, 32, 1, 1)
    expected = residual(latents, timesteps, text, None)
    torch.testing.assert_close(concat(latents, timesteps, text, pose), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(concat(latents, timesteps, text, None), expected, atol=1e-6, rtol=1e-5)
    projection.weight[:, 16:].normal_(std=0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(concat(latents, timesteps, text, pose), expected, atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_depth_k_injects_into_the_first_k_down_blocks_only(depth):
    model = tiny_followpose(replace(TINY_CONFIG, depth=depth))
    latents, timesteps, text, pose = video_inputs(frames=2)
    features = model.encode_pose(pose)
    base = model.unet(latents, timesteps, text, features)
    for scale in range(4):
        changed = list(features)
        changed[scale] = features[scale] + 1.0
        out = model.unet(latents, timesteps, text, changed)
        assert torch.allclose(out, base) == (scale >= depth), scale


@torch.no_grad()
def test_bad_inputs_are_refused():
    model = tiny_followpose()
    latents, timesteps, text, pose = video_inputs(frames=2)
    with pytest.raises(ValueError, match="does not fit"):
        model.unet(latents, timesteps, text, [f[..., :2, :2] for f in model.encode_pose(pose)])
    with pytest.raises(ValueError, match="both CFG halves"):
        model.unet(torch.cat([latents, latents]), 10, torch.cat([text, text]), model.encode_pose(pose))
    with pytest.raises(ValueError, match="timestep"):
        model.unet(latents, torch.tensor([1, 2, 3]), text)
    with pytest.raises(UserError, match="depth 5 exceeds"):
        tiny_followpose(replace(TINY_CONFIG, depth=5))
    with pytest.raises(UserError, match="injection"):
        FollowPoseConfig(injection="add")
    with pytest.raises(ValueError, match="conv_temporal_rank"):
        tiny_followpose(replace(TINY_CONFIG, conv_temporal_rank=9))


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny_followpose()
    checkpointed = copy.deepcopy(model)
    checkpointed.unet.unet2d.enable_gradient_checkpointing()
    latents, timesteps, text, pose = video_inputs(frames=2)
    grads = []
    for m in (model, checkpointed):
        m.train()
        m(latents, timesteps, text, pose).square().mean().backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 100
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4)


@torch.no_grad()
def test_official_checkpoint_round_trip_and_loud_report():
    source = tiny_followpose(init_seed=1, unet_seed=1)
    unet_sd, pose_sd = to_official_state_dicts(source)
    # widths (8, 16, 16, 16): one in_conv (8 -> 16), so 36 adapter tensors (sd: 38, two in_convs)
    assert sum(k.startswith("skeleton_adapter.") for k in unet_sd) == len(pose_sd) == 36

    target = tiny_followpose(init_seed=2, unet_seed=2)
    report = load_official_checkpoint(target, {k: v for k, v in unet_sd.items()
                                               if not k.startswith("skeleton_adapter.")}, pose_sd)
    assert report.ok and report.loaded == len(target.state_dict())
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(value, loaded[key]), key

    target = tiny_followpose(init_seed=2, unet_seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    broken = {k: v for k, v in unet_sd.items() if "attn_temp.to_q" not in k}
    broken["down_blocks.0.attentions.0.transformer_blocks.0.attn_extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match=r"MISSING.*UNEXPECTED"):
        load_official_checkpoint(target, broken, pose_sd)
    after = target.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # strict: nothing loaded
    with pytest.warns(UserWarning, match="16 MISSING"):
        report = load_official_checkpoint(target, broken, pose_sd, strict=False)
    assert len(report.missing) == 16 and report.unexpected == [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn_extra.weight"]

    conflicting = {k: v + 1 for k, v in pose_sd.items()}
    with pytest.warns(UserWarning, match="checkpoint wins"):
        report = load_official_checkpoint(target, unet_sd, conflicting)
    assert len(report.adapter_conflicts) == 36
    assert torch.equal(target.pose_encoder.adapter.conv_in.weight, source.pose_encoder.adapter.conv_in.weight)


def test_save_load_round_trip(tmp_path):
    model = tiny_followpose(replace(TINY_CONFIG, injection="concat", depth=3, pose_zero_init=True), init_seed=4)
    with torch.no_grad():
        model.unet.pose_projections[0].proj.weight.add_(0.1)
    save_followpose(model, tmp_path / "fyp")
    loaded = load_followpose(tmp_path / "fyp").eval()
    assert loaded.config == model.config
    latents, timesteps, text, pose = video_inputs(frames=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(latents, timesteps, text, pose), model(latents, timesteps, text, pose))
    with pytest.raises(UserError, match="not a Follow-Your-Pose folder"):
        load_followpose(tmp_path / "missing")


def test_from_pretrained_2d_loads_a_local_diffusers_folder(tmp_path):
    unet2d = tiny_unet2d(5)
    unet2d.save_pretrained(tmp_path / "sd" / "unet")
    model = FollowPose.from_pretrained_2d(tmp_path / "sd", TINY_CONFIG)
    loaded = model.unet.unet2d.state_dict()
    for key, value in unet2d.state_dict().items():
        assert torch.equal(loaded[key], value), key
    with pytest.raises(UserError, match="cannot load a UNet2DConditionModel offline"):
        FollowPose.from_pretrained_2d(tmp_path / "nowhere", TINY_CONFIG)


@pytest.mark.parametrize("stage", [1, 2])
def test_frozen_tensors_do_not_change_after_an_optimiser_step(stage):
    model = tiny_followpose().train()
    trainable = freeze_for_stage(model, stage)
    assert trainable.keys() == trainable_parameters(model, stage).keys()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                                  weight_decay=1e-2)
    latents, timesteps, text, pose = video_inputs(frames=2)
    model(latents, timesteps, text, pose if stage == 1 else None).square().mean().backward()
    optimizer.step()
    after = dict(model.named_parameters())
    for name, value in before.items():
        if name not in trainable:
            assert after[name].grad is None and torch.equal(after[name], value), name
    changed = [name for name in trainable if not torch.equal(after[name], before[name])]
    if stage == 1:
        assert all(name.startswith("pose_encoder.") for name in trainable)
        assert len(changed) == len(trainable) == 36
    else:
        kinds = {kind: sum(f".{kind}." in n for n in trainable)
                 for kind in ("attn1.to_q", "attn2.to_q", "attn_temp", "conv_temporal")}
        assert kinds == {"attn1.to_q": 16, "attn2.to_q": 16, "attn_temp": 16 * 5, "conv_temporal": 16 * 2}
        assert len(trainable) == 144 and not any(".norm_temp." in n for n in trainable)
        assert any(".attn_temp." in n for n in changed) and any(".conv_temporal.up." in n for n in changed)
