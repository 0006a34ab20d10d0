"""The scoring stage's metrics: CLIP score, frame consistency, pose accuracy and pose diagnostics.

    python -c "from fypbench.metrics import METRICS; print(METRICS.names())"

Definitions: ../shared/reference/metrics.md and the module docstrings of clip_metrics.py and pose.py.
`build_metrics` constructs metrics so that those sharing a backbone share one feature step (one CLIP image
embedding pass for CS and FC; one detector pass for all pose metrics). Importing this package is cheap:
torch, open_clip and mediapipe load only when a metric is built.

The stage around them: fypbench.scoring (`fypbench score RUN_DIR`: stored videos -> scores.parquet, resumable)
and fypbench.metrics.validity (`fypbench validate-metrics`: controls proving each metric discriminates). The
mini world's CLIP is trained by fypbench.training.evaluator_clip with the compact vocabulary of clip_vocab.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fypbench.errors import UserError, did_you_mean
from fypbench.registry import Registry

if TYPE_CHECKING:
    from fypbench.metrics.base import Metric
    from fypbench.metrics.pose import DetectorSpec

METRICS = Registry("metric")
METRICS.register("clip_score", "fypbench.metrics.clip_metrics:ClipScore",
                 "CS: mean over frames of 100*max(cos(image, prompt), 0); world's CLIP (sd: ViT-L-14 openai)")
METRICS.register("clip_score_b32", "fypbench.metrics.clip_metrics:ClipScoreB32",
                 "CS on ViT-B-32 openai (comparison with papers using B/32; sd world only)")
METRICS.register("fc_clip_consecutive", "fypbench.metrics.clip_metrics:FrameConsistency",
                 "FC: 100 * mean cosine of consecutive frames' CLIP image embeddings")
METRICS.register("fc_clip_allpairs", "fypbench.metrics.clip_metrics:FrameConsistencyAllPairs",
                 "FC variant: 100 * mean cosine over all frame pairs")
METRICS.register("pa", "fypbench.metrics.pose:PoseAP",
                 "PA: COCO OKS-AP x100 of detected vs input keypoints, pooled over all frames of a method")
METRICS.register("pck_0.1h", "fypbench.metrics.pose:PCK10", "PCK@0.1 x GT bbox height, top detection")
METRICS.register("pck_0.05h", "fypbench.metrics.pose:PCK05", "PCK@0.05 x GT bbox height, top detection")
METRICS.register("pose_detection_rate", "fypbench.metrics.pose:DetectionRate",
                 "share of frames where the detector finds a person")
METRICS.register("pose_mean_oks", "fypbench.metrics.pose:MeanOKS", "mean OKS of the top detection (0 if none)")
METRICS.register("pose_lr_swap_rate", "fypbench.metrics.pose:LeftRightSwapRate",
                 "share of detected frames where the left/right-swapped pose fits better")

CLIP_METRICS = ("clip_score", "fc_clip_consecutive", "fc_clip_allpairs")
POSE_METRIC_NAMES = ("pa", "pck_0.1h", "pck_0.05h", "pose_detection_rate", "pose_mean_oks", "pose_lr_swap_rate")
DEFAULT_METRICS = ("clip_score", "fc_clip_consecutive", *POSE_METRIC_NAMES)


def default_detector(world: str) -> DetectorSpec:
    """mini: MediaPipe BlazePose (offline, bundled model). sd: mmpose needs user files, so it is explicit."""
    from fypbench.metrics.pose import DetectorSpec

    if world == "mini":
        return DetectorSpec("mediapipe")
    raise UserError(f"world {world!r} has no default pose detector: pass an mmpose config and checkpoint "
                    "(--pose-config/--pose-checkpoint) or choose --pose-detector mediapipe explicitly")


def build_metrics(names: Sequence[str], world: str, clip_weights: str | os.PathLike | None = None,
                  clip_b32_weights: str | os.PathLike | None = None, pose_detector: DetectorSpec | None = None,
                  pose_processes: int = 1, device: str = "cpu", embedder: Any = None) -> list[Metric]:
    """Metrics by name, sharing one CLIP embedder and one pose detection step.

    `embedder` overrides the world's CLIP (tests, custom backbones); otherwise the world's CLIP is loaded
    from `clip_weights` (see clip_metrics.load_clip_for_world).
    """
    names = list(dict.fromkeys(names))
    for name in names:
        if name not in METRICS:
            raise did_you_mean(name, METRICS.names(), "metric")
    metrics: list[Metric] = []
    if any(name in CLIP_METRICS for name in names):
        from fypbench.metrics.clip_metrics import load_clip_for_world

        clip = embedder if embedder is not None else load_clip_for_world(world, clip_weights, device=device)
    if "clip_score_b32" in names:
        if world != "sd":
            raise UserError("clip_score_b32 uses OpenAI's ViT-B-32 and exists for the sd world only")
        from fypbench.metrics.clip_metrics import load_openai_clip

        clip_b32 = load_openai_clip("ViT-B-32", clip_b32_weights, device=device)
    if any(name in POSE_METRIC_NAMES for name in names):
        from fypbench.metrics.pose import PoseDetectionStep

        pose_step = PoseDetectionStep(pose_detector if pose_detector is not None else default_detector(world),
                                      processes=pose_processes)
    for name in names:
        cls = METRICS.load(name)
        if name in CLIP_METRICS:
            metrics.append(cls(clip))
        elif name == "clip_score_b32":
            metrics.append(cls(clip_b32))
        else:
            metrics.append(cls(pose_step))
    return metrics
