"""Pose accuracy, PCK and the pose diagnostics on stub detections with known answers; MediaPipe on a mannequin."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fypbench.errors import UserError
from fypbench.metrics.base import FeatureStep, VideoItem, aggregate_rows, score_items
from fypbench.metrics.pose import (
    AREA_FRACTION,
    BLAZEPOSE_TO_COCO17,
    COCO17_FLIP,
    COCO_SIGMAS,
    POSE_METRICS,
    DetectorSpec,
    FrameDetections,
    coco_keypoint_ap,
    gt_box,
    gt_keypoints_pixels,
    oks,
    score_frame,
)
from tests.metrics.helpers import make_sample

SIZE = 64


class StubStep(FeatureStep):
    """Detections made from each sample's own GT keypoints: shifted, swapped or absent."""

    kind = "stub_pose"

    def __init__(self, shift: float = 0.0, swap: bool = False, missing: bool = False):
        self.shift, self.swap, self.missing = shift, swap, missing

    def config(self) -> dict[str, Any]:
        return {"shift": self.shift, "swap": self.swap, "missing": self.missing}

    def run(self, items: Sequence[VideoItem]) -> list[list[FrameDetections]]:
        out = []
        for item in items:
            gt = gt_keypoints_pixels(item.sample.keypoints, *item.frames.shape[1:3])
            frames = []
            for frame_gt in gt:
                if self.missing:
                    frames.append(FrameDetections.empty())
                    continue
                keypoints = frame_gt[list(COCO17_FLIP)] if self.swap else frame_gt.copy()
                keypoints[:, 0] += self.shift
                keypoints[:, 2] = 1.0
                frames.append(FrameDetections(keypoints[None], np.array([0.9])))
            out.append(frames)
        return out


def _metrics(step: FeatureStep):
    return [cls(step) for cls in POSE_METRICS]


def _asymmetric_sample(sample_id: str, seed: int):
    """A pose whose left and right keypoints are far apart (so a swap is visible)."""
    rng = np.random.default_rng(seed)
    keypoints = np.zeros((4, 17, 3))
    keypoints[..., 2] = 1.0
    keypoints[..., 1] = rng.uniform(0.1, 0.9, (4, 17))
    left = [1, 3, 5, 7, 9, 11, 13, 15]
    right = [2, 4, 6, 8, 10, 12, 14, 16]
    keypoints[:, left, 0] = rng.uniform(0.65, 0.9, (4, 8))
    keypoints[:, right, 0] = rng.uniform(0.1, 0.35, (4, 8))
    keypoints[:, 0, 0] = 0.5
    return make_sample(sample_id, keypoints=keypoints, num_frames=4, seed=seed)


def _items(n: int = 3):
    return [VideoItem("m", _asymmetric_sample(f"s{i}", i), np.zeros((4, SIZE, SIZE, 3), np.uint8)) for i in range(n)]


def _score(step: FeatureStep, items=None):
    items = items if items is not None else _items()
    metrics = _metrics(step)
    rows = score_items(metrics, items)
    return metrics, rows, aggregate_rows(metrics, rows)["m"]


def test_exact_detections_give_ap_100_and_pck_1():
    _, rows, summary = _score(StubStep())
    assert summary["pa"]["value"] == pytest.approx(100.0)
    assert summary["pa"]["ap50"] == pytest.approx(100.0) and summary["pa"]["ar"] == pytest.approx(100.0)
    assert summary["pck_0.1h"]["value"] == 1.0 and summary["pck_0.05h"]["value"] == 1.0
    assert summary["pose_detection_rate"]["value"] == 1.0
    assert summary["pose_mean_oks"]["value"] == pytest.approx(1.0)
    assert summary["pose_lr_swap_rate"]["value"] == 0.0
    assert summary["pa"]["n_images"] == 12
    assert all(row["value"] == pytest.approx(100.0) for row in rows if row["metric"] == "pa")


def test_shifted_detections_score_lower():
    _, _, exact = _score(StubStep())
    _, _, small = _score(StubStep(shift=1.5))
    _, _, large = _score(StubStep(shift=8.0))
    assert 0.0 < small["pa"]["value"] < exact["pa"]["value"]
    assert large["pa"]["value"] < small["pa"]["value"]
    assert large["pck_0.05h"]["value"] < 1.0
    assert large["pose_mean_oks"]["value"] < small["pose_mean_oks"]["value"] < 1.0
    assert large["pose_detection_rate"]["value"] == 1.0


def test_missing_detections_score_zero_and_swap_rate_is_undefined():
    _, rows, summary = _score(StubStep(missing=True))
    assert summary["pa"]["value"] == 0.0 and summary["pa"]["n_detections"] == 0
    assert summary["pck_0.1h"]["value"] == 0.0
    assert summary["pose_detection_rate"]["value"] == 0.0
    assert math.isnan(summary["pose_lr_swap_rate"]["value"])
    swap_rows = [row for row in rows if row["metric"] == "pose_lr_swap_rate"]
    assert all("nan_reason" in json.loads(row["extra"]) for row in swap_rows)


def test_left_right_swapped_detections_are_counted():
    _, _, summary = _score(StubStep(swap=True))
    assert summary["pose_lr_swap_rate"]["value"] == 1.0
    assert summary["pose_lr_swap_rate"]["n_detected_frames"] == 12
    assert summary["pa"]["value"] < 50.0


def test_pooled_ap_differs_from_the_mean_of_per_video_ap():
    items = _items(2)
    exact, shifted = StubStep(), StubStep(shift=3.0)
    detections = exact.run(items[:1]) + shifted.run(items[1:])
    frames = [(gt, det) for item, video in zip(items, detections)
              for gt, det in zip(gt_keypoints_pixels(item.sample.keypoints, SIZE, SIZE), video)]
    pooled = coco_keypoint_ap(frames)["ap"]
    per_video = [coco_keypoint_ap(frames[:4])["ap"], coco_keypoint_ap(frames[4:])["ap"]]
    assert pooled != pytest.approx(float(np.mean(per_video)))


def test_ground_truth_mapping_visibility_box_and_area():
    keypoints = np.zeros((1, 17, 3))
    keypoints[0, :, :2] = 0.5
    keypoints[0, :, 2] = 1.0
    keypoints[0, 0] = (0.25, 0.1, 1.0)
    keypoints[0, 1] = (0.9, 0.9, 0.0)   # marked invisible
    keypoints[0, 2] = (1.2, 0.5, 1.0)   # outside the frame
    gt = gt_keypoints_pixels(keypoints, height=40, width=80)[0]
    assert gt[0].tolist() == [20.0, 4.0, 2.0]
    assert gt[1].tolist() == [0.0, 0.0, 0.0] and gt[2].tolist() == [0.0, 0.0, 0.0]
    assert gt_box(gt) == (20.0, 4.0, 20.0, 16.0)
    assert gt_box(np.zeros((17, 3))) is None
    assert score_frame(np.zeros((17, 3)), FrameDetections.empty()) is None


def test_oks_matches_pycocotools():
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    gt = np.concatenate([rng.uniform(10, 50, (17, 2)), np.full((17, 1), 2.0)], axis=1)
    gt[3, 2] = 0
    gt[3, :2] = 0
    detected = gt.copy()
    detected[:, :2] += rng.normal(0, 2.0, (17, 2))
    box = gt_box(gt)
    area = AREA_FRACTION * box[2] * box[3]
    evaluation = COCOeval(iouType="keypoints")
    evaluation.params.kpt_oks_sigmas = COCO_SIGMAS
    evaluation._gts = {(1, 1): [{"keypoints": gt.reshape(-1).tolist(), "bbox": list(box), "area": area}]}
    evaluation._dts = {(1, 1): [{"keypoints": detected.reshape(-1).tolist(), "score": 1.0}]}
    evaluation.params.imgIds, evaluation.params.catIds = [1], [1]
    reference = evaluation.computeOks(1, 1)[0, 0]
    assert oks(detected, gt, area) == pytest.approx(reference, rel=1e-9)


def test_unknown_detector_and_missing_mmpose_are_user_errors():
    with pytest.raises(UserError, match="unknown pose detector 'mediapip'"):
        DetectorSpec("mediapip")
    if importlib.util.find_spec("mmpose") is not None:
        pytest.skip("mmpose is installed: the adapter is exercised by its own extra's tests")
    with pytest.raises(UserError, match=r"\[mmpose\]"):
        DetectorSpec("mmpose", {"pose_config": "rtmpose.py", "pose_checkpoint": None}).build()


needs_mediapipe = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                                     reason="mediapipe==0.10.14 is not installed")


def _mannequin_video():
    from fypbench.world.mini.appearance import Appearance
    from fypbench.world.mini.motion import MotionSpec
    from fypbench.world.mini.render import render_video

    return render_video(MotionSpec(kind="procedural", name="walk"), Appearance("man", None, "grey simple background"),
                        size=SIZE)


@needs_mediapipe
def test_mediapipe_mapping_on_a_rendered_mannequin():
    from fypbench.metrics.pose import MediaPipePoseDetector

    assert len(BLAZEPOSE_TO_COCO17) == 17
    video = _mannequin_video()
    detector = MediaPipePoseDetector()
    try:
        detections = detector.detect(video.frames)
        mirrored = detector.detect(np.ascontiguousarray(video.frames[:, :, ::-1]))
    finally:
        detector.close()
    gt = gt_keypoints_pixels(video.keypoints, SIZE, SIZE)
    scores = [score_frame(g, d) for g, d in zip(gt, detections)]
    assert all(s.detected for s in scores)
    assert np.mean([s.pck[0.1] for s in scores]) >= 0.9
    assert not any(s.swapped for s in scores)
    # each detected body joint lies nearest to the GT joint of the same COCO index
    for frame_gt, frame_det in zip(gt, detections):
        top = frame_det.top()
        nearest = [int(np.argmin(np.linalg.norm(frame_gt[:, :2] - top[j, :2], axis=1))) for j in range(5, 17)]
        assert nearest == list(range(5, 17))
    # a horizontally mirrored frame shows a person whose left side is on the image's other side
    mirrored_gt = gt.copy()
    mirrored_gt[..., 0] = np.where(gt[..., 2] > 0, SIZE - gt[..., 0], 0.0)
    mirrored_gt = mirrored_gt[:, list(COCO17_FLIP)]
    mirrored_scores = [score_frame(g, d) for g, d in zip(mirrored_gt, mirrored)]
    assert np.mean([s.pck[0.1] for s in mirrored_scores if s.detected]) >= 0.8


@needs_mediapipe
def test_mediapipe_detector_is_deterministic_and_pool_order_is_kept():
    from fypbench.metrics.pose import detect_videos

    video = _mannequin_video()
    videos = [video.frames[:2], np.zeros((1, SIZE, SIZE, 3), np.uint8), video.frames[4:6]]
    spec = DetectorSpec("mediapipe")
    serial = detect_videos(spec, videos, processes=1)
    parallel = detect_videos(spec, videos, processes=2)
    assert [len(v) for v in parallel] == [2, 1, 2]
    assert len(parallel[1][0]) == 0  # a blank frame: nobody found
    for a_video, b_video in zip(serial, parallel):
        for a, b in zip(a_video, b_video):
            np.testing.assert_array_equal(a.keypoints, b.keypoints)
            np.testing.assert_array_equal(a.scores, b.scores)
    config = spec.config()
    assert config["model_complexity"] == 1 and config["mediapipe_version"] == "0.10.14"
    assert set(config["model_sha256"]) == {"pose_detection.tflite", "pose_landmark_full.tflite"}


@needs_mediapipe
def test_the_border_maps_back_to_frame_pixels_and_is_recorded():
    from fypbench.metrics.pose import PAD_FRACTION, MediaPipePoseDetector

    video = _mannequin_video()
    gt = gt_keypoints_pixels(video.keypoints[:2], SIZE, SIZE)
    for pad_fraction in (0.0, PAD_FRACTION):
        detector = MediaPipePoseDetector(pad_fraction=pad_fraction)
        try:
            scores = [score_frame(g, d) for g, d in zip(gt, detector.detect(video.frames[:2]))]
        finally:
            detector.close()
        assert all(s.detected for s in scores) and np.mean([s.pck[0.1] for s in scores]) >= 0.9, pad_fraction
    assert DetectorSpec("mediapipe").config()["pad_fraction"] == PAD_FRACTION
    assert DetectorSpec("mediapipe", {"pad_fraction": 0.0}).config()["pad_fraction"] == 0.0
    with pytest.raises(UserError, match="pad_fraction"):
        MediaPipePoseDetector(pad_fraction=2.0)


@needs_mediapipe
def test_the_unsharp_variant_finds_a_blurred_mannequin_that_the_plain_frame_misses():
    from PIL import Image, ImageFilter

    from fypbench.metrics.pose import MediaPipePoseDetector

    video = _mannequin_video()
    blurred = np.stack([np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(1.5))) for f in video.frames])
    gt = gt_keypoints_pixels(video.keypoints, SIZE, SIZE)
    found = {}
    for variants in (("plain",), ("plain", "unsharp")):
        detector = MediaPipePoseDetector(variants=variants)
        try:
            found[variants] = [d for g, d in zip(gt, detector.detect(blurred)) if score_frame(g, d).detected]
            pcks = [score_frame(g, d).pck[0.1] for g, d in zip(gt, detector.detect(blurred)) if len(d)]
        finally:
            detector.close()
        if variants == ("plain", "unsharp"):
            assert np.mean(pcks) >= 0.9
    assert len(found[("plain",)]) <= 1 and len(found[("plain", "unsharp")]) >= 6


@needs_mediapipe
def test_the_mirror_variant_maps_keypoints_back_with_left_and_right_exchanged():
    from fypbench.metrics.pose import MediaPipePoseDetector

    video = _mannequin_video()
    gt = gt_keypoints_pixels(video.keypoints, SIZE, SIZE)
    detector = MediaPipePoseDetector(variants=("mirror",))
    try:
        scores = [score_frame(g, d) for g, d in zip(gt, detector.detect(video.frames))]
    finally:
        detector.close()
    assert all(s.detected for s in scores) and np.mean([s.pck[0.1] for s in scores]) >= 0.9
    assert not any(s.swapped for s in scores)


@needs_mediapipe
def test_variant_selection_keeps_the_highest_score_and_is_recorded():
    from fypbench.metrics.pose import VARIANTS, MediaPipePoseDetector

    frame = _mannequin_video().frames[0]
    detector = MediaPipePoseDetector(variants=("plain", "unsharp", "mirror"))
    singles = {v: MediaPipePoseDetector(variants=(v,)) for v in ("plain", "unsharp", "mirror")}
    try:
        combined, kept = detector.detect_frame(frame)
        single = {v: d.detect_frame(frame)[0] for v, d in singles.items()}
    finally:
        for d in (detector, *singles.values()):
            d.close()
    best = max(single, key=lambda v: (single[v].scores[0], -list(single).index(v)))
    assert kept == best
    np.testing.assert_array_equal(combined.keypoints, single[best].keypoints)
    config = DetectorSpec("mediapipe").config()
    assert list(config["variants"]) == list(VARIANTS) == ["plain", "unsharp"]
    assert config["min_detection_confidence"] == 0.5 and config["min_tracking_confidence"] == 0.5
    assert DetectorSpec("mediapipe", {"variants": ["plain"]}).config() != config
    with pytest.raises(UserError, match="variant"):
        MediaPipePoseDetector(variants=("plain", "sharpen"))
    with pytest.raises(UserError, match="variants"):
        DetectorSpec("mediapipe", {"variants": []}).config()


@needs_mediapipe
def test_the_default_detector_does_not_find_a_person_in_skeleton_maps():
    """A method that only copies its conditioning skeleton must not score (metrics.md §4)."""
    from fypbench.metrics.pose import detect_videos
    from fypbench.world.mini.skeleton import draw_openpose_from_coco

    video = _mannequin_video()
    maps = np.stack([draw_openpose_from_coco(k, SIZE) for k in video.keypoints])
    (detections,) = detect_videos(DetectorSpec("mediapipe"), [maps])
    assert sum(len(d) > 0 for d in detections) <= 1


def test_native_stderr_filter_drops_the_start_notices_and_passes_everything_else(capfd):
    import os

    from fypbench.metrics.pose import MEDIAPIPE_START_NOTICES, native_stderr_without

    notices = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
               b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
               b"W0000 00:00:1795777222.342024    9470 inference_feedback_manager.cc:114] Feedback manager requires a "
               b"model with a single signature inference. Disabling support for feedback tensors.\n")
    with native_stderr_without(MEDIAPIPE_START_NOTICES):
        os.write(2, notices + b"E0000 calculator_graph.cc:1] something else\n")
    assert capfd.readouterr().err == "E0000 calculator_graph.cc:1] something else\n"
    with pytest.raises(RuntimeError), native_stderr_without(MEDIAPIPE_START_NOTICES):
        os.write(2, notices + b"F0000 before the error\n")
        raise RuntimeError("boom")
    assert capfd.readouterr().err == "F0000 before the error\n"  # kept when the block fails too
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 restored


@needs_mediapipe
def test_the_detectors_first_frame_prints_no_start_notices(capfd):
    from fypbench.metrics.pose import MediaPipePoseDetector

    detector = MediaPipePoseDetector()
    try:
        detector.detect(_mannequin_video().frames[:2])
    finally:
        detector.close()
    err = capfd.readouterr().err
    assert "inference_feedback_manager" not in err and "XNNPACK" not in err
