"""Pose accuracy (PA, COCO OKS-AP x100), PCK and pose diagnostics, from a keypoint detector run on every frame.

    python -c "from fypbench.metrics.pose import DetectorSpec; print(DetectorSpec('mediapipe').config())"

Definitions (../shared/reference/metrics.md §3-4), all recorded in each metric's config():
- Ground truth: the sample's COCO-17 input keypoints of frame t, mapped to the stored frame's pixels as
  x_px = x * W, y_px = y * H (normalised coordinates are fractions of the frame width and height). A keypoint
  is visible (COCO v=2) when the sample marks it visible and it lies inside [0, W] x [0, H]; otherwise v=0 and
  (x, y) = (0, 0). Frames without a visible GT keypoint are left out of every pose metric.
  bbox = box of the visible GT keypoints (each side at least 1 px), area = 0.53 * bbox area.
- `pa`: one pycocotools COCOeval(iouType="keypoints") over all frames of all videos of a method (image id =
  (sample, frame)), default COCO sigmas (COCO_SIGMAS), OKS thresholds 0.50:0.05:0.95, maxDets 20, area range
  "all"; PA = AP x100, with AP50, AP75 and AR (x100) beside it. The per-video row holds that video's own AP
  and the frames' GT and detections, so the pooled method value is recomputed from the rows (`aggregate`).
  No detection at all -> AP 0 (every GT missed), recorded as n_detections = 0.
- `pck_0.1h`, `pck_0.05h`: per frame, the highest-scoring detection; fraction of visible GT keypoints within
  alpha * h of the GT, h = GT bbox height (at least 1 px); a frame without detection scores 0; frame ->
  video mean -> method mean.
- `pose_detection_rate`: frames with >= 1 detection / frames with GT. `pose_mean_oks`: mean OKS of the top
  detection (0 without detection). `pose_lr_swap_rate`: among frames with a detection, the share where the
  left/right-swapped GT fits the top detection better (higher OKS); pooled over frames at method level.
Detectors:
- `MediaPipePoseDetector`: mediapipe 0.10.14 legacy `mp.solutions.pose`, static_image_mode=True,
  model_complexity=1 (the only landmark model bundled in the wheel: 0 and 2 would be downloaded at run time, which
  the offline runtime forbids), min_detection_confidence=0.5 and min_tracking_confidence=0.5 (the landmark
  presence threshold, also applied in static mode), one person; each frame first gets a border of PAD_FRACTION
  (0.25) x its long side on every side (edge pixels repeated: BlazePose misses figures that fill the frame; a
  departure from metrics.md §4, which upscales the bare frame), then is resized bicubic (PIL) so the long side is
  256; BlazePose-33 -> COCO-17 via BLAZEPOSE_TO_COCO17; instance score = mean visibility of the 17 mapped landmarks.
  Test-time variants (a departure from metrics.md §4's single pass): the resized frame is run as is ("plain") and
  after an unsharp mask ("unsharp", PIL UnsharpMask radius 2, percent 300, threshold 0); the detection with the
  higher instance score is kept (the earlier variant on ties). Two further options are off by default: accept_score
  (stop at the first variant scoring at least this; None) and min_instance_score (drop weaker detections; 0.0).
  Every option is recorded in config(). Measured with
  benchmarks/bench_pose_detector.py on 64 evenly spaced fyp-1024 ground-truth renders (512 frames; detection rate
  / PCK@0.1h / AUC of the video PCK vs another pose on the true box / skeleton-map detection rate):
  plain only 0.564 / 0.438 / 0.680 / 0.07; plain + unsharp 0.672 / 0.513 / 0.726 / 0.09 (watercolor 0.56 -> 0.96,
  van gogh 0.60 -> 0.64, black and white 0.71 -> 0.78). Rejected, because they make the detector find "persons" in
  frames without one: lower thresholds (0.2/0.2 with plain, unsharp, autocontrast and mirror: detection 0.81, AUC
  0.78, but skeleton maps detected 0.63 with PCK 0.35, i.e. a method copying its conditioning skeleton would score;
  0.35/0.35 with plain + unsharp: skeleton maps 0.15) and an "autocontrast" variant (skeleton maps 0.07 -> 0.22 at
  0.5). The instance score cannot separate such detections (skeleton-map and render visibilities overlap).
  Bilinear or nearest upscaling, blur, equalisation, grayscale and a constant border all lowered the detection
  rate; 192 or 384 px instead of 256 changed it by < 0.01; a 0.4-0.5 border lowered it. Minecraft renders (4-px
  blocks, no face) stay undetected by every option tried. BlazePose's video mode (static_image_mode=False,
  smooth_landmarks=False, one tracker per variant, reset per video, frames in order) was measured the same way and
  rejected: detection 0.709, PCK 0.535, AUCs 0.760 / 0.726 (unchanged), but skeleton maps detected 0.25.
  The other landmark models, taken from the npm package @mediapipe/pose 0.5.1675469404 (its full model is
  byte-identical to the wheel's) and measured the same way (plain + unsharp, one thread): heavy (complexity 2)
  0.635 / 0.516 / 0.736 / 0.09 at 137 ms per frame, lite (0) 0.674 / 0.511 / 0.777 / 0.09 at 65 ms. Neither is
  adopted: both share the full model's person detector, which is what misses the figures (minecraft 0.00 and pixel
  art 0.14-0.36 in all three), and neither is in the wheel (the runtime would need an install-time download).
  The three notices its native code prints when a graph first runs are dropped from stderr
  (MEDIAPIPE_START_NOTICES); anything else it prints passes.
- `MMPoseDetector`: mmpose top-down (optional `[mmpose]` extra) with user-supplied config + checkpoint and an
  optional mmdet person detector; instance score = bbox score x mean keypoint score.
Detection runs over videos in a process pool (`detect_videos`), one detector per worker, results in input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import math
import os
import re
import sys
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fypbench.errors import UserError
from fypbench.metrics.base import FeatureStep, Metric, MetricResult, VideoItem, nan_result
from fypbench.videos import validate_frames

COCO_SIGMAS = np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
                        0.89, 0.89]) / 10.0
# COCO-17 index i is BlazePose landmark BLAZEPOSE_TO_COCO17[i]
BLAZEPOSE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
COCO17_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
AREA_FRACTION = 0.53
MIN_BOX_SIDE = 1.0
PCK_REFERENCE = "gt bbox height (>= 1 px)"
MEDIAPIPE_VERSION = "0.10.14"
# Border added around each frame before detection, as a fraction of its long side, by repeating the edge pixels.
# BlazePose's person detector finds people by their face and misses figures that fill the frame. Measured on 5-6
# upright fyp-1024 ground-truth renders per style (8 frames each), frame detection rate without a border -> with
# 0.25: no style 0.65 -> 1.00, cartoon 0.12 -> 0.70, pixel art 0.35 -> 0.57 (0.125: 0.93 / 0.55 / 0.45; 0.5:
# 0.85 / 0.82 / 0.75); minecraft stays 0 at every border (its 4-px blocks erase the face).
PAD_FRACTION = 0.25
MIN_DETECTION_CONFIDENCE = 0.5
MIN_TRACKING_CONFIDENCE = 0.5
VARIANTS: tuple[str, ...] = ("plain", "unsharp")
ACCEPT_SCORE: float | None = None
MIN_INSTANCE_SCORE = 0.0


# ---- detections and detectors ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FrameDetections:
    """The persons found in one frame: keypoints (K, 17, 3) = (x px, y px, confidence), scores (K,)."""

    keypoints: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        keypoints = np.asarray(self.keypoints, dtype=np.float64).reshape(-1, 17, 3)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(keypoints):
            raise ValueError(f"{len(keypoints)} detections but {len(scores)} scores")
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def empty(cls) -> FrameDetections:
        return cls(np.zeros((0, 17, 3)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.scores)

    def top(self) -> np.ndarray | None:
        """(17, 3) keypoints of the highest-scoring detection (first one on ties), or None."""
        return self.keypoints[int(np.argmax(self.scores))] if len(self) else None

    def to_json(self, digits: int = 2) -> list[dict[str, Any]]:
        return [{"keypoints": np.round(k, digits).reshape(-1).tolist(), "score": round(float(s), 5)}
                for k, s in zip(self.keypoints, self.scores)]

    @classmethod
    def from_json(cls, records: Sequence[Mapping[str, Any]]) -> FrameDetections:
        if not records:
            return cls.empty()
        return cls(np.array([r["keypoints"] for r in records]), np.array([r["score"] for r in records]))


class PoseDetector(ABC):
    """detect(uint8 (F, H, W, 3)) -> one FrameDetections per frame, COCO-17 keypoints in frame pixels."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the detections (model, weights hash, thresholds, input size)."""

    @abstractmethod
    def detect(self, frames: np.ndarray) -> list[FrameDetections]: ...

    def close(self) -> None:
        """Release native resources (optional)."""


def _file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _mediapipe_root() -> Path:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the MediaPipe pose detector needs mediapipe=={MEDIAPIPE_VERSION} "
                        f"(pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}; see README)")
    return Path(list(spec.submodule_search_locations)[0])


# Test-time variants: each is one deterministic transform of the bordered, resized RGB frame (PIL), run through
# BlazePose separately; `detect` keeps the variant whose detection has the highest instance score (mean visibility of
# the 17 mapped landmarks; the earlier variant on ties). "mirror" is detected on the horizontally mirrored frame and
# its keypoints are mirrored back with left and right exchanged.
MEDIAPIPE_VARIANTS: dict[str, str] = {
    "plain": "the frame as is",
    "unsharp": "PIL ImageFilter.UnsharpMask(radius=2, percent=300, threshold=0)",
    "autocontrast": "PIL ImageOps.autocontrast(cutoff=1) (per-channel levels stretched, 1% clipped each end)",
    "mirror": "PIL ImageOps.mirror; keypoints mirrored back, COCO left/right exchanged",
}


def _variant_image(image: Any, variant: str) -> Any:
    from PIL import ImageFilter, ImageOps

    if variant == "plain":
        return image
    if variant == "unsharp":
        return image.filter(ImageFilter.UnsharpMask(radius=2, percent=300, threshold=0))
    if variant == "autocontrast":
        return ImageOps.autocontrast(image, cutoff=1)
    if variant == "mirror":
        return ImageOps.mirror(image)
    raise UserError(f"unknown MediaPipe variant {variant!r} (known: {', '.join(MEDIAPIPE_VARIANTS)})")


def _check_variants(variants: Sequence[str]) -> tuple[str, ...]:
    variants = tuple(variants)
    if not variants:
        raise UserError("MediaPipe variants must name at least one preprocessing")
    unknown = [v for v in variants if v not in MEDIAPIPE_VARIANTS]
    if unknown or len(set(variants)) != len(variants):
        raise UserError(f"MediaPipe variants {list(variants)}: each once, from {', '.join(MEDIAPIPE_VARIANTS)}")
    return variants


def mediapipe_config(resize_long_side: int = 256, min_detection_confidence: float = MIN_DETECTION_CONFIDENCE,
                     pad_fraction: float = PAD_FRACTION, min_tracking_confidence: float = MIN_TRACKING_CONFIDENCE,
                     variants: Sequence[str] = VARIANTS, accept_score: float | None = ACCEPT_SCORE,
                     min_instance_score: float = MIN_INSTANCE_SCORE) -> dict[str, Any]:
    """The recorded definition of the MediaPipe detector (reads the bundled model files' hashes)."""
    from importlib.metadata import version

    variants = _check_variants(variants)
    root = _mediapipe_root()
    installed = version("mediapipe")
    if installed != MEDIAPIPE_VERSION:
        raise UserError(f"mediapipe {installed} is installed; the pose metrics pin {MEDIAPIPE_VERSION} (its "
                        "bundled landmark model and legacy mp.solutions API): "
                        f"pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}")
    models = {name: root / "modules" / folder / name for folder, name in
              (("pose_detection", "pose_detection.tflite"), ("pose_landmark", "pose_landmark_full.tflite"))}
    for path in models.values():
        if not path.is_file():
            raise UserError(f"{path} not found: reinstall mediapipe=={MEDIAPIPE_VERSION} (it bundles this model)")
    return {"detector": "mediapipe-blazepose", "mediapipe_version": installed, "api": "mp.solutions.pose",
            "static_image_mode": True, "model_complexity": 1, "min_detection_confidence": min_detection_confidence,
            "min_tracking_confidence": min_tracking_confidence,
            "enable_segmentation": False, "resize_long_side": resize_long_side, "resize": "PIL bicubic",
            "pad_fraction": pad_fraction, "pad": "edge pixels repeated, each side, before the resize",
            "variants": {v: MEDIAPIPE_VARIANTS[v] for v in variants},
            "variant_selection": "highest instance score; earlier variant on ties",
            "accept_score": accept_score, "early_stop": "variants run in order; stop at the first detection whose "
                                                        "instance score >= accept_score (None: run all)",
            "min_instance_score": min_instance_score,
            "instance_filter": "a variant's detection counts only if its instance score >= min_instance_score",
            "model_sha256": {name: _file_sha256(path) for name, path in models.items()},
            "mapping_blazepose33_to_coco17": list(BLAZEPOSE_TO_COCO17),
            "instance_score": "mean visibility of the 17 mapped landmarks", "max_persons": 1}


# What mediapipe 0.10.14's native code prints to the process's stderr when a Pose graph first runs (TFLite's delegate
# notice, absl's pre-InitializeLog notice, the feedback manager's "single signature" warning): the same lines for
# every detector of every scoring worker, none about the input. Anything else it prints is passed on.
MEDIAPIPE_START_NOTICES = (
    re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^W0000 [0-9:. ]+\d+ inference_feedback_manager\.cc:\d+\] Feedback manager requires a model with a "
               r"single signature inference\. Disabling support for feedback tensors\.$"),
)


@contextlib.contextmanager
def native_stderr_without(notices: Sequence[re.Pattern]):
    """Capture file descriptor 2 (native libraries write there, not to sys.stderr) for the block; afterwards
    write every captured line that matches none of `notices` to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines()
                    if not any(notice.match(line) for notice in notices)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


class MediaPipePoseDetector(PoseDetector):
    def __init__(self, resize_long_side: int = 256, min_detection_confidence: float = MIN_DETECTION_CONFIDENCE,
                 pad_fraction: float = PAD_FRACTION, min_tracking_confidence: float = MIN_TRACKING_CONFIDENCE,
                 variants: Sequence[str] = VARIANTS, accept_score: float | None = ACCEPT_SCORE,
                 min_instance_score: float = MIN_INSTANCE_SCORE):
        if not 0.0 <= pad_fraction <= 1.0:
            raise UserError(f"MediaPipe pad_fraction must be in [0, 1], got {pad_fraction}")
        for label, value in (("min_detection_confidence", min_detection_confidence),
                             ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"MediaPipe {label} must be in [0, 1], got {value}")
        self._config = mediapipe_config(resize_long_side, min_detection_confidence, pad_fraction,
                                        min_tracking_confidence, variants, accept_score,
                                        min_instance_score)
        self.accept_score = accept_score
        self.min_instance_score = min_instance_score
        import mediapipe as mp

        self.resize_long_side = resize_long_side
        self.pad_fraction = pad_fraction
        self.variants = _check_variants(variants)
        self._started = False  # the graph starts (and prints its start notices) on the first frame
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                            enable_segmentation=False,
                                            min_detection_confidence=min_detection_confidence,
                                            min_tracking_confidence=min_tracking_confidence)

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _resized(self, frame: np.ndarray) -> Any:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(frame))
        height, width = frame.shape[:2]
        scale = self.resize_long_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size == (width, height):
            return image
        return image.resize(size, Image.BICUBIC)

    def _landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """(17, 3) COCO keypoints as fractions of `image` (x, y) and visibility, or None."""
        with warnings.catch_warnings():  # protobuf's deprecation notice, raised inside mediapipe 0.10.14
            warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated",
                                    category=UserWarning)
            with contextlib.nullcontext() if self._started else native_stderr_without(MEDIAPIPE_START_NOTICES):
                result = self._pose.process(np.ascontiguousarray(image))
            self._started = True
        if result.pose_landmarks is None:
            return None
        landmarks = result.pose_landmarks.landmark
        return np.array([[landmarks[i].x, landmarks[i].y, landmarks[i].visibility] for i in BLAZEPOSE_TO_COCO17])

    def detect_frame(self, frame: np.ndarray) -> tuple[FrameDetections, str | None]:
        """Detections of one (H, W, 3) uint8 frame and the variant they came from (None: nobody found)."""
        height, width = frame.shape[:2]
        pad = int(round(self.pad_fraction * max(height, width)))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else frame
        resized = self._resized(padded)
        best: tuple[np.ndarray, float, str] | None = None
        for variant in self.variants:
            found = self._landmarks(np.asarray(_variant_image(resized, variant).convert("RGB")))
            if found is None:
                continue
            if variant == "mirror":
                found = found[list(COCO17_FLIP)]
                found[:, 0] = 1.0 - found[:, 0]
            # landmarks are fractions of the padded frame; keypoints are pixels of the stored frame
            keypoints = np.stack([found[:, 0] * (width + 2 * pad) - pad, found[:, 1] * (height + 2 * pad) - pad,
                                  found[:, 2]], axis=1)
            score = float(keypoints[:, 2].mean())
            if score < self.min_instance_score:
                continue
            if best is None or score > best[1]:
                best = (keypoints, score, variant)
            if self.accept_score is not None and score >= self.accept_score:
                break
        if best is None:
            return FrameDetections.empty(), None
        return FrameDetections(best[0][None], np.array([best[1]])), best[2]

    def detect(self, frames: np.ndarray) -> list[FrameDetections]:
        frames = validate_frames(frames)
        return [self.detect_frame(frame)[0] for frame in frames]

    def close(self) -> None:
        self._pose.close()


MMPOSE_HINT = ("the mmpose detector needs the optional extra: build its wheels once (see README, 'mmpose'), "
               "then pip install --find-links <wheelhouse> -e '.[mmpose]'")


def mmpose_config(pose_config: str | os.PathLike, pose_checkpoint: str | os.PathLike | None,
                  det_config: str | os.PathLike | None = None, det_checkpoint: str | os.PathLike | None = None,
                  bbox_threshold: float = 0.3, nms_threshold: float = 0.3, person_category: int = 0,
                  device: str = "cpu") -> dict[str, Any]:
    """The recorded definition of an mmpose detector (file hashes; the device does not change it)."""
    for label, path in (("pose config", pose_config), ("pose checkpoint", pose_checkpoint),
                        ("detector config", det_config), ("detector checkpoint", det_checkpoint)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{label} {path} not found")
    if (det_config is None) != (det_checkpoint is None):
        raise UserError("the mmdet person detector needs both a config and a checkpoint")
    return {"detector": "mmpose-topdown", "pose_config": Path(pose_config).name,
            "pose_config_sha256": _file_sha256(pose_config),
            "pose_weights": "random-init" if pose_checkpoint is None else Path(pose_checkpoint).name,
            "pose_checkpoint_sha256": None if pose_checkpoint is None else _file_sha256(pose_checkpoint),
            "person_boxes": "whole frame" if det_config is None else "mmdet",
            "det_config_sha256": None if det_config is None else _file_sha256(det_config),
            "det_checkpoint_sha256": None if det_checkpoint is None else _file_sha256(det_checkpoint),
            "bbox_threshold": bbox_threshold, "nms_threshold": nms_threshold, "person_category": person_category,
            "instance_score": "bbox score x mean keypoint score", "input": "RGB frames reversed to BGR"}


class MMPoseDetector(PoseDetector):
    """mmpose top-down pose model (COCO-17 keypoints) with an optional mmdet person detector.

    Without a person detector every frame is one person box (the whole frame). Input frames are RGB; mmpose and
    mmdet expect BGR arrays (cv2 convention), so the channels are reversed before inference.
    """

    def __init__(self, pose_config: str | os.PathLike, pose_checkpoint: str | os.PathLike | None,
                 det_config: str | os.PathLike | None = None, det_checkpoint: str | os.PathLike | None = None,
                 bbox_threshold: float = 0.3, nms_threshold: float = 0.3, person_category: int = 0,
                 device: str = "cpu"):
        try:
            from mmpose.apis import inference_topdown, init_model
        except ImportError as error:
            raise UserError(f"{MMPOSE_HINT} ({error})") from None
        self._config = mmpose_config(pose_config, pose_checkpoint, det_config, det_checkpoint, bbox_threshold,
                                     nms_threshold, person_category)
        self._inference_topdown = inference_topdown
        self.model = init_model(str(pose_config), None if pose_checkpoint is None else str(pose_checkpoint),
                                device=device)
        num_keypoints = int(self.model.dataset_meta.get("num_keypoints", -1))
        if num_keypoints != 17:
            raise UserError(f"{pose_config}: the pose model predicts {num_keypoints} keypoints; PA needs COCO-17")
        self.detector = None
        if det_config is not None:
            try:
                from mmdet.apis import inference_detector, init_detector
                from mmpose.evaluation.functional import nms
                from mmpose.utils import adapt_mmdet_pipeline
            except ImportError as error:
                raise UserError(f"{MMPOSE_HINT} ({error})") from None
            self.detector = init_detector(str(det_config), str(det_checkpoint), device=device)
            self.detector.cfg = adapt_mmdet_pipeline(self.detector.cfg)
            self._inference_detector = inference_detector
            self._nms = nms
        self.bbox_threshold = bbox_threshold
        self.nms_threshold = nms_threshold
        self.person_category = person_category

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _boxes(self, image_bgr: np.ndarray) -> np.ndarray:
        """(N, 5) person boxes xyxy + score."""
        height, width = image_bgr.shape[:2]
        if self.detector is None:
            return np.array([[0.0, 0.0, float(width), float(height), 1.0]])
        instances = self._inference_detector(self.detector, image_bgr).pred_instances.cpu().numpy()
        boxes = np.concatenate([instances.bboxes, instances.scores[:, None]], axis=1)
        keep = (instances.labels == self.person_category) & (instances.scores > self.bbox_threshold)
        boxes = boxes[keep]
        if len(boxes) == 0:
            return boxes.reshape(0, 5)
        return boxes[self._nms(boxes, self.nms_threshold)]

    def detect(self, frames: np.ndarray) -> list[FrameDetections]:
        frames = validate_frames(frames)
        out = []
        for frame in frames:
            image_bgr = np.ascontiguousarray(frame[..., ::-1])
            boxes = self._boxes(image_bgr)
            if len(boxes) == 0:
                out.append(FrameDetections.empty())
                continue
            samples = self._inference_topdown(self.model, image_bgr, boxes[:, :4], bbox_format="xyxy")
            keypoints, scores = [], []
            for box, data_sample in zip(boxes, samples):
                xy = np.asarray(data_sample.pred_instances.keypoints, dtype=np.float64)[0]
                confidence = np.asarray(data_sample.pred_instances.keypoint_scores, dtype=np.float64)[0]
                keypoints.append(np.concatenate([xy, confidence[:, None]], axis=1))
                scores.append(float(box[4]) * float(confidence.mean()))
            out.append(FrameDetections(np.stack(keypoints), np.array(scores)))
        return out


@dataclass(frozen=True)
class DetectorSpec:
    """A picklable recipe for a detector (each worker process builds its own)."""

    kind: str  # "mediapipe" | "mmpose"
    options: dict[str, Any] = field(default_factory=dict)

    KINDS: ClassVar[tuple[str, ...]] = ("mediapipe", "mmpose")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            from fypbench.errors import did_you_mean

            raise did_you_mean(self.kind, self.KINDS, "pose detector")

    def build(self) -> PoseDetector:
        if self.kind == "mediapipe":
            return MediaPipePoseDetector(**self.options)
        return MMPoseDetector(**self.options)

    def config(self) -> dict[str, Any]:
        if self.kind == "mediapipe":
            return mediapipe_config(**self.options)
        return mmpose_config(**self.options)


_WORKER_DETECTOR: PoseDetector | None = None


def _init_worker(spec: DetectorSpec) -> None:
    global _WORKER_DETECTOR
    _WORKER_DETECTOR = spec.build()


def _detect_in_worker(frames: np.ndarray) -> list[FrameDetections]:
    assert _WORKER_DETECTOR is not None, "worker not initialised"
    return _WORKER_DETECTOR.detect(frames)


def detect_videos(spec: DetectorSpec, videos: Sequence[np.ndarray], processes: int = 1) -> list[list[FrameDetections]]:
    """Detections for every frame of every video, in input order; `processes` > 1 uses a spawn process pool
    with one detector per worker (results do not depend on the number of processes)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1 or len(videos) <= 1:
        detector = spec.build()
        try:
            return [detector.detect(frames) for frames in videos]
        finally:
            detector.close()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(processes, len(videos))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(spec,)) as pool:
        return list(pool.map(_detect_in_worker, videos, chunksize=1))


# ---- ground truth and frame-level scores ----------------------------------------------------------------

def gt_keypoints_pixels(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F, 17, 3) normalised sample keypoints -> (F, 17, 3) pixel GT with COCO visibility 2 (visible) or 0."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (17, 3):
        raise ValueError(f"expected (F, 17, 3) COCO-17 keypoints, got shape {keypoints.shape}")
    x, y = keypoints[..., 0] * width, keypoints[..., 1] * height
    visible = (keypoints[..., 2] > 0) & (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    out = np.zeros_like(keypoints)
    out[..., 0] = np.where(visible, x, 0.0)
    out[..., 1] = np.where(visible, y, 0.0)
    out[..., 2] = np.where(visible, 2.0, 0.0)
    return out


def gt_box(gt: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) of the visible GT keypoints, each side at least MIN_BOX_SIDE; None if none is visible."""
    visible = gt[:, 2] > 0
    if not visible.any():
        return None
    xs, ys = gt[visible, 0], gt[visible, 1]
    return (float(xs.min()), float(ys.min()), max(float(xs.max() - xs.min()), MIN_BOX_SIDE),
            max(float(ys.max() - ys.min()), MIN_BOX_SIDE))


def oks(detected: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray = COCO_SIGMAS) -> float:
    """COCO object keypoint similarity over the visible GT keypoints (pycocotools' formula)."""
    visible = gt[:, 2] > 0
    if not visible.any():
        raise ValueError("OKS needs at least one visible GT keypoint")
    variances = (2 * sigmas) ** 2
    squared = ((detected[:, :2] - gt[:, :2]) ** 2).sum(axis=1)
    e = squared / variances / (area + np.spacing(1)) / 2
    return float(np.exp(-e[visible]).mean())


@dataclass(frozen=True)
class FrameScore:
    detected: bool
    top_oks: float
    pck: dict[float, float]
    swapped: bool | None  # None without detection


def score_frame(gt: np.ndarray, detections: FrameDetections, pck_alphas: Sequence[float] = (0.1, 0.05),
                area_fraction: float = AREA_FRACTION) -> FrameScore | None:
    """Frame-level PCK / OKS / swap against the top detection; None when the frame has no visible GT."""
    box = gt_box(gt)
    if box is None:
        return None
    top = detections.top()
    if top is None:
        return FrameScore(False, 0.0, {alpha: 0.0 for alpha in pck_alphas}, None)
    visible = gt[:, 2] > 0
    area = area_fraction * box[2] * box[3]
    distances = np.linalg.norm(top[visible, :2] - gt[visible, :2], axis=1)
    pck = {alpha: float((distances <= alpha * box[3]).mean()) for alpha in pck_alphas}
    straight = oks(top, gt, area)
    swapped = oks(top, gt[list(COCO17_FLIP)], area) > straight
    return FrameScore(True, straight, pck, bool(swapped))


def coco_keypoint_ap(frames: Sequence[tuple[np.ndarray, FrameDetections]], sigmas: np.ndarray = COCO_SIGMAS,
                     area_fraction: float = AREA_FRACTION) -> dict[str, float | int]:
    """pycocotools COCOeval over (pixel GT (17, 3), detections) frames; AP, AP50, AP75, AR (x100).

    Frames without a visible GT keypoint are left out (their detections too).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for gt, detections in frames:
        box = gt_box(gt)
        if box is None:
            continue
        image_id = len(images) + 1
        images.append({"id": image_id})
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                            "keypoints": np.asarray(gt, dtype=np.float64).reshape(-1).tolist(),
                            "num_keypoints": int((gt[:, 2] > 0).sum()), "bbox": list(box),
                            "area": area_fraction * box[2] * box[3]})
        for keypoints, score in zip(detections.keypoints, detections.scores):
            results.append({"image_id": image_id, "category_id": 1, "score": float(score),
                            "keypoints": np.asarray(keypoints, dtype=np.float64).reshape(-1).tolist()})
    summary: dict[str, float | int] = {"n_images": len(images), "n_detections": len(results)}
    if not images:
        return {**summary, "ap": math.nan, "ap50": math.nan, "ap75": math.nan, "ar": math.nan}
    if not results:
        return {**summary, "ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}]}
        ground_truth.createIndex()
        detected = ground_truth.loadRes(results)
        evaluation = COCOeval(ground_truth, detected, iouType="keypoints")
        evaluation.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return {**summary, "ap": 100 * float(stats[0]), "ap50": 100 * float(stats[1]), "ap75": 100 * float(stats[2]),
            "ar": 100 * float(stats[5])}


# ---- shared step and metrics --------------------------------------------------------------------------

class PoseDetectionStep(FeatureStep):
    """Detections of every frame of every video (run once for PA, PCK and the pose diagnostics)."""

    kind = "pose_detections"

    def __init__(self, spec: DetectorSpec, processes: int = 1):
        self.spec = spec
        self.processes = processes
        self._config: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = {"detector": self.spec.config()}
        return dict(self._config)

    def run(self, items: Sequence[VideoItem]) -> list[list[FrameDetections]]:
        return detect_videos(self.spec, [item.frames for item in items], self.processes)


class _PoseMetric(Metric):
    version = "1"

    def __init__(self, step: FeatureStep):
        """`step` yields one list of FrameDetections per video (normally a PoseDetectionStep)."""
        self.step = step

    def steps(self) -> Sequence[FeatureStep]:
        return (self.step,)

    def config(self) -> dict[str, Any]:
        return {"detections": self.step.config(), "gt": "sample keypoints x (W, H); v=2 inside, else 0",
                "area_fraction": AREA_FRACTION, "min_box_side_px": MIN_BOX_SIDE,
                "sigmas": [round(float(s), 4) for s in COCO_SIGMAS]}

    def _frames(self, item: VideoItem, features: Mapping[str, Any]) -> list[tuple[np.ndarray, FrameDetections]]:
        detections = features[self.step.key]
        gt = gt_keypoints_pixels(item.sample.keypoints, item.frames.shape[1], item.frames.shape[2])
        if len(gt) != len(detections):
            raise ValueError(f"video {item.method}/{item.sample_id}: {len(detections)} frames but the sample has "
                             f"{len(gt)} poses")
        return list(zip(gt, detections))

    def _frame_scores(self, item: VideoItem, features: Mapping[str, Any]) -> list[FrameScore]:
        return [s for s in (score_frame(gt, det) for gt, det in self._frames(item, features)) if s is not None]


NO_GT = "no frame has a visible ground-truth keypoint"


class PoseAP(_PoseMetric):
    """PA: COCO OKS-AP x100, pooled over all frames of a method in `aggregate`."""

    name = "pa"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "evaluator": "pycocotools COCOeval keypoints", "oks_thresholds": "0.50:0.05:0.95",
                "max_dets": 20, "area_range": "all", "scale": 100, "pooling": "all frames of all videos of a method"}

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        frames = self._frames(item, features)
        stats = coco_keypoint_ap(frames)
        record = {"ap50": stats["ap50"], "ap75": stats["ap75"], "ar": stats["ar"], "n_images": stats["n_images"],
                  "n_detections": stats["n_detections"],
                  "frames": [{"gt": np.round(gt, 2).reshape(-1).tolist(), "detections": det.to_json()}
                             for gt, det in frames]}
        if stats["n_images"] == 0:
            return nan_result(NO_GT, **record)
        return MetricResult(float(stats["ap"]), record)

    def aggregate(self, results: Sequence[MetricResult]) -> dict[str, Any]:
        frames = [(np.array(f["gt"], dtype=np.float64).reshape(17, 3), FrameDetections.from_json(f["detections"]))
                  for result in results for f in result.extra["frames"]]
        stats = coco_keypoint_ap(frames)
        return {"value": stats["ap"], "ap50": stats["ap50"], "ap75": stats["ap75"], "ar": stats["ar"],
                "n_videos": len(results), "n_images": stats["n_images"], "n_detections": stats["n_detections"]}


class PCK(_PoseMetric):
    alpha: ClassVar[float]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "alpha": self.alpha, "reference_length": PCK_REFERENCE,
                "instance": "highest-scoring detection; none -> 0",
                "aggregation": "frame -> video mean -> method mean"}

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        scores = self._frame_scores(item, features)
        if not scores:
            return nan_result(NO_GT)
        return MetricResult(float(np.mean([s.pck[self.alpha] for s in scores])), {"n_frames": len(scores)})


class PCK10(PCK):
    name = "pck_0.1h"
    alpha = 0.1


class PCK05(PCK):
    name = "pck_0.05h"
    alpha = 0.05


class DetectionRate(_PoseMetric):
    name = "pose_detection_rate"

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        scores = self._frame_scores(item, features)
        if not scores:
            return nan_result(NO_GT)
        detected = sum(s.detected for s in scores)
        return MetricResult(detected / len(scores), {"n_frames": len(scores), "n_detected": detected})


class MeanOKS(_PoseMetric):
    name = "pose_mean_oks"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "instance": "highest-scoring detection; none -> 0"}

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        scores = self._frame_scores(item, features)
        if not scores:
            return nan_result(NO_GT)
        return MetricResult(float(np.mean([s.top_oks for s in scores])), {"n_frames": len(scores)})


class LeftRightSwapRate(_PoseMetric):
    name = "pose_lr_swap_rate"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "swap": "OKS(top, GT with left/right exchanged) > OKS(top, GT)",
                "aggregation": "pooled over detected frames"}

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        scores = [s for s in self._frame_scores(item, features) if s.detected]
        if not scores:
            return nan_result("no frame with both ground truth and a detection", n_detected=0, n_swapped=0)
        swapped = sum(bool(s.swapped) for s in scores)
        return MetricResult(swapped / len(scores), {"n_detected": len(scores), "n_swapped": swapped})

    def aggregate(self, results: Sequence[MetricResult]) -> dict[str, Any]:
        detected = sum(int(r.extra.get("n_detected", 0)) for r in results)
        swapped = sum(int(r.extra.get("n_swapped", 0)) for r in results)
        return {"value": swapped / detected if detected else math.nan, "n_videos": len(results),
                "n_detected_frames": detected, "n_swapped": swapped}


POSE_METRICS: tuple[type[_PoseMetric], ...] = (PoseAP, PCK10, PCK05, DetectionRate, MeanOKS, LeftRightSwapRate)
