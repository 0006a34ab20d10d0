"""COCO keypoint AP for one ground-truth person per image, fast enough to bootstrap.

    python -c "from fypbench.metrics.fast_ap import KeypointAPTable; help(KeypointAPTable)"

pycocotools' COCOeval takes seconds per call on thousands of frames, so recomputing the pooled PA for every
bootstrap replicate is too slow. With exactly one (non-crowd) ground truth per image - the benchmark's case - its
matching reduces to: the first detection of an image, in descending score order, whose OKS reaches the threshold
is the true positive; every other detection is a false positive. This module precomputes, per image, the detection
scores (top 20, COCO's order) and the index of that first hit at each OKS threshold, then accumulates precision and
recall exactly as COCOeval.accumulate does (stable merge sort over all detections, monotone precision, 101 recall
points). tests/metrics/test_fast_ap.py checks it against COCOeval, ties included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fypbench.metrics.pose import AREA_FRACTION, COCO_SIGMAS, FrameDetections, gt_box, oks

OKS_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)
MAX_DETS = 20


class KeypointAPTable:
    """Per-image detection scores and first-hit indices; `ap(images)` for any multiset of image indices."""

    def __init__(self, frames: Sequence[tuple[np.ndarray, FrameDetections]], sigmas: np.ndarray = COCO_SIGMAS,
                 area_fraction: float = AREA_FRACTION):
        scores, first_hit, counts = [], [], []
        for gt, detections in frames:
            box = gt_box(gt)
            if box is None:
                continue  # COCOeval ignores frames without a visible GT keypoint (and their detections)
            area = area_fraction * box[2] * box[3]
            order = np.argsort(-detections.scores, kind="mergesort")[:MAX_DETS]
            image_scores = detections.scores[order]
            image_oks = np.array([oks(detections.keypoints[k], gt, area, sigmas) for k in order])
            hits = np.full(len(OKS_THRESHOLDS), -1, dtype=np.int64)
            for t, threshold in enumerate(OKS_THRESHOLDS):
                reached = np.flatnonzero(image_oks >= min(threshold, 1 - 1e-10))
                if reached.size:
                    hits[t] = reached[0]
            scores.append(image_scores)
            first_hit.append(hits)
            counts.append(len(order))
        self.num_images = len(scores)
        self.counts = np.array(counts, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.scores = np.concatenate(scores) if scores else np.zeros(0)
        self.first_hit = np.stack(first_hit) if first_hit else np.zeros((0, len(OKS_THRESHOLDS)), np.int64)

    def ap(self, images: np.ndarray | None = None) -> dict[str, float]:
        """AP / AP50 / AP75 / AR (x100) pooled over `images` (indices, repeats allowed; default all, in order)."""
        images = np.arange(self.num_images) if images is None else np.asarray(images, dtype=np.int64)
        if images.size == 0:
            return {"ap": float("nan"), "ap50": float("nan"), "ap75": float("nan"), "ar": float("nan")}
        counts = self.counts[images]
        total = int(counts.sum())
        if total == 0:
            return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
        owner = np.repeat(np.arange(images.size), counts)  # position of each detection's image in `images`
        within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        flat = self.offsets[images][owner] + within
        order = np.argsort(-self.scores[flat], kind="mergesort")
        hits = self.first_hit[images][owner]  # (D, T)
        true_positive = (within[:, None] == hits)[order]  # (D, T)
        tp = np.cumsum(true_positive, axis=0, dtype=np.float64)
        fp = np.cumsum(~true_positive, axis=0, dtype=np.float64)
        recall = tp / images.size
        precision = tp / (tp + fp + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1], axis=0)[::-1]  # COCO's monotone envelope
        per_threshold = np.zeros((len(OKS_THRESHOLDS), len(RECALL_THRESHOLDS)))
        for t in range(len(OKS_THRESHOLDS)):
            positions = np.searchsorted(recall[:, t], RECALL_THRESHOLDS, side="left")
            valid = positions < total
            per_threshold[t, valid] = precision[positions[valid], t]
        return {"ap": 100 * float(per_threshold.mean()), "ap50": 100 * float(per_threshold[0].mean()),
                "ap75": 100 * float(per_threshold[5].mean()), "ar": 100 * float(recall[-1].mean())}
