"""The sd world on tiny random components (no network, nothing downloaded):
OMP_NUM_THREADS=1 python -m pytest tests/world/test_sd_world.py -q

Every component comes from a local folder named by an FYPBENCH_SD_* variable, or from a temporary Hugging Face
cache; a hub id that is not cached makes the methods that need it SKIPPED with a one-line reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fypbench.base.components import build_components, save_pipeline
from fypbench.cli import main
from fypbench.generator import MethodUnavailable
from fypbench.world.sd import BASE, METHOD_SOURCES, SdWorld

SIZE, FRAMES = 16, 8  # the debug base: 16 px (8x8 latents, 2x VAE); fyp-1024 samples have 8 frames
SD_ENV = (BASE.env, *(s.env for s in METHOD_SOURCES.values()))
FAST = {"size": SIZE, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny SD-anatomy base pipeline folder and a random Follow-Your-Pose in the official release layout
    (followyourpose_checkpoint-1000/pytorch_model.bin + pose_encoder.pth), both written by the project's own code."""
    from fypbench.base.components import load_base
    from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig, to_official_state_dicts

    root = tmp_path_factory.mktemp("sd")
    base = save_pipeline(build_components("debug", seed=3), root / "base")
    model = FollowPose.from_unet2d(load_base(base).unet, FollowPoseConfig(conv_temporal_rank=4,
                                                                          pose_downscale_factor=2))
    unet_state, pose_state = to_official_state_dicts(model)
    release = root / "FollowYourPose_v1"
    (release / "followyourpose_checkpoint-1000").mkdir(parents=True)
    torch.save(unet_state, release / "followyourpose_checkpoint-1000" / "pytorch_model.bin")
    torch.save(pose_state, release / "pose_encoder.pth")
    return {"base": base, "followpose": release, "model": model}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline, and no FYPBENCH_SD_* variable from the caller's environment."""
    from tests.baselines.tiny import use_hub_cache

    cache = tmp_path / "hub"
    cache.mkdir()
    use_hub_cache(monkeypatch, cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FYPBENCH_SD_DEVICE", "cpu")
    for name in SD_ENV:
        monkeypatch.delenv(name, raising=False)
    return cache


def run_sd(tmp_path, methods: str, options: dict[str, dict] | None = None) -> tuple[int, dict]:
    """`fypbench run --world sd` on the first fyp-1024 sample, without scoring; (exit code, run.json)."""
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"methods": options or {}}))  # JSON is YAML
    out = tmp_path / "run"
    code = main(["run", "--world", "sd", "--methods", methods, "--limit", "1", "--no-score", "--out", str(out),
                 "--config", str(config)])
    record = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    return code, record


def test_sd_world_is_registered_and_listed(capsys):
    from fypbench.registry import WORLDS

    assert isinstance(WORLDS.load("sd")(), SdWorld)
    assert main(["ls", "worlds"]) == 0
    assert "sd" in capsys.readouterr().out.split()
    world = SdWorld()
    assert (world.name, world.size, world.num_frames) == ("sd", 512, 8)
    assert not hasattr(world, "render_reference") and not hasattr(world, "render_source")


def test_hub_ids_are_the_baselines_own():
    from fypbench.baselines.controlnet import CONTROLNET_CHECKPOINTS, SD15_BASE
    from fypbench.baselines.t2i_adapter import ADAPTER_CHECKPOINTS

    assert {v: ids[0] for v, ids in METHOD_SOURCES["controlnet"].defaults.items()} == CONTROLNET_CHECKPOINTS
    assert {v: ids[0] for v, ids in METHOD_SOURCES["t2i-adapter"].defaults.items()} == ADAPTER_CHECKPOINTS
    assert BASE.hub_ids(None) == (SD15_BASE, "runwayml/stable-diffusion-v1-5")


def test_run_base_no_pose_and_followpose_from_local_folders(folders, hub_cache, tmp_path, monkeypatch):
    """(a) FYPBENCH_SD_BASE / FYPBENCH_SD_FOLLOWPOSE name local folders: 8-frame videos at the requested size
    (the world's 512 px by default; `size` set to the tiny base's 16 px here), sd presets, official weights."""
    from fypbench.videos import read_video

    monkeypatch.setenv("FYPBENCH_SD_BASE", str(folders["base"]))
    monkeypatch.setenv("FYPBENCH_SD_FOLLOWPOSE", str(folders["followpose"]))
    code, record = run_sd(tmp_path, "base-no-pose,followpose,followpose-stage1",
                          {m: FAST for m in ("base-no-pose", "followpose", "followpose-stage1")})
    assert code == 0 and record["world"] == "sd" and record["unavailable"] == {}
    sample_id = record["sample_ids"][0]
    for method in ("base-no-pose", "followpose", "followpose-stage1"):
        video = read_video(tmp_path / "run", method, sample_id)
        assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8, method
        config = record["methods"][method]["config"]
        assert config["preset"] == "sd" and config["guidance_scale"] == 12.5  # the official sampler's CFG
    assert set(record["methods"]["followpose"]["config"]["weights"]["official"]) == {"checkpoint", "pose_encoder"}
    assert record["methods"]["followpose-stage1"]["config"]["weights"]["official"].keys() == {"pose_encoder"}
    assert not any(hub_cache.iterdir())  # nothing downloaded


def test_base_no_pose_needs_only_the_base_and_followpose_reads_deltas_folders(folders, hub_cache, tmp_path,
                                                                              monkeypatch):
    from fypbench.models.followpose.generator import (
        BaseNoPoseGenerator,
        FollowPoseGenerator,
        base_identity,
        save_deltas,
    )

    monkeypatch.setenv("FYPBENCH_SD_BASE", str(folders["base"]))
    floor = BaseNoPoseGenerator.from_world(SdWorld(), **FAST)  # no Follow-Your-Pose weights anywhere
    assert floor.config()["weights"] is None and floor.device.type == "cpu"
    deltas = save_deltas(folders["model"], tmp_path / "deltas", stages=(1, 2),
                         base_version=base_identity(folders["base"]), float16=False)
    monkeypatch.setenv("FYPBENCH_SD_FOLLOWPOSE", str(deltas))
    video_model = FollowPoseGenerator.from_world(SdWorld(), **FAST)
    assert video_model.config()["weights"]["trained_stages"] == [1, 2] and video_model.size == SIZE
    assert FollowPoseGenerator.from_world(SdWorld(), preset="mini", **FAST).config()["preset"] == "mini"


def test_hub_id_not_in_the_cache_is_a_one_line_skip(folders, hub_cache, tmp_path, monkeypatch, capsys):
    """(b) Offline, a hub id missing from the cache: SKIPPED with one line naming it, the download command and
    the variable; nothing is downloaded, no video written."""
    monkeypatch.setenv("FYPBENCH_SD_BASE", "nobody/not-a-cached-model")
    code, record = run_sd(tmp_path, "base-no-pose", {"base-no-pose": FAST})
    err = capsys.readouterr().err
    # the only requested method cannot run: a user error, nothing written
    assert code == 2 and record == {} and "none of the requested methods can run" in err
    reason = next(line for line in err.splitlines() if line.startswith("SKIPPED base-no-pose: "))
    assert "nobody/not-a-cached-model" in reason and "hf download nobody/not-a-cached-model" in reason
    assert "FYPBENCH_SD_BASE" in reason and "local Hugging Face cache" in reason
    assert not (tmp_path / "run").exists()
    assert not any(hub_cache.iterdir())

    monkeypatch.delenv("FYPBENCH_SD_BASE")  # the default hub ids, not cached either
    with pytest.raises(MethodUnavailable, match=r"stable-diffusion-v1-5/stable-diffusion-v1-5 \(nor "
                                                r"runwayml/stable-diffusion-v1-5\) is not in the local Hugging Face "
                                                r"cache.*`hf download stable-diffusion-v1-5/stable-diffusion-v1-5`"):
        SdWorld().base_model()
    with pytest.raises(MethodUnavailable, match="YueMafighting/FollowYourPose_v1 .*FYPBENCH_SD_FOLLOWPOSE"):
        SdWorld().method_weights("followpose")
    monkeypatch.setenv("FYPBENCH_SD_CONTROLNET", str(tmp_path / "no-such-folder"))
    with pytest.raises(MethodUnavailable, match="FYPBENCH_SD_CONTROLNET=.*no-such-folder: no such folder"):
        SdWorld().method_weights("controlnet")
    with pytest.raises(MethodUnavailable, match="the sd world has no weights for it"):
        SdWorld().method_weights("tune-a-video")
    assert not any(hub_cache.iterdir())


def test_cached_hub_ids_resolve_offline_and_variant_picks_the_checkpoint(folders, hub_cache, monkeypatch):
    """A variant's default hub id, found in the local cache (as `hf download` leaves it), loads offline."""
    from fypbench.base.components import load_base
    from fypbench.baselines.controlnet import ControlNetGenerator
    from tests.baselines.tiny import put_in_hub_cache, random_controlnet

    monkeypatch.setenv("FYPBENCH_SD_BASE", str(folders["base"]))
    snapshot = put_in_hub_cache(random_controlnet(load_base(folders["base"])), hub_cache,
                                "lllyasviel/control_v11p_sd15_openpose")
    assert SdWorld().method_weights("controlnet", variant="v1.1") == snapshot
    with pytest.raises(MethodUnavailable, match="lllyasviel/sd-controlnet-openpose"):  # v1.0, the default
        ControlNetGenerator.from_world(SdWorld(), **FAST)
    generator = ControlNetGenerator.from_world(SdWorld(), variant="v1.1", **FAST)
    config = generator.config()
    assert config["weights"].startswith("hub:lllyasviel/control_v11p_sd15_openpose@")
    assert config["preset"] == "sd" and config["guidance_scale"] == 7.5


def test_reference_and_tune_a_video_are_unavailable_with_their_reason(folders, hub_cache, tmp_path, monkeypatch):
    """(c) No renderer in the sd world: no ground truth, no source videos; said before any model is loaded."""
    # with no base either, the renderer is the reason given; base-no-pose (a local base) runs beside them
    code, record = run_sd(tmp_path, "reference,tune-a-video", {})
    assert code == 2 and record == {}  # nothing requested can run: a user error, nothing written
    monkeypatch.setenv("FYPBENCH_SD_BASE", str(folders["base"]))
    code, record = run_sd(tmp_path, "reference,tune-a-video,base-no-pose", {"base-no-pose": FAST})
    assert code == 0 and set(record["unavailable"]) == {"reference", "tune-a-video"}
    for method, reason in record["unavailable"].items():
        assert "\n" not in reason and "the sd world has no renderer" in reason, method
        assert "no real source videos are shipped" in reason, method
    assert record["unavailable"]["reference"].startswith("reference needs a world that renders ground truth")
    assert "tune-a-video needs each sample's source video" in record["unavailable"]["tune-a-video"]
    assert "source_video=" in record["unavailable"]["tune-a-video"]


def test_sample_command_with_a_local_base_or_a_clear_error(folders, hub_cache, tmp_path, monkeypatch, capsys):
    assert main(["sample", "--world", "sd", "--prompt", "A man, on the moon", "--out", str(tmp_path / "none.png"),
                 "--seeds", "1", "--steps", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "FYPBENCH_SD_BASE" in error and "hf download" in error
    assert not (tmp_path / "none.png").exists()
    monkeypatch.setenv("FYPBENCH_SD_BASE", str(folders["base"]))
    out = tmp_path / "grid.png"
    assert main(["sample", "--world", "sd", "--prompt", "A man, on the moon", "--out", str(out), "--seeds", "2",
                 "--steps", "2"]) == 0
    assert out.is_file()
