"""MediaPipe pose detector on mini-world ground-truth renders: detection rate per style, PCK, OKS, PA AUC, speed.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/bench_pose_detector.py --samples 64 \\
        [--options '{"variants": ["plain", "unsharp"], "min_detection_confidence": 0.2}'] [--offset 0]

Renders the `reference` (ground-truth) videos of `--samples` fyp-1024 samples, evenly spaced as in
`fypbench validate-metrics` (`--offset k` shifts every index by k, for a held-out set of samples), runs
`MediaPipePoseDetector(**options)` (the defaults of fypbench/metrics/pose.py when no options are given) on every
frame, and prints one JSON line: the options, seconds per frame, and per style, per motion class and overall the
frame detection rate, PCK@0.1h and mean OKS of the top detection against the true keypoints, the AUC of the
per-video PCK@0.1h against the two pose controls of validate-metrics (another sample's pose; that pose moved
onto the true box), how often each variant's detection was kept, and two frame sets without a person: the
OpenPose skeleton maps of every other sample (detection rate and PCK@0.1h against the sample's keypoints: a method
that only copies its conditioning must not score) and 64 frames of uniform noise (detection rate).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np


def main() -> None:
    from fypbench.methods.reference import ReferenceGenerator
    from fypbench.metrics.pose import MediaPipePoseDetector, gt_keypoints_pixels, score_frame
    from fypbench.metrics.validity import DEFAULT_PROTOCOL, align_pose, auc, evenly_spaced, other_sample_index
    from fypbench.protocol import load_protocol
    from fypbench.world.mini.skeleton import draw_openpose_video

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--options", default="{}", help="JSON keyword arguments of MediaPipePoseDetector")
    args = parser.parse_args()
    options = json.loads(args.options)

    protocol = load_protocol(DEFAULT_PROTOCOL)
    total = len(protocol.samples)
    samples = [protocol.samples[(i + args.offset) % total] for i in evenly_spaced(args.samples, total)]
    videos = ReferenceGenerator().generate(samples)
    detector = MediaPipePoseDetector(**options)
    rows, per_video, chosen = [], [], Counter()
    started = time.perf_counter()
    try:
        for index, (sample, frames) in enumerate(zip(samples, videos)):
            height, width = frames.shape[1:3]
            other = samples[other_sample_index(samples, index, "pose-distractor")].keypoints
            truths = {"true": sample.keypoints, "other": other, "aligned": align_pose(other, sample.keypoints)}
            gts = {name: gt_keypoints_pixels(k, height, width) for name, k in truths.items()}
            video_pck = {name: [] for name in truths}
            for t, frame in enumerate(frames):
                detections, variant = detector.detect_frame(frame)
                chosen[variant or "none"] += 1
                scores = {name: score_frame(gt[t], detections) for name, gt in gts.items()}
                if scores["true"] is None:
                    continue
                rows.append((sample.tags.get("style", ""), sample.tags.get("motion_class", ""),
                             scores["true"].detected, scores["true"].pck[0.1], scores["true"].top_oks))
                for name, score in scores.items():
                    video_pck[name].append(0.0 if score is None else score.pck[0.1])
            per_video.append((sample.tags.get("style", ""), sample.tags.get("motion_class", ""),
                              {name: float(np.mean(v)) for name, v in video_pck.items()}))
    finally:
        detector.close()
    elapsed = time.perf_counter() - started
    detector_nobody = MediaPipePoseDetector(**options)

    def summary(keep_row, keep_video) -> dict[str, float]:
        selected = [r for r in rows if keep_row(r)]
        videos_kept = [v[2] for v in per_video if keep_video(v)]
        truth = [v["true"] for v in videos_kept]
        return {"n": len(selected), "det": round(float(np.mean([r[2] for r in selected])), 3),
                "pck": round(float(np.mean([r[3] for r in selected])), 3),
                "oks": round(float(np.mean([r[4] for r in selected])), 3),
                "auc_other": round(auc(truth, [v["other"] for v in videos_kept]), 3),
                "auc_box": round(auc(truth, [v["aligned"] for v in videos_kept]), 3)}

    report: dict[str, object] = {"options": options, "samples": args.samples, "offset": args.offset,
                                 "s_per_frame": round(elapsed / sum(len(v) for v in videos), 4)}
    report["all"] = summary(lambda r: True, lambda v: True)
    for motion_class in ("upright", "floor"):
        report[motion_class] = summary(lambda r: r[1] == motion_class, lambda v: v[1] == motion_class)
    for style in sorted({r[0] for r in rows}):
        report[style] = {k: v for k, v in summary(lambda r: r[0] == style, lambda v: v[0] == style).items()
                         if k in ("n", "det", "pck")}
    report["kept_variant"] = dict(chosen)
    # frames without a person: each sample's OpenPose skeleton map (a method that only copies its conditioning
    # must not score) and uniform noise
    skeleton_detected, skeleton_pck = [], []
    for sample in samples[::2]:
        maps = draw_openpose_video(sample.openpose, videos[0].shape[1])
        gt = gt_keypoints_pixels(sample.keypoints, *maps.shape[1:3])
        for frame_gt, detections in zip(gt, detector_nobody.detect(maps)):
            score = score_frame(frame_gt, detections)
            if score is not None:
                skeleton_detected.append(score.detected)
                skeleton_pck.append(score.pck[0.1])
    noise = np.random.default_rng(0).integers(0, 256, (64, *videos[0].shape[1:]), dtype=np.uint8)
    noise_detected = [len(d) > 0 for d in detector_nobody.detect(noise)]
    detector_nobody.close()
    report["skeleton_maps"] = {"n": len(skeleton_pck), "det": round(float(np.mean(skeleton_detected)), 3),
                               "pck": round(float(np.mean(skeleton_pck)), 3)}
    report["noise_det"] = round(float(np.mean(noise_detected)), 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
