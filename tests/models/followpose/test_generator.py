"""The `followpose` / `followpose-stage1` generators on random debug components (a saved debug base + deltas):
OMP_NUM_THREADS=1 python -m pytest tests/models/followpose/test_generator.py -q"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from fypbench.base import build_components, load_base, save_pipeline
from fypbench.errors import UserError
from fypbench.generator import MethodUnavailable
from fypbench.models.followpose.generator import (
    BaseNoPoseGenerator,
    FollowPoseGenerator,
    FollowPoseStage1Generator,
    base_identity,
    save_deltas,
)
from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig, to_official_state_dicts
from fypbench.protocol import load_protocol, samples_subset
from fypbench.world.mini.world import MiniWorld

FRAMES, SIZE = 4, 16
CONFIG = FollowPoseConfig(conv_temporal_rank=4, pose_downscale_factor=2)
OPTIONS = {"num_inference_steps": 2, "guidance_scale": 4.0}


def random_model(base, config: FollowPoseConfig = CONFIG, seed: int = 0) -> FollowPose:
    """A FollowPose on the base with every delta non-trivial (conv_temporal.up is zero at init)."""
    model = FollowPose.from_unet2d(load_base(base).unet, config, init_seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".conv_temporal.up." in name:
                parameter.normal_(std=0.05, generator=generator)
    return model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    save_pipeline(build_components("debug", seed=5), root / "base", manifest={"note": "random debug base"})
    save_deltas(random_model(root / "base"), root / "followpose", stages=(1, 2),
                base_version=base_identity(root / "base"), float16=False)
    return MiniWorld(weights_dir=root, size=SIZE)


@pytest.fixture(scope="module")
def samples():
    """Three fyp-1024 samples with three different motions, cut to FRAMES frames."""
    chosen = []
    for sample in samples_subset(load_protocol("fyp-1024"), limit=200):
        if all(not np.allclose(sample.keypoints, other.keypoints) for other in chosen):
            chosen.append(sample)
        if len(chosen) == 3:
            break
    return [replace(s, keypoints=s.keypoints[:FRAMES], openpose=s.openpose[:FRAMES]) for s in chosen]


@pytest.fixture(scope="module")
def video_model(world):
    return FollowPoseGenerator.from_world(world, batch_size=3, **OPTIONS)


@pytest.fixture(scope="module")
def frame_model(world):
    return FollowPoseStage1Generator.from_world(world, **OPTIONS)


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_videos_shape_determinism_and_batch_independence(video_model, samples):
    generator = video_model
    videos = generator.generate(samples)
    assert len(videos) == 3
    assert all(v.dtype == np.uint8 and v.shape == (FRAMES, SIZE, SIZE, 3) for v in videos)
    assert all(np.array_equal(a, b) for a, b in zip(videos, generator.generate(samples)))
    alone = [generator.generate([s])[0] for s in samples]
    assert all(close(a, b) for a, b in zip(videos, alone))
    assert not np.array_equal(videos[0], videos[1])


def test_pose_changes_the_video(video_model, samples):
    generator = video_model
    original = generator.generate(samples[:1])[0]
    other_pose = replace(samples[0], keypoints=samples[1].keypoints, openpose=samples[1].openpose)
    assert not close(original, generator.generate([other_pose])[0])


def test_config_records_weights_and_sampling(world, video_model):
    generator = video_model
    config = generator.config()
    assert config["base"] == base_identity(world.weights_dir / "base")
    assert config["weights"]["trained_stages"] == [1, 2] and len(config["weights"]["deltas"]) == 16
    assert (config["num_inference_steps"], config["guidance_scale"], config["size"]) == (2, 4.0, SIZE)
    assert config["mode"] == "video" and config["followpose"]["injection"] == "residual"
    other = copy.copy(generator)
    other.guidance_scale = 6.0
    assert other.config_hash() != generator.config_hash()
    defaults = FollowPoseGenerator.from_world(world)
    assert (defaults.num_inference_steps, defaults.guidance_scale) == (25, 5.0)  # the mini preset


def test_stage1_generator_samples_every_frame_independently(world, samples, video_model, frame_model):
    per_frame = frame_model
    assert per_frame.config()["mode"] == "per-frame" and per_frame.config_hash() != video_model.config_hash()
    assert not per_frame.model.config.temporal_attention and not per_frame.model.config.conv_temporal
    sample = samples[0]
    changed = sample.keypoints.copy()
    changed[1] = samples[1].keypoints[1]  # only frame 1's pose differs
    moved = replace(sample, keypoints=changed)
    a, b = per_frame.generate([sample])[0], per_frame.generate([moved])[0]
    assert not close(a[1], b[1]) and all(np.array_equal(a[i], b[i]) for i in (0, 2, 3))
    # the video model mixes frames: frame 2 attends to frame 1 (sparse-causal), all frames attend to all
    # (temporal attention), so every frame moves (a little, on this random base)
    c, d = video_model.generate([sample])[0], video_model.generate([moved])[0]
    assert all(not np.array_equal(c[i], d[i]) for i in (0, 2, 3))
    # shared noise and one pose for every frame: identical frames
    still = replace(sample, keypoints=np.repeat(sample.keypoints[:1], FRAMES, axis=0))
    shared = FollowPoseStage1Generator.from_world(world, noise_mode="shared", **OPTIONS).generate([still])[0]
    assert all(np.array_equal(shared[0], frame) for frame in shared)
    with pytest.raises(UserError, match="per-frame"):
        FollowPoseGenerator.from_world(world, noise_mode="shared", **OPTIONS)
    guided = FollowPoseGenerator.from_world(world, unconditional_pose=False, **OPTIONS)
    assert "text branch only" in guided.config()["sampler"] and guided.config_hash() != video_model.config_hash()
    with pytest.raises(UserError, match="unconditional_pose must be true or false"):
        FollowPoseGenerator.from_world(world, unconditional_pose="false", **OPTIONS)
    scaled = FollowPoseGenerator.from_world(world, conditioning_scale=2.0, **OPTIONS)
    assert scaled.config()["conditioning_scale"] == 2.0 and "conditioning_scale" not in video_model.config()
    assert scaled.config_hash() != video_model.config_hash()
    assert FollowPoseGenerator.from_world(world, conditioning_scale=1, **OPTIONS).config_hash() == \
        video_model.config_hash()  # the default leaves every recorded config hash as it was
    for bad in (-1.0, float("nan"), "2", True):
        with pytest.raises(UserError, match="conditioning_scale must be a finite number"):
            FollowPoseGenerator.from_world(world, conditioning_scale=bad, **OPTIONS)


def test_per_frame_rows_are_identified_by_the_tensors_they_load(world, tmp_path):
    import shutil

    base = world.weights_dir / "base"
    other = tmp_path / "weights"
    shutil.copytree(world.weights_dir, other)
    model = random_model(base)
    with torch.no_grad():  # a retrained stage 2: new temporal tensors, the same pose encoder
        for name, parameter in model.named_parameters():
            if ".attn_temp." in name:
                parameter.add_(0.1)
    shutil.rmtree(other / "followpose")
    save_deltas(model, other / "followpose", stages=(1, 2), base_version=base_identity(base), float16=False)
    retrained = MiniWorld(weights_dir=other, size=SIZE)
    hashes = {cls: (cls.from_world(world, **OPTIONS).config_hash(), cls.from_world(retrained, **OPTIONS).config_hash())
              for cls in (FollowPoseGenerator, FollowPoseStage1Generator, BaseNoPoseGenerator)}
    assert hashes[FollowPoseGenerator][0] != hashes[FollowPoseGenerator][1]
    assert hashes[FollowPoseStage1Generator][0] == hashes[FollowPoseStage1Generator][1]
    assert hashes[BaseNoPoseGenerator][0] == hashes[BaseNoPoseGenerator][1]
    assert BaseNoPoseGenerator.from_world(world, **OPTIONS).config()["weights"] is None
    stage1 = FollowPoseStage1Generator.from_world(world, **OPTIONS).config()["weights"]
    assert len(stage1["stage1_tensors"]) == 16 and stage1["trained_stages"] == [1, 2]


def test_stage2_skipped_weights_load_without_temporal_modules(world, samples, tmp_path):
    base = world.weights_dir / "base"
    save_deltas(random_model(base, replace(CONFIG, temporal_attention=False, conv_temporal=False)),
                tmp_path / "stage1", stages=(1,), base_version=base_identity(base), float16=True)
    generator = FollowPoseGenerator(base, tmp_path / "stage1", **OPTIONS)
    assert generator.config()["weights"]["trained_stages"] == [1]
    assert not generator.model.config.temporal_attention and generator.model.config.sparse_causal_attention
    assert generator.generate(samples[:1])[0].shape == (FRAMES, SIZE, SIZE, 3)


def test_official_checkpoint_files(world, samples, tmp_path):
    base = world.weights_dir / "base"
    source = random_model(base, seed=7)
    unet_state, pose_state = to_official_state_dicts(source)
    torch.save(unet_state, tmp_path / "pytorch_model.bin")
    torch.save(pose_state, tmp_path / "pose_encoder.pth")
    official = FollowPoseGenerator.from_pretrained(base, checkpoint=tmp_path / "pytorch_model.bin",
                                                   pose_encoder=tmp_path / "pose_encoder.pth", preset="mini",
                                                   **OPTIONS)
    assert official.model.config.conv_temporal_rank == 4  # read from the checkpoint's shapes
    assert set(official.config()["weights"]["official"]) == {"checkpoint", "pose_encoder"}
    loaded = official.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    per_frame = FollowPoseStage1Generator.from_pretrained(base, checkpoint=tmp_path / "pytorch_model.bin",
                                                          preset="mini", **OPTIONS)
    assert torch.equal(per_frame.model.pose_encoder.adapter.conv_in.weight, source.pose_encoder.adapter.conv_in.weight)
    assert official.generate(samples[:1])[0].shape == (FRAMES, SIZE, SIZE, 3)


def test_missing_or_mismatched_weights(world, tmp_path):
    other = tmp_path / "other"
    with pytest.raises(MethodUnavailable, match="no mini-world base model"):
        FollowPoseGenerator.from_world(MiniWorld(weights_dir=other, size=SIZE))
    save_pipeline(build_components("debug", seed=6), other / "base")
    with pytest.raises(MethodUnavailable, match="train them with `fypbench train followpose"):
        FollowPoseGenerator.from_world(MiniWorld(weights_dir=other, size=SIZE))
    (other / "followpose").symlink_to(world.weights_dir / "followpose")
    with pytest.raises(UserError, match="retrain Follow-Your-Pose on this base"):
        FollowPoseGenerator.from_world(MiniWorld(weights_dir=other, size=SIZE))
    with pytest.raises(UserError, match="size 24 must be a multiple of 16"):
        FollowPoseGenerator.from_world(world, size=24)
    with pytest.raises(UserError, match="either weights"):
        FollowPoseGenerator(world.weights_dir / "base")


@torch.no_grad()
def test_per_frame_without_pose_is_the_2d_base_pipeline(world, samples, frame_model):
    """generate_videos(per_frame=True, inject_pose=False) = the base StableDiffusionPipeline run on each frame's
    slice of the sample's noise (the PA baseline "base model without pose")."""
    from fypbench.base.sample import to_uint8
    from fypbench.models.followpose.pipeline import generate_videos
    from fypbench.seeding import initial_noise

    generator = frame_model
    c, sample = generator.components, samples[0]
    ours = generate_videos(generator.model.unet, generator.model.pose_encoder, c.vae, c.text_encoder, c.tokenizer,
                           c.scheduler, [sample.prompt], [generator.pose_video(sample)], [sample.seed],
                           num_inference_steps=2, guidance_scale=4.0, per_frame=True, inject_pose=False)[0]
    base = load_base(world.weights_dir / "base")
    noise = initial_noise(sample.seed, (4, FRAMES, SIZE // 2, SIZE // 2))
    pipe = base.pipeline()
    for f in range(FRAMES):
        image = pipe(prompt=[sample.prompt], negative_prompt=[""], latents=noise[None, :, f], num_inference_steps=2,
                     guidance_scale=4.0, height=SIZE, width=SIZE, output_type="np").images
        assert close(ours[f], to_uint8(image)[0]), f


def test_base_no_pose_generator_is_that_pipeline_and_ignores_the_pose(world, samples, frame_model):
    """The `base-no-pose` method (the leaderboard's pose floor) = stage-1 per-frame sampling with pose injection off:
    the same noise as followpose-stage1, the pose has no effect."""
    from fypbench.models.followpose.pipeline import generate_videos

    floor = BaseNoPoseGenerator.from_world(world, **OPTIONS)
    sample, other = samples[0], samples[1]
    moved = replace(sample, keypoints=other.keypoints, openpose=other.openpose)
    ours, ours_moved = floor.generate([sample, moved])
    c = frame_model.components
    expected = generate_videos(frame_model.model.unet, frame_model.model.pose_encoder, c.vae, c.text_encoder,
                               c.tokenizer, c.scheduler, [sample.prompt], [frame_model.pose_video(sample)],
                               [sample.seed], num_inference_steps=2, guidance_scale=4.0, per_frame=True,
                               inject_pose=False)[0]
    assert np.array_equal(ours, ours_moved) and close(ours, expected)
    posed = frame_model.generate([sample])[0]
    assert not close(ours, posed)  # the paired stage-1 row differs only by the pose features
    assert floor.config()["pose_map"].startswith("none") and floor.config()["noise"] == "independent"
