"""ControlNet baseline: equivalences with diffusers, noise modes, batch independence, weights errors, sd-world
paths on tiny random real architectures, and the debug training recipe.

    OMP_NUM_THREADS=1 python -m pytest tests/baselines/test_controlnet.py -q
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fypbench.baselines import controlnet as cn
from fypbench.errors import UserError
from fypbench.generator import MethodUnavailable
from fypbench.world.mini.world import MiniWorld
from tests.baselines import tiny

OPTIONS = {"num_inference_steps": tiny.STEPS, "size": tiny.SIZE, "guidance_scale": 4.0}


def generator(base=None, controlnet=None, **options):
    base = base if base is not None else tiny.components()
    controlnet = controlnet if controlnet is not None else tiny.random_controlnet(base)
    return cn.ControlNetGenerator.from_components(base, controlnet, **{**OPTIONS, **options})


def test_scale_zero_equals_the_base_model_and_scale_one_does_not():
    base = tiny.components()
    sample = tiny.sample(0, frames=3)
    latents = cn.frame_latents(sample.seed, 3, base.latent_shape, "independent")
    expected = tiny.base_pipeline_images(base, [sample.prompt] * 3, latents, guidance=4.0)
    off = generator(base, conditioning_scale=0.0, noise_mode="independent").generate([sample])[0]
    assert off.shape == (3, tiny.SIZE, tiny.SIZE, 3)
    assert np.abs(off.astype(int) - expected.astype(int)).max() <= 1
    on = generator(base, noise_mode="independent").generate([sample])[0]
    assert np.abs(on.astype(int) - expected.astype(int)).mean() > 2.0


def test_own_loop_matches_the_diffusers_controlnet_pipeline():
    from diffusers import StableDiffusionControlNetPipeline

    from fypbench.base.sample import to_uint8

    base = tiny.components()
    controlnet = tiny.random_controlnet(base, seed=1)
    sample = tiny.sample(1, frames=2)
    maps = cn.conditioning_maps(sample, "openpose", tiny.SIZE)
    latents = cn.frame_latents(sample.seed, 2, base.latent_shape, "independent")
    pipe = StableDiffusionControlNetPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                                             unet=base.unet, controlnet=controlnet, scheduler=base.scheduler,
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(prompt=[sample.prompt] * 2, negative_prompt=["blurry"] * 2, image=cn.maps_to_tensor(maps),
                     latents=latents, num_inference_steps=tiny.STEPS, guidance_scale=6.0,
                     controlnet_conditioning_scale=0.7, height=tiny.SIZE, width=tiny.SIZE, output_type="np").images
    ours = cn.sample_pose_controlled(base, controlnet, [sample.prompt] * 2, maps, latents,
                                     num_inference_steps=tiny.STEPS, guidance_scale=6.0, negative_prompt="blurry",
                                     conditioning_scale=0.7)
    assert np.abs(ours.astype(int) - to_uint8(reference).astype(int)).max() <= 1


def test_shared_noise_gives_identical_frames_for_identical_poses():
    gen = generator()
    still = tiny.sample(2, frames=4, identical_poses=True)
    video = gen.generate([still])[0]
    assert all(np.array_equal(video[0], frame) for frame in video[1:])
    moving = gen.generate([tiny.sample(2, frames=4)])[0]
    assert any(not np.array_equal(moving[0], frame) for frame in moving[1:])
    independent = generator(noise_mode="independent").generate([still])[0]
    assert any(not np.array_equal(independent[0], frame) for frame in independent[1:])


def test_output_does_not_depend_on_the_batch():
    base = tiny.components()
    controlnet = tiny.random_controlnet(base)
    samples = [tiny.sample(i, frames=3) for i in range(3)]
    together = generator(base, controlnet, frames_per_batch=4).generate(samples)  # chunks cut across samples
    for sample, video in zip(samples, together, strict=True):
        alone = generator(base, controlnet, frames_per_batch=16).generate([sample])[0]
        assert np.abs(alone.astype(int) - video.astype(int)).max() <= 1


def test_config_changes_with_what_changes_the_output():
    base = tiny.components()
    controlnet = tiny.random_controlnet(base)
    a = generator(base, controlnet)
    assert a.config_hash() == generator(base, controlnet, frames_per_batch=2).config_hash()
    assert a.config_hash() != generator(base, controlnet, conditioning_scale=0.5).config_hash()
    assert a.config_hash() != generator(base, tiny.random_controlnet(base, seed=3)).config_hash()
    assert a.config()["conditioning"] == "openpose" and a.config()["noise_mode"] == "shared"


def test_bad_options_and_missing_weights(tmp_path):
    with pytest.raises(UserError, match="unknown controlnet noise mode 'share'.*did you mean 'shared'"):
        generator(noise_mode="share")
    with pytest.raises(UserError, match="unknown controlnet variant 'v1.2'"):
        cn.ControlNetGenerator(variant="v1.2")
    with pytest.raises(UserError, match="size 20 must be a positive multiple of 16"):
        generator(size=20)
    world = MiniWorld(weights_dir=tmp_path / "weights")
    tiny.save_base(tiny.components(), tmp_path / "weights" / "base")
    missing = tmp_path / "weights" / "controlnet"
    with pytest.raises(MethodUnavailable, match=f"no mini-world weights at {missing}.*fypbench train controlnet"):
        cn.ControlNetGenerator.from_world(world, size=tiny.SIZE)
    with pytest.raises(UserError, match=f"controlnet weights {tmp_path / 'nowhere'}: folder not found"):
        cn.ControlNetGenerator(base=str(tmp_path / "weights" / "base"), weights=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=f"{tmp_path / 'empty'}: not a diffusers ControlNetModel folder"):
        cn.ControlNetGenerator(base=str(tmp_path / "weights" / "base"), weights=str(tmp_path / "empty"))


def test_sd_world_path_from_the_hub_cache(tmp_path, monkeypatch):
    """The sd default (`lllyasviel/sd-controlnet-openpose` on an SD folder), resolved offline from the local
    Hugging Face cache, on tiny random components of the same architectures."""
    base = tiny.components()
    base_folder = tiny.save_base(base, tmp_path / "sd15", manifest=False)
    controlnet = tiny.random_controlnet(base)
    cache = tmp_path / "hf-cache"
    tiny.put_in_hub_cache(controlnet, cache, cn.CONTROLNET_CHECKPOINTS["v1.0"])
    tiny.use_hub_cache(monkeypatch, cache)
    gen = cn.ControlNetGenerator(base=str(base_folder), num_inference_steps=tiny.STEPS, size=tiny.SIZE)
    assert gen.config()["weights"].startswith("hub:lllyasviel/sd-controlnet-openpose@")
    assert gen.config()["guidance_scale"] == 7.5 and gen.preset == "sd"
    direct = cn.ControlNetGenerator.from_components(base, controlnet, num_inference_steps=tiny.STEPS, size=tiny.SIZE)
    sample = tiny.sample(3, frames=2)
    assert np.array_equal(gen.generate([sample])[0], direct.generate([sample])[0])
    with pytest.raises(UserError, match="lllyasviel/control_v11p_sd15_openpose: no such folder and not in the "
                                        "local Hugging Face cache"):
        cn.ControlNetGenerator(base=str(base_folder), variant="v1.1")


def test_sd_architecture_matches_the_published_openpose_controlnet():
    """ControlNetModel.from_unet on SD 1.5's UNet (meta device) has lllyasviel/sd-controlnet-openpose's config."""
    from fypbench.base.components import build_components

    sd = build_components("sd", device="meta")
    with torch.device("meta"):
        controlnet = cn.build_controlnet(sd.unet, 8, (16, 32, 96, 256), seed=0)
    published = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
                 "conditioning_embedding_out_channels": [16, 32, 96, 256], "layers_per_block": 2,
                 "attention_head_dim": 8, "in_channels": 4, "conditioning_channels": 3,
                 "controlnet_conditioning_channel_order": "rgb"}
    assert {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in controlnet.config.items()
            if k in published} == published
    cn.check_controlnet_fits(sd, controlnet, "sd")
    with pytest.raises(UserError, match="downsamples by 4, the base VAE by 8"):
        with torch.device("meta"):
            from diffusers import ControlNetModel

            cn.check_controlnet_fits(sd, ControlNetModel.from_unet(
                sd.unet, conditioning_embedding_out_channels=(16, 32, 96), load_weights_from_unet=False), "x")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("controlnet")
    world = MiniWorld(weights_dir=tmp_path / "weights")
    base_folder = tiny.save_base(tiny.components(), tmp_path / "weights" / "base")
    overrides = {"model.base": str(base_folder), "data.cache_dir": str(tmp_path / "cache"),
                 "export.dir": str(tmp_path / "weights" / "controlnet")}
    export = cn.run("debug", tmp_path / "run", overrides=overrides)
    return tmp_path, world, export, overrides


def test_debug_training_learns_and_exports(trained):
    tmp_path, world, export, overrides = trained
    from fypbench.training.common import load_config, make_accelerator

    manifest = tiny.manifest(export)
    assert manifest["conditioning"] == "openpose" and manifest["training"]["final_step"] == 16
    assert manifest["base_version"] == tiny.manifest(tmp_path / "weights" / "base")["version"]
    assert "fypbench train controlnet --world mini --preset debug" in manifest["training"]["command"]
    config = load_config("controlnet", "debug", overrides)
    training = cn.PoseControlTraining.prepare(config, tmp_path / "run", make_accelerator(), lambda m: None,
                                              "openpose")
    fresh = cn.build_controlnet(training.components.unet, 2, (8, 16), seed=0)
    trained_net = cn.ControlNetGenerator.from_world(world, size=tiny.SIZE).control
    before = training.denoising_error(cn.controlnet_unet_inputs(fresh))
    after = training.denoising_error(cn.controlnet_unet_inputs(trained_net))
    assert after < 0.8 * before
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert len(losses) == 4


def test_trained_weights_run_from_the_world_and_guard_their_base(trained, tmp_path):
    _, world, export, _ = trained
    gen = cn.ControlNetGenerator.from_world(world, size=tiny.SIZE, num_inference_steps=2)
    assert gen.preset == "mini" and gen.config()["weights"] == tiny.manifest(export)["version"]
    video = gen.generate([tiny.sample(4, frames=2)])[0]
    assert video.shape == (2, tiny.SIZE, tiny.SIZE, 3) and video.dtype == np.uint8
    other = MiniWorld(weights_dir=tmp_path / "other")
    tiny.save_base(_retrained(), other.weights_dir / "base")
    tiny.copy_weights(export, other.weights_dir / "controlnet")
    with pytest.raises(MethodUnavailable, match="was trained on base model version .* retrain with"):
        cn.ControlNetGenerator.from_world(other, size=tiny.SIZE)


def _retrained():
    base = tiny.components()
    with torch.no_grad():
        base.unet.conv_out.bias.add_(0.1)
    return base


def test_pose_guidance_changes_the_output_and_is_recorded_only_when_set():
    base = tiny.components()
    controlnet = tiny.random_controlnet(base)
    sample = tiny.sample(0, frames=2)
    official = generator(base, controlnet)
    guided = generator(base, controlnet, unconditional_pose=False)
    assert "unconditional_pose" not in official.config()  # runs made before the option keep their hashes
    assert guided.config()["unconditional_pose"] is False and guided.config_hash() != official.config_hash()
    a, b = official.generate([sample])[0], guided.generate([sample])[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    no_cfg = {"guidance_scale": 1.0}
    assert np.array_equal(generator(base, controlnet, **no_cfg).generate([sample])[0],
                          generator(base, controlnet, unconditional_pose=False, **no_cfg).generate([sample])[0])
    with pytest.raises(UserError, match="unconditional_pose must be true or false, got 'no'"):
        generator(base, controlnet, unconditional_pose="no")
