"""Tune-A-Video on the debug base (16 px, 3 frames): equivalence, tuning, cache, bad input, batch independence."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fypbench.base.components import build_components
from fypbench.base.sample import to_uint8
from fypbench.baselines.tune_a_video import (
    SD_TRAINABLE_PARAMETERS,
    TuneAVideoGenerator,
    TuneAVideoUNet,
    TuningConfig,
    ddim_invert,
    ddim_sample,
    denoising_loss,
    trainable_parameters,
    tune_on_video,
)
from fypbench.generator import MethodUnavailable
from fypbench.models.followpose.inflate import InflationOptions, inflate_unet2d
from fypbench.models.followpose.layers import VideoContext
from fypbench.sample import Sample, coco17_to_openpose18
from fypbench.seeding import initial_noise
from fypbench.world.mini.camera import keypoints_normalised
from fypbench.world.mini.motion import MotionSpec
from fypbench.world.mini.world import MiniWorld

SIZE, FRAMES = 16, 3
WORLD = MiniWorld(size=SIZE, num_frames=FRAMES)


def make_sample(sample_id: str, prompt: str, seed: int, motion: str = "walk", view: float = 0.0,
                with_source: bool = True) -> Sample:
    spec = MotionSpec("real", motion, num_frames=FRAMES, view=view)
    keypoints = keypoints_normalised(spec).astype(np.float32)
    source = {"world": "mini", "motion": spec.to_dict()} if with_source else None
    return Sample(id=sample_id, prompt=prompt, keypoints=keypoints, openpose=coco17_to_openpose18(keypoints),
                  seed=seed, source=source)


@pytest.fixture(scope="module")
def components():
    return build_components("debug")


def make_generator(components, tmp_path, **options) -> TuneAVideoGenerator:
    options = {"preset": "debug", "cache_dir": tmp_path / "cache", **options}
    return TuneAVideoGenerator(WORLD, components=components, **options)


def test_zero_tuning_without_inversion_equals_sparse_causal_frame_pipeline(components, tmp_path):
    sample = make_sample("a", "A hulk is walking on the moon", seed=7)
    generator = make_generator(components, tmp_path, tuning_steps=0, use_inversion=False)
    video = generator.generate([sample])[0]

    # Reference: diffusers' own StableDiffusionPipeline, frames as its batch, on a copy of the 2D UNet that has
    # only the sparse-causal attn1 and the frame-pooled GroupNorm (no temporal attention at all).
    reference = copy.deepcopy(components)
    context = VideoContext()
    inflate_unet2d(reference.unet, context, InflationOptions(temporal_attention=False, conv_temporal=False))
    context.set(FRAMES)
    latents = initial_noise(sample.seed, (4, FRAMES, 8, 8)).transpose(0, 1).contiguous()
    call = dict(prompt=[sample.prompt] * FRAMES, negative_prompt=[""] * FRAMES, latents=latents,
                num_inference_steps=generator.num_inference_steps, guidance_scale=generator.guidance_scale,
                height=SIZE, width=SIZE, output_type="np")
    expected = to_uint8(reference.pipeline()(**call).images)
    assert np.abs(video.astype(int) - expected.astype(int)).max() <= 1

    # the comparison can fail: without sparse-causal attention (plain per-frame images) the frames differ
    plain = to_uint8(copy.deepcopy(components).pipeline()(**call).images)
    assert np.abs(video.astype(int) - plain.astype(int)).max() > 2


def test_tuning_lowers_reconstruction_loss_and_touches_only_the_trainable_set(components, tmp_path):
    generator = make_generator(components, tmp_path, tuning_steps=0)
    sample = make_sample("a", "A hulk is walking on the moon", seed=7)
    source = generator.source_video_of(sample)
    mean, std = generator.encode_video(source.frames)
    text = generator.encode_text([source.prompt])
    noise_scheduler = generator.components.noise_scheduler()
    before_state = {k: v.clone() for k, v in generator.model.state_dict().items()}
    before = denoising_loss(generator.model, mean, text, noise_scheduler, seed=3, draws=8)
    losses = tune_on_video(generator.model, mean, std, text, noise_scheduler,
                           TuningConfig(steps=10, learning_rate=3e-2), seed=1)
    after = denoising_loss(generator.model, mean, text, noise_scheduler, seed=3, draws=8)
    assert len(losses) == 10 and all(np.isfinite(losses))
    assert after < 0.96 * before, (before, after)  # held-out (noise, t) draws
    trainable = {f"unet2d.{name}" for name in trainable_parameters(generator.model.unet2d)}
    changed = {k for k, v in generator.model.state_dict().items() if not torch.equal(v, before_state[k])}
    assert changed and changed <= trainable
    assert not any(p.requires_grad for p in generator.model.parameters())


def test_cache_hit_skips_tuning_and_reproduces_the_video(components, tmp_path):
    sample = make_sample("a", "A hulk is walking on the moon", seed=7)
    first = make_generator(components, tmp_path)
    video = first.generate([sample])[0]
    assert first.stats["tuned"] == 1 and first.stats["cache_hits"] == 0
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and {p.name for p in entries[0].iterdir()} >= {"weights.safetensors", "meta.json"}

    # the fresh start is laid out like the cached one (a strided start gave 1/255 differences at 64 px)
    assert all(latents.is_contiguous() for latents in first._inverted.values())
    second = make_generator(components, tmp_path)
    again = second.generate([sample])[0]
    assert second.stats["tuned"] == 0 and second.stats["cache_hits"] == 1
    np.testing.assert_array_equal(video, again)

    other_config = make_generator(components, tmp_path, learning_rate=2e-3)
    other_config.generate([sample])
    assert other_config.stats["tuned"] == 1  # the tuning config is part of the key


def test_samples_sharing_a_source_share_one_tuning_and_batches_are_independent(components, tmp_path):
    samples = [make_sample("a", "A hulk is walking on the moon", seed=7),
               make_sample("b", "A robot, wearing green clothes, is walking on the sea", seed=8, motion="run"),
               make_sample("c", "A panda, in the snow", seed=9)]  # same source as "a"
    together = make_generator(components, tmp_path, batch_size=2, use_cache=False)
    videos = together.generate(samples)
    assert together.stats["tuned"] == 2
    for sample, video in zip(samples, videos):
        alone = make_generator(components, tmp_path, use_cache=False).generate([sample])[0]
        assert np.abs(alone.astype(int) - video.astype(int)).max() <= 1, sample.id
    assert np.abs(videos[0].astype(int) - videos[2].astype(int)).max() > 0  # prompts matter


def test_the_tuning_key_holds_the_cache_format(components, tmp_path, monkeypatch):
    import fypbench.baselines.tune_a_video as tav

    generator = make_generator(components, tmp_path)
    sample = make_sample("a", "A hulk is walking on the moon", seed=7)
    key = generator.source_video_of(sample).key
    assert generator.source_video_of(make_sample("z", "A hulk is walking on the moon", seed=99)).key == key
    monkeypatch.setattr(tav, "CACHE_FORMAT", tav.CACHE_FORMAT + 1)  # what a change to the tuning code bumps
    assert generator.source_video_of(sample).key != key


def test_seeds_enter_only_without_inversion(components, tmp_path):
    one = make_sample("a", "A hulk is walking on the moon", seed=1)
    two = make_sample("b", "A hulk is walking on the moon", seed=2)
    inverted = make_generator(components, tmp_path)
    a, b = inverted.generate([one, two])
    np.testing.assert_array_equal(a, b)  # documented: the start is the source's inversion
    noised = make_generator(components, tmp_path, use_inversion=False)
    a, b = noised.generate([one, two])
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0


def test_missing_source_is_a_clear_error(components, tmp_path):
    generator = make_generator(components, tmp_path)
    with pytest.raises(MethodUnavailable, match="needs a source video.*s-nosource"):
        generator.generate([make_sample("s-nosource", "A hulk, on the moon", seed=1, with_source=False)])
    worldless = TuneAVideoGenerator(components=components, preset="debug", cache_dir=tmp_path)
    with pytest.raises(MethodUnavailable, match="render_source"):
        worldless.generate([make_sample("a", "A hulk, on the moon", seed=1)])
    short = TuneAVideoGenerator(components=components, preset="debug", cache_dir=tmp_path,
                                source_video=lambda s: np.zeros((FRAMES - 1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(MethodUnavailable, match="source video of sample 'a' is unusable"):
        short.generate([make_sample("a", "A hulk, on the moon", seed=1)])


def test_missing_base_and_bad_options_are_user_errors(components, tmp_path):
    from fypbench.errors import UserError

    from fypbench.generator import MethodUnavailable

    with pytest.raises(MethodUnavailable, match="no mini-world base model"):  # a world without its base: a skip
        TuneAVideoGenerator.from_world(MiniWorld(weights_dir=tmp_path))
    with pytest.raises(UserError, match="tune-a-video base model .*nope: folder not found"):  # an explicit path
        TuneAVideoGenerator(base=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="unknown tune-a-video preset 'mnii'; did you mean 'mini'"):
        make_generator(components, tmp_path, preset="mnii")
    with pytest.raises(UserError, match="steps must be an integer >= 0"):
        make_generator(components, tmp_path, tuning_steps=-1)
    with pytest.raises(UserError, match="needs CUDA"):
        make_generator(components, tmp_path, dtype="float16")


def test_sd_world_path_explicit_base_folder_and_source_callables(components, tmp_path):
    """How an sd world hands things over: a pipeline folder plus source video/prompt callables, no world."""
    from tests.baselines.tiny import manifest, save_base

    folder = save_base(components, tmp_path / "base")
    sample = make_sample("a", "A hulk is walking on the moon", seed=7)
    frames = WORLD.render_source(sample).frames
    generator = TuneAVideoGenerator.from_pretrained(folder, preset="debug", cache_dir=tmp_path / "cache",
                                                    source_video=lambda s: frames,
                                                    source_prompt=lambda s: "a man is walking")
    video = generator.generate([sample])[0]
    assert video.shape == (FRAMES, SIZE, SIZE, 3)
    assert generator.config()["base"] == manifest(folder)["version"]
    assert generator.source_prompt(sample) == "a man is walking"


def test_source_prompt_of_a_mini_source(components, tmp_path):
    generator = make_generator(components, tmp_path)
    assert generator.source_prompt(make_sample("a", "A hulk, on the moon", seed=1)) == \
        "A man is walking grey simple background"


class StateFreeEps(torch.nn.Module):
    """eps(x, t) independent of x: DDIM sampling then exactly undoes DDIM inversion (no linearisation error)."""

    def __init__(self, shape):
        super().__init__()
        self.pattern = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, sample, timestep, text):
        return self.pattern * (1.0 + float(timestep) / 1000.0)


@torch.no_grad()
def test_ddim_inversion_is_the_inverse_of_ddim_sampling(components, tmp_path):
    generator = make_generator(components, tmp_path, tuning_steps=0)
    source = generator.source_video_of(make_sample("a", "A hulk is walking on the moon", seed=7))
    mean, _ = generator.encode_video(source.frames)
    model = StateFreeEps(tuple(mean.shape))
    for steps in (5, 50):
        noise = ddim_invert(model, mean, None, generator.ddim_scheduler(), steps)
        assert (noise - mean).abs().max() > 0.5  # it moved to the first sampling timestep's noise level
        back = ddim_sample(model, noise, torch.zeros(1, 1, 1), None, generator.ddim_scheduler(), steps, 1.0)
        torch.testing.assert_close(back, mean, atol=1e-4, rtol=1e-4)


def test_sd_trainable_set_matches_the_official_count():
    from diffusers import UNet2DConditionModel

    from fypbench.models.followpose.unet3d import SD_UNET_CONFIG

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD_UNET_CONFIG)
    model = TuneAVideoUNet(unet)
    assert sum(p.numel() for p in trainable_parameters(model.unet2d).values()) == SD_TRAINABLE_PARAMETERS
    assert not any(hasattr(block, "conv_temporal") for block in model.unet2d.modules())
