"""T2I-Adapter baseline: equivalences with diffusers, variants and their skeleton styles, batch independence,
weights errors, sd-world paths on tiny random real architectures, and the debug training recipe.

    OMP_NUM_THREADS=1 python -m pytest tests/baselines/test_t2i_adapter.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fypbench.baselines import controlnet as cn
from fypbench.baselines import t2i_adapter as ta
from fypbench.errors import UserError
from fypbench.generator import MethodUnavailable
from fypbench.world.mini.world import MiniWorld
from tests.baselines import tiny

OPTIONS = {"num_inference_steps": tiny.STEPS, "size": tiny.SIZE, "guidance_scale": 4.0}


def generator(base=None, adapter=None, **options):
    base = base if base is not None else tiny.components()
    adapter = adapter if adapter is not None else tiny.random_adapter(base)
    return ta.T2IAdapterGenerator.from_components(base, adapter, **{**OPTIONS, **options})


def test_adapter_scale_zero_equals_the_base_model_and_scale_one_does_not():
    base = tiny.components()
    sample = tiny.sample(0, frames=3)
    latents = cn.frame_latents(sample.seed, 3, base.latent_shape, "shared")
    expected = tiny.base_pipeline_images(base, [sample.prompt] * 3, latents, guidance=4.0)
    off = generator(base, conditioning_scale=0.0).generate([sample])[0]
    assert np.abs(off.astype(int) - expected.astype(int)).max() <= 1
    on = generator(base).generate([sample])[0]
    assert np.abs(on.astype(int) - expected.astype(int)).mean() > 2.0


def test_own_loop_matches_the_diffusers_adapter_pipeline():
    from diffusers import StableDiffusionAdapterPipeline

    from fypbench.base.sample import to_uint8

    base = tiny.components()
    adapter = tiny.random_adapter(base, seed=1)
    sample = tiny.sample(1, frames=2)
    maps = cn.conditioning_maps(sample, "keypose", tiny.SIZE)
    latents = cn.frame_latents(sample.seed, 2, base.latent_shape, "independent")
    pipe = StableDiffusionAdapterPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                          unet=base.unet, adapter=adapter, scheduler=base.scheduler,
                                          safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(prompt=[sample.prompt] * 2, negative_prompt=["blurry"] * 2, image=cn.maps_to_tensor(maps),
                     latents=latents, num_inference_steps=tiny.STEPS, guidance_scale=6.0,
                     adapter_conditioning_scale=0.6, height=tiny.SIZE, width=tiny.SIZE, output_type="np").images
    ours = cn.sample_pose_controlled(base, adapter, [sample.prompt] * 2, maps, latents,
                                     num_inference_steps=tiny.STEPS, guidance_scale=6.0, negative_prompt="blurry",
                                     conditioning_scale=0.6)
    assert np.abs(ours.astype(int) - to_uint8(reference).astype(int)).max() <= 1


def test_on_step_sees_every_step_once_and_the_cfg_batch_layout():
    """The hook MasaCtrl relies on: one call per step, before the UNet, which sees [negative x N; prompts]."""
    base = tiny.components()
    seen, batches = [], []
    handle = base.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        latents = cn.frame_latents(5, 3, base.latent_shape, "independent")
        cn.denoise_latents(base, tiny.random_adapter(base), ["a", "b", "c"], np.zeros((3, 16, 16, 3), np.uint8),
                           latents, num_inference_steps=4, guidance_scale=3.0,
                           on_step=lambda i, t: seen.append((i, t, len(batches))))
    finally:
        handle.remove()
    assert [i for i, _, _ in seen] == [0, 1, 2, 3] and [n for _, _, n in seen] == [0, 1, 2, 3]
    assert [t for _, t, _ in seen] == sorted((t for _, t, _ in seen), reverse=True) and batches == [6] * 4


def test_shared_noise_and_batch_independence():
    base = tiny.components()
    adapter = tiny.random_adapter(base)
    still = generator(base, adapter).generate([tiny.sample(2, frames=3, identical_poses=True)])[0]
    assert all(np.array_equal(still[0], frame) for frame in still[1:])
    samples = [tiny.sample(i, frames=3) for i in range(3)]
    together = generator(base, adapter, frames_per_batch=5).generate(samples)
    for sample, video in zip(samples, together, strict=True):
        alone = generator(base, adapter).generate([sample])[0]
        assert np.abs(alone.astype(int) - video.astype(int)).max() <= 1


def test_variants_pick_checkpoint_and_skeleton_style(tmp_path, monkeypatch):
    """sd world on tiny random components: keypose (default) and openpose adapters from the local HF cache."""
    base = tiny.components()
    base_folder = tiny.save_base(base, tmp_path / "sd14", manifest=False)
    cache = tmp_path / "hf-cache"
    for seed, repo in enumerate(ta.ADAPTER_CHECKPOINTS.values()):
        tiny.put_in_hub_cache(tiny.random_adapter(base, seed=seed), cache, repo)
    tiny.use_hub_cache(monkeypatch, cache)
    keypose = ta.T2IAdapterGenerator(base=str(base_folder), num_inference_steps=tiny.STEPS, size=tiny.SIZE)
    openpose = ta.T2IAdapterGenerator(base=str(base_folder), variant="openpose", num_inference_steps=tiny.STEPS,
                                      size=tiny.SIZE)
    assert keypose.config()["conditioning"] == "keypose" and keypose.config()["weights"].startswith(
        "hub:TencentARC/t2iadapter_keypose_sd14v1@")
    assert openpose.config()["conditioning"] == "openpose" and "openpose_sd14v1@" in openpose.config()["weights"]
    sample = tiny.sample(3, frames=2)
    direct = ta.T2IAdapterGenerator.from_components(base, tiny.random_adapter(base, seed=1), variant="openpose",
                                                    num_inference_steps=tiny.STEPS, size=tiny.SIZE)
    assert np.array_equal(openpose.generate([sample])[0], direct.generate([sample])[0])
    assert not np.array_equal(keypose.generate([sample])[0], openpose.generate([sample])[0])


def test_sd_architecture_matches_the_published_keypose_adapter():
    """A full adapter sized to SD 1.x's UNet has TencentARC/t2iadapter_keypose_sd14v1's config and ~77.4 M
    parameters (baselines.md §2)."""
    from fypbench.base.components import build_components

    sd = build_components("sd", device="meta")
    with torch.device("meta"):
        adapter = ta.build_adapter(sd.unet, 8, 2, seed=0)
    published = {"adapter_type": "full_adapter", "channels": [320, 640, 1280, 1280], "downscale_factor": 8,
                 "in_channels": 3, "num_res_blocks": 2}
    assert {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in adapter.config.items()
            if k in published} == published
    assert abs(sum(p.numel() for p in adapter.parameters()) / 1e6 - 77.4) < 0.05
    ta.check_adapter_fits(sd, adapter, "sd")
    with pytest.raises(UserError, match="adapter downscale_factor 4 != the base VAE's factor 8"):
        with torch.device("meta"):
            ta.check_adapter_fits(sd, ta.build_adapter(sd.unet, 4, 2, seed=0), "x")


def test_bad_options_and_missing_weights(tmp_path):
    with pytest.raises(UserError, match="unknown t2i-adapter variant 'keypoint'.*did you mean 'keypose'"):
        ta.T2IAdapterGenerator(variant="keypoint")
    base = tiny.components()
    with pytest.raises(UserError, match="adapter channels \\[8, 16, 16\\] != the base UNet's"):
        from diffusers import T2IAdapter

        ta.T2IAdapterGenerator.from_components(base, T2IAdapter(channels=[8, 16, 16], num_res_blocks=1,
                                                                downscale_factor=2), size=tiny.SIZE)
    world = MiniWorld(weights_dir=tmp_path / "weights")
    missing = tmp_path / "weights" / "t2i-adapter"
    with pytest.raises(MethodUnavailable, match=f"no mini-world weights at {missing}.*fypbench train t2i-adapter"):
        ta.T2IAdapterGenerator.from_world(world)
    with pytest.raises(UserError, match="t2i-adapter weights TencentARC/t2iadapter_openpose_sd14v1: no such folder"):
        ta.T2IAdapterGenerator(base=str(tmp_path), variant="openpose")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("t2i")
    world = MiniWorld(weights_dir=tmp_path / "weights")
    base_folder = tiny.save_base(tiny.components(), tmp_path / "weights" / "base")
    overrides = {"model.base": str(base_folder), "data.cache_dir": str(tmp_path / "cache"),
                 "export.dir": str(tmp_path / "weights" / "t2i-adapter")}
    export = ta.run("debug", tmp_path / "run", overrides=overrides)
    return tmp_path, world, export, overrides


def test_debug_training_learns_exports_and_runs_from_the_world(trained):
    tmp_path, world, export, overrides = trained
    from fypbench.training.common import load_config, make_accelerator

    manifest = tiny.manifest(export)
    assert manifest["conditioning"] == "keypose" and manifest["training"]["final_step"] == 16
    assert "fypbench train t2i-adapter --world mini --preset debug" in manifest["training"]["command"]
    training = cn.PoseControlTraining.prepare(load_config("t2i_adapter", "debug", overrides), tmp_path / "run",
                                              make_accelerator(), lambda m: None, "keypose")
    assert training.timestep_sampling == "cubic"
    fresh = ta.build_adapter(training.components.unet, 2, 1, seed=0)
    gen = ta.T2IAdapterGenerator.from_world(world, size=tiny.SIZE, num_inference_steps=2)
    before = training.denoising_error(ta.adapter_unet_inputs(fresh))
    after = training.denoising_error(ta.adapter_unet_inputs(gen.control))
    assert after < 0.9 * before
    assert gen.config()["conditioning"] == "keypose" and gen.preset == "mini"
    assert gen.generate([tiny.sample(4, frames=2)])[0].shape == (2, tiny.SIZE, tiny.SIZE, 3)
    with pytest.raises(UserError, match="variant 'openpose' asked, but the weights read 'keypose' maps"):
        ta.T2IAdapterGenerator.from_world(world, size=tiny.SIZE, variant="openpose")
    losses = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [row["step"] for row in losses] == [4, 8, 12, 16]


def test_resume_continues_where_it_stopped(trained, tmp_path):
    _, _, export, overrides = trained
    overrides = {**overrides, "export.dir": str(tmp_path / "export")}
    ta.run("debug", tmp_path / "run", overrides={**overrides, "train.steps": 8})
    resumed = ta.run("debug", tmp_path / "run", overrides=overrides)
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    from safetensors.torch import load_file

    a, b = (load_file(folder / "diffusion_pytorch_model.safetensors") for folder in (resumed, export))
    # Not bit-identical on this CPU (last-ulp differences from oneDNN); a wrong resume moves weights ~lr = 1e-2.
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-4) for k in a)
    with pytest.raises(UserError, match="different config.*model.conditioning"):
        ta.run("debug", tmp_path / "run", overrides={**overrides, "model.conditioning": "openpose"})


def test_pose_guidance_zeroes_the_unconditional_features_only():
    from fypbench.baselines.controlnet import _control_kwargs

    base = tiny.components()
    adapter = tiny.random_adapter(base)
    maps = torch.rand(2, 3, tiny.SIZE, tiny.SIZE)
    official = _control_kwargs(adapter, maps, 1.0, cfg=True)(None, None, None)["down_intrablock_additional_residuals"]
    guided = _control_kwargs(adapter, maps, 1.0, cfg=True, unconditional_pose=False)(None, None, None)[
        "down_intrablock_additional_residuals"]
    for a, b in zip(official, guided):
        assert torch.equal(a[2:], b[2:]) and torch.equal(a[:2], a[2:]) and not b[:2].any()
    sample = tiny.sample(0, frames=2)
    assert not np.array_equal(generator(base, adapter).generate([sample])[0],
                              generator(base, adapter, unconditional_pose=False).generate([sample])[0])
