"""The mmpose top-down adapter with a randomly initialised RTMPose from mmpose's own config (no checkpoint).

Runs only where the optional `[mmpose]` extra is installed (bash scripts/build_mmpose_wheels.sh); skipped elsewhere,
CI included:  OMP_NUM_THREADS=1 python -m pytest tests/metrics/test_mmpose_adapter.py -q
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fypbench.errors import UserError
from fypbench.metrics.base import VideoItem, score_items
from fypbench.metrics.pose import POSE_METRICS, DetectorSpec, FrameDetections, PoseDetectionStep
from tests.metrics.helpers import make_sample

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mmpose") is None,
                                reason="the [mmpose] extra is not installed (scripts/build_mmpose_wheels.sh)")

SIZE = 64
RTMPOSE_T = "body_2d_keypoint/rtmpose/coco/rtmpose-t_8xb256-420e_coco-256x192.py"


@pytest.fixture(scope="module")
def rtmpose_config() -> Path:
    import mmpose

    path = Path(mmpose.__file__).parent / ".mim" / "configs" / RTMPOSE_T
    if not path.is_file():
        pytest.fail(f"mmpose {mmpose.__version__} does not ship {RTMPOSE_T}")
    return path


@pytest.fixture(scope="module")
def detector(rtmpose_config):
    import torch

    torch.manual_seed(0)
    detector = DetectorSpec("mmpose", {"pose_config": str(rtmpose_config), "pose_checkpoint": None}).build()
    yield detector
    detector.close()


def _mannequin_frames() -> np.ndarray:
    from fypbench.world.mini.appearance import Appearance
    from fypbench.world.mini.motion import MotionSpec
    from fypbench.world.mini.render import render_video

    return render_video(MotionSpec(kind="procedural", name="walk"), Appearance("man", None, "grey simple background"),
                        size=SIZE).frames[:3]


def test_adapter_returns_one_coco17_person_per_frame_inside_its_input_crop(detector, rtmpose_config):
    frames = _mannequin_frames()
    detections = detector.detect(frames)
    assert len(detections) == len(frames)
    for frame in detections:
        assert isinstance(frame, FrameDetections) and len(frame) == 1  # no person detector: the whole frame
        keypoints = frame.keypoints[0]
        assert keypoints.shape == (17, 3) and np.isfinite(keypoints).all()
        # random weights put keypoints anywhere in the model's input crop: the frame box padded 1.25x, then
        # widened to RTMPose's 192:256 input aspect (x in [-8, 72], y in [-21.3, 85.3] for a 64 px frame)
        half_w = SIZE * 1.25 / 2
        half_h = max(half_w, half_w / (192 / 256))
        centre = SIZE / 2
        assert (np.abs(keypoints[:, 0] - centre) <= half_w + 1).all()
        assert (np.abs(keypoints[:, 1] - centre) <= half_h + 1).all()
        assert np.isfinite(frame.scores[0]) and frame.scores[0] >= 0.0  # SimCC confidences are not bounded by 1
    config = detector.config()
    assert config["detector"] == "mmpose-topdown" and config["pose_weights"] == "random-init"
    assert config["pose_config"] == rtmpose_config.name and len(config["pose_config_sha256"]) == 64
    # the same frames give the same detections (inference mode, no dropout)
    again = detector.detect(frames)
    np.testing.assert_allclose(again[0].keypoints, detections[0].keypoints)


def test_adapter_feeds_the_pose_metrics(rtmpose_config):
    frames = _mannequin_frames()
    item = VideoItem(method="reference", sample=make_sample("s0", num_frames=len(frames)), frames=frames)
    step = PoseDetectionStep(DetectorSpec("mmpose", {"pose_config": str(rtmpose_config), "pose_checkpoint": None}))
    metrics = [cls(step) for cls in POSE_METRICS]
    rows = score_items(metrics, [item])
    assert [row["metric"] for row in rows] == [metric.name for metric in metrics]
    assert all(np.isnan(row["value"]) or 0.0 <= row["value"] <= 100.0 for row in rows)
    assert "mmpose-topdown" in str(metrics[0].config())


def test_adapter_rejects_missing_files_and_half_a_person_detector(rtmpose_config, tmp_path):
    with pytest.raises(UserError, match="pose checkpoint .* not found"):
        DetectorSpec("mmpose", {"pose_config": str(rtmpose_config), "pose_checkpoint": str(tmp_path / "x.pth")}).build()
    with pytest.raises(UserError, match="needs both a config and a checkpoint"):
        DetectorSpec("mmpose", {"pose_config": str(rtmpose_config), "pose_checkpoint": None,
                                "det_config": str(rtmpose_config)}).build()
