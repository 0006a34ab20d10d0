"""Follow-Your-Pose training recipes on the debug presets (a random debug base saved to a temporary folder):
OMP_NUM_THREADS=1 python -m pytest tests/models/followpose/test_train.py -q"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from fypbench.base import build_components, load_base, save_pipeline
from fypbench.errors import UserError
from fypbench.models.followpose import train as recipe
from fypbench.models.followpose.generator import base_identity, build_from_deltas, read_deltas, save_deltas
from fypbench.models.followpose.pose_encoder import pose_videos_to_tensor
from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig
from fypbench.training.common import load_config, per_sample_randn
from fypbench.world.mini.skeleton import draw_keypose_video

STEPS = 16


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base") / "pipeline"
    save_pipeline(build_components("debug", seed=3), folder, manifest={"note": "random debug base for tests"})
    return folder


def overrides(tmp_path, base, stage: int, **extra):
    values = {"model.base": str(base), "data.cache_dir": str(tmp_path / f"cache{stage}")}
    if stage == 2:
        values["model.stage1_dir"] = str(tmp_path / "stage1" / "followpose")
    return {**values, **extra}


def run_capturing(stage: int, output_dir, values, **kwargs):
    """Run a stage and capture the full trained model's state as it is exported."""
    captured = {}
    original = recipe.save_deltas

    def capture(model, folder, **kw):
        captured["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        captured["config"] = model.config
        return original(model, folder, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "save_deltas", capture)
        export = recipe.run("debug", output_dir, overrides=values, stage=stage, **kwargs)
    return export, captured


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base):
    tmp_path = tmp_path_factory.mktemp("followpose")
    s1 = overrides(tmp_path, base, 1, **{"train.steps": STEPS})
    export1, state1 = run_capturing(1, tmp_path / "stage1", s1)
    s2 = overrides(tmp_path, base, 2, **{"train.steps": STEPS})
    export2, state2 = run_capturing(2, tmp_path / "stage2", s2)
    return {"tmp": tmp_path, "s1": s1, "s2": s2, "export1": export1, "export2": export2, "state1": state1,
            "state2": state2}


def initial_model(base, config: FollowPoseConfig, seed: int = 0) -> FollowPose:
    """The model a stage starts from (seeded pose encoder and temporal modules on the base UNet)."""
    return FollowPose.from_unet2d(load_base(base).unet, config, init_seed=seed).eval()


@torch.no_grad()
def denoising_error(model: FollowPose, base, latents: torch.Tensor, captions: list[str],
                    pose: torch.Tensor | None) -> float:
    components = load_base(base)
    scheduler = components.noise_scheduler()
    timesteps = torch.linspace(100, 900, len(latents)).long()
    noise = per_sample_randn(0, "test-noise", range(len(latents)), latents.shape[1:])
    noisy = scheduler.add_noise(latents, noise, timesteps)
    text = components.encode_prompts(captions)
    return float((model.eval()(noisy, timesteps, text, pose) - noise).pow(2).mean())


def cached_batch(trained, stage: int, count: int = 16):
    tmp = trained["tmp"]
    [path] = (tmp / f"cache{stage}").glob("latents-*.npz")  # one encoding per (data, VAE), beside the data
    latents = np.load(path)
    scaling = float(load_base(trained["s1"]["model.base"]).vae.config.scaling_factor)
    mean = torch.from_numpy(latents["mean"][:count].astype(np.float32)) * scaling
    captions = json.loads((tmp / f"cache{stage}" / "captions.json").read_text())[:count]
    pose = None
    if stage == 1:
        keypoints = np.load(tmp / "cache1" / "keypoints.npy")[:count]
        pose = pose_videos_to_tensor([draw_keypose_video(k, 16) for k in keypoints])
    return mean, captions, pose


def test_stage1_debug_learns_and_exports_the_pose_encoder(trained, base):
    config = trained["state1"]["config"]
    assert not config.temporal_attention and not config.conv_temporal  # stage 1 = SD + pose encoder
    latents, captions, pose = cached_batch(trained, 1)
    assert latents.shape[2] == 1 and pose.shape == (16, 3, 1, 16, 16)
    deltas = read_deltas(trained["export1"])
    trained_model = build_from_deltas(load_base(base).unet, deltas, (1,))
    before = denoising_error(initial_model(base, config), base, latents, captions, pose)
    after = denoising_error(trained_model, base, latents, captions, pose)
    assert after < 0.98 * before, (before, after)
    assert deltas.stages == (1,) and all(k.startswith("pose_encoder.") for k in deltas.tensors)
    lines = (trained["tmp"] / "stage1" / "losses.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    assert len(losses) == STEPS // 2 and np.mean(losses[-3:]) < np.mean(losses[:3])
    manifest = json.loads((trained["export1"] / "manifest.json").read_text())
    assert manifest["training"]["command"].startswith("fypbench train followpose --stage 1 --world mini")
    assert manifest["base"]["version"] == base_identity(base)


def test_stage2_debug_learns_without_pose(trained, base):
    config = trained["state2"]["config"]
    assert config.temporal_attention and config.conv_temporal and config.conv_temporal_rank == 4
    latents, captions, _ = cached_batch(trained, 2)
    assert latents.shape[2] == 3
    deltas = read_deltas(trained["export2"])
    stage1 = read_deltas(trained["export1"])
    start = build_from_deltas(load_base(base).unet, stage1, (1,), config=config)
    trained_model = build_from_deltas(load_base(base).unet, deltas, (1, 2))
    before = denoising_error(start, base, latents, captions, None)
    after = denoising_error(trained_model, base, latents, captions, None)
    assert after < 0.98 * before, (before, after)
    assert deltas.stages == (1, 2)


def test_frozen_tensors_are_unchanged_by_training(trained, base):
    base_unet = {f"unet.unet2d.{k}": v for k, v in load_base(base).unet.state_dict().items()}
    # stage 1: everything but the pose encoder is the base's
    state1 = trained["state1"]["state"]
    changed1 = [k for k, v in state1.items() if k in base_unet and not torch.equal(v, base_unet[k])]
    assert changed1 == [] and sum(k.startswith("pose_encoder.") for k in state1) == 36
    init1 = initial_model(base, trained["state1"]["config"]).state_dict()
    assert all(not torch.equal(state1[k], init1[k]) for k in state1 if k.startswith("pose_encoder."))
    # stage 2: only attn1.to_q, attn2.to_q, attn_temp, conv_temporal move; pose encoder = stage 1's export
    state2 = trained["state2"]["state"]
    for key, value in state2.items():
        if key.startswith("pose_encoder."):
            assert torch.equal(value, state1[key]), key
        elif key in base_unet:
            trained_key = ".attn1.to_q." in key or ".attn2.to_q." in key
            assert torch.equal(value, base_unet[key]) != trained_key, key
    init2 = initial_model(base, trained["state2"]["config"]).state_dict()
    norm_temp = [k for k in state2 if ".norm_temp." in k]
    temporal = [k for k in state2 if ".attn_temp." in k or ".conv_temporal." in k]
    assert len(norm_temp) == 32 and len(temporal) == 16 * 5 + 16 * 2
    assert all(torch.equal(state2[k], init2[k]) for k in norm_temp)
    assert all(not torch.equal(state2[k], init2[k]) for k in temporal)


def test_exported_deltas_round_trip(trained, base, tmp_path):
    deltas = read_deltas(trained["export2"])
    model = build_from_deltas(load_base(base).unet, deltas, (1, 2))
    state = model.state_dict()
    for key, value in trained["state2"]["state"].items():
        assert torch.equal(state[key], value), key
    # float16 export: the same tensors rounded to half precision, and nothing but the deltas stored
    half = save_deltas(model, tmp_path / "half", stages=(1, 2), base_version=deltas.base_version, float16=True)
    half_deltas = read_deltas(half)
    assert half_deltas.tensors.keys() == deltas.tensors.keys()
    assert all(t.dtype == torch.float16 for t in half_deltas.tensors.values())
    for key, value in deltas.tensors.items():
        assert torch.equal(half_deltas.tensors[key], value.half()), key
    assert not any(k.startswith("unet.unet2d.") and not (".attn1.to_q." in k or ".attn2.to_q." in k
                                                         or ".attn_temp." in k or ".norm_temp." in k
                                                         or ".conv_temporal." in k) for k in deltas.tensors)
    (half / "deltas.safetensors").write_bytes(b"corrupt")
    with pytest.raises(UserError, match="sha256 does not match"):
        read_deltas(half)


def test_resume_continues_exactly(base, tmp_path):
    values = overrides(tmp_path, base, 1)
    interrupted = tmp_path / "interrupted"
    recipe.run("debug", interrupted, overrides={**values, "train.steps": 4}, stage=1)
    resumed = recipe.run("debug", interrupted, overrides={**values, "train.steps": 6}, stage=1)
    log = (interrupted / "train.log").read_text()
    assert "resumed from" in log and "at step 4" in log
    steps = [json.loads(line)["step"] for line in (interrupted / "losses.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    straight = recipe.run("debug", tmp_path / "straight", overrides={**values, "train.steps": 6}, stage=1)
    a, b = read_deltas(resumed).tensors, read_deltas(straight).tensors
    # bitwise: the latents cache is read in C order in every session (a first session's freshly encoded latents in
    # another memory layout made the resumed run round differently)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((interrupted / "losses.jsonl").read_text().splitlines()[-1])["loss"] == \
        json.loads((tmp_path / "straight" / "losses.jsonl").read_text().splitlines()[-1])["loss"]
    checkpoint = torch.load(interrupted / "checkpoint.pt", weights_only=True)
    assert set(checkpoint["modules"]["objective"]) == set(a)  # only the trained tensors are checkpointed
    with pytest.raises(UserError, match="different config.*train.lr"):
        recipe.run("debug", interrupted, overrides={**values, "train.steps": 8, "train.lr": 1e-4}, stage=1)


def test_resume_on_a_changed_base_is_refused(base, tmp_path):
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    values = {**overrides(tmp_path, copy, 1), "train.steps": 2}
    recipe.run("debug", tmp_path / "out", overrides=values, stage=1)
    manifest = copy / "manifest.json"  # the same folder now holds another base (its identity changed)
    manifest.write_text(manifest.read_text().replace('"version": "', '"version": "retrained-', 1))
    with pytest.raises(UserError, match="different config.*model.base_version"):
        recipe.run("debug", tmp_path / "out", overrides={**values, "train.steps": 4}, stage=1)


def test_ablations_are_config_overrides(base, tmp_path):
    s1 = overrides(tmp_path, base, 1, **{"train.steps": 2, "model.followpose.injection": "concat",
                                         "model.followpose.depth": 2})
    export1 = recipe.run("debug", tmp_path / "stage1", overrides=s1, stage=1)
    deltas1 = read_deltas(export1)
    assert deltas1.config.injection == "concat" and deltas1.config.depth == 2
    assert any(k.startswith("unet.pose_projections.") for k in deltas1.tensors)
    # scales 2 and 3 of the pose encoder feed nothing at depth 2: not optimised (exported as initialised)
    init = initial_model(base, deltas1.config).state_dict()
    for key, value in deltas1.tensors.items():
        unused_scale = key.startswith(("pose_encoder.adapter.body.2.", "pose_encoder.adapter.body.3."))
        assert torch.equal(value, init[key]) == unused_scale, key
    s2 = overrides(tmp_path, base, 2, **{"train.steps": 2, "model.followpose.temporal_attention": False})
    export2 = recipe.run("debug", tmp_path / "stage2", overrides=s2, stage=2)
    deltas2 = read_deltas(export2)
    assert deltas2.config == replace(deltas1.config, temporal_attention=False, conv_temporal=True,
                                     conv_temporal_rank=4)
    assert not any(".attn_temp." in k for k in deltas2.tensors) and any(".conv_temporal." in k
                                                                          for k in deltas2.tensors)
    model = build_from_deltas(load_base(base).unet, deltas2, (1, 2))
    assert model.unet.pose_projections is not None and model.unet.depth == 2


def test_streamed_data_path_trains(base, tmp_path):
    values = overrides(tmp_path, base, 1, **{"train.steps": 2, "data.cache": False})
    export = recipe.run("debug", tmp_path / "streamed", overrides=values, stage=1)
    assert read_deltas(export).stages == (1,)
    assert not list(tmp_path.rglob("latents*.npz"))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "streamed" / "losses.jsonl").read_text().splitlines()]
    assert len(losses) == 1 and np.isfinite(losses[0])


def test_bad_configs_are_refused(base, tmp_path):
    with pytest.raises(UserError, match="pose_downscale_factor 4 must equal the base VAE's factor 2"):
        recipe.run("debug", tmp_path / "a", overrides=overrides(tmp_path, base, 1, **{
            "model.followpose.pose_downscale_factor": 4}), stage=1)
    with pytest.raises(UserError, match="data.kwargs.size 24 must be a multiple of 16"):
        recipe.run("debug", tmp_path / "b", overrides=overrides(tmp_path, base, 1, **{"data.kwargs.size": 24}),
                   stage=1)
    with pytest.raises(UserError, match="loss.timesteps 'cosine'"):
        recipe.run("debug", tmp_path / "c", overrides=overrides(tmp_path, base, 1, **{"loss.timesteps": "cosine"}),
                   stage=1)
    with pytest.raises(UserError, match="not a Follow-Your-Pose weights folder"):
        recipe.run("debug", tmp_path / "d", overrides=overrides(tmp_path, base, 2), stage=2)
    with pytest.raises(UserError, match="--stage 3"):
        recipe.run("debug", tmp_path / "e", stage=3)
    assert load_config("followpose_stage2", "sd")["train"]["lr"] == 3e-5


def test_timestep_sampling():
    positions = range(4000)
    uniform = recipe.sample_timesteps(0, "t", positions, 1000, "uniform")
    cubic = recipe.sample_timesteps(0, "t", positions, 1000, "cubic")
    assert uniform.min() >= 0 and uniform.max() <= 999 and cubic.min() >= 0 and cubic.max() <= 999
    assert abs(float(uniform.float().mean()) - 500) < 25
    assert abs(float(cubic.float().mean()) - 750) < 25  # E[1 - u^3] = 3/4: high-noise steps favoured
    assert torch.equal(cubic[10:20], recipe.sample_timesteps(0, "t", range(10, 20), 1000, "cubic"))


def test_inverse_snr_weighting_moves_the_weight_to_high_noise():
    from diffusers import DDPMScheduler

    alphas = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    timesteps = torch.tensor([0, 50, 500, 800, 999])
    assert torch.equal(recipe.timestep_loss_weights(alphas, timesteps, "none", None), torch.ones(5))
    weights = recipe.timestep_loss_weights(alphas, timesteps, "inverse_snr", 20.0)
    snr = alphas[timesteps] / (1 - alphas[timesteps])
    assert torch.allclose(weights[:3], (1 / snr[:3]).float(), rtol=1e-5)  # eps-MSE / SNR = x0-MSE below the cap
    assert weights[0] < 1e-3 and weights[2] > 1 and weights[3] == weights[4] == 20.0
    with pytest.raises(UserError, match="max_weight"):
        recipe.timestep_loss_weights(alphas, timesteps, "inverse_snr", None)
    with pytest.raises(UserError, match="loss.weighting 'x0'"):
        recipe.timestep_loss_weights(alphas, timesteps, "x0", 1.0)


def test_a_weighting_without_a_cap_is_refused_before_training(tmp_path):
    with pytest.raises(UserError, match="loss.max_weight None"):
        recipe.run("debug", tmp_path / "a", overrides={"loss.weighting": "inverse_snr"}, stage=1)
    with pytest.raises(UserError, match="loss.weighting 'snr'"):
        recipe.run("debug", tmp_path / "b", overrides={"loss.weighting": "snr", "loss.max_weight": 5.0}, stage=1)
