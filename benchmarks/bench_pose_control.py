"""Pose-control probe: does the generated figure go where the skeleton is, or where the initial noise puts it?

    OMP_NUM_THREADS=1 python benchmarks/bench_pose_control.py [--every 64] [--shift 0.15]
        [--methods reference,followpose-stage1,followpose,t2i-adapter,controlnet] [--set METHOD.OPTION=VALUE ...]

PA and PCK say how far the figure is from the skeleton, not why. This probe moves the skeleton and watches the
figure: for each probed sample (fyp-1024, every --every-th sample), the keypoints (COCO-17 and OpenPose-18) are
shifted horizontally by -d and by +d (d = --shift, or less where the skeleton would leave the frame; samples with
room for less than 0.08 are skipped), and each method generates both shifted samples with the sample's own seed,
i.e. the same initial noise. MediaPipe (the PA detector, fypbench.metrics.pose) finds the figure in every frame;
its x position is the mean x of the detected shoulders and hips. Per frame detected in both variants:

    gain = (x(+d) - x(-d)) / (2 d W)      1: the figure follows the skeleton; 0: it stays where the noise put it

Reported per method: the mean of the per-sample mean gains with a bootstrap 95 % CI over samples; "followed" =
the share of those frames whose figure moved the right way by at least half the shift (gain >= 0.5: robust to
the detector picking a ghost figure), with its CI; and the share of frames detected in both variants.
`base-no-pose` needs no probe (it never sees the pose: gain 0 by construction). `reference` is the ceiling of
the measurement itself: the ground-truth render moved by -d and +d pixels (edge-padded), so that its gain shows
what the detector reads off a figure that follows the skeleton exactly.
Methods that take their pose from the sample's source video (Tune-A-Video, MasaCtrl's source branch) are not
probed: the shift only moves the skeleton. Wall clock is printed; the figures do not depend on the machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

TORSO = (5, 6, 11, 12)  # COCO-17 shoulders and hips
MIN_SHIFT = 0.08
DEFAULT_METHODS = "reference,followpose-stage1,followpose,t2i-adapter,controlnet"


def shifted(sample, dx: float):
    """The sample with its skeleton moved by dx (normalised width) in every frame."""
    keypoints, openpose = np.array(sample.keypoints, copy=True), np.array(sample.openpose, copy=True)
    keypoints[..., 0] += dx
    openpose[..., 0] += dx
    return dataclasses.replace(sample, keypoints=keypoints, openpose=openpose)


def room(sample) -> float:
    """How far the skeleton can move left and right and stay inside the frame (normalised)."""
    visible = sample.keypoints[..., 2] > 0
    xs = sample.keypoints[..., 0][visible]
    return float(min(xs.min(), 1.0 - xs.max()) - 0.02) if xs.size else 0.0


def translated(video: np.ndarray, pixels: int) -> np.ndarray:
    """(F, H, W, 3) moved horizontally by `pixels` (positive: right), the vacated columns edge-padded."""
    if pixels == 0:
        return video
    pad = ((0, 0), (0, 0), (max(pixels, 0), max(-pixels, 0)), (0, 0))
    padded = np.pad(video, pad, mode="edge")
    return padded[:, :, max(-pixels, 0): max(-pixels, 0) + video.shape[2]]


class ShiftedReference:
    """The `reference` renders of the unshifted sample, moved as far as its skeleton was (the probe's ceiling)."""

    def __init__(self, world, originals):
        from fypbench.registry import METHODS

        self.reference = METHODS.load("reference").from_world(world)
        self.originals = {sample.id: sample for sample in originals}

    def generate(self, samples):
        videos = []
        for sample in samples:
            original = self.originals[sample.id]
            dx = float(np.mean(sample.keypoints[..., 0] - original.keypoints[..., 0]))
            (video,) = self.reference.generate([original])
            videos.append(translated(video, int(round(dx * video.shape[2]))))
        return videos


def torso_x(frames, detector) -> np.ndarray:
    """(F,) x (pixels) of the top detection's shoulders and hips per frame; NaN where nobody is found."""
    out = []
    for detections in detector.detect(np.ascontiguousarray(frames)):
        top = detections.top()
        out.append(np.nan if top is None else float(np.mean(top[list(TORSO), 0])))
    return np.array(out)


def mean_ci(values: np.ndarray) -> str:
    """'mean [low, high]': the leaderboards' percentile bootstrap 95 % CI over samples (fypbench.stats)."""
    from fypbench.stats import bootstrap_mean

    if not len(values):
        return f"{'nan':>6} {'':>16}"
    estimate = bootstrap_mean(values)
    return f"{estimate.value:6.3f} [{estimate.ci_low:6.3f}, {estimate.ci_high:6.3f}]"


def parse_options(items: list[str]) -> dict[str, dict[str, object]]:
    """--set METHOD.OPTION=VALUE items (values parsed as YAML, as `--set` of the training recipes) per method."""
    from fypbench.training.common import parse_overrides

    options: dict[str, dict[str, object]] = {}
    for key, value in parse_overrides(items).items():
        method, dot, option = key.partition(".")
        if not dot:
            raise SystemExit(f"--set {key!r}: expected METHOD.OPTION=VALUE")
        options.setdefault(method, {})[option] = value
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=64)
    parser.add_argument("--shift", type=float, default=0.15)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE")
    args = parser.parse_args()

    from fypbench.metrics.pose import MediaPipePoseDetector
    from fypbench.protocol import load_protocol
    from fypbench.registry import METHODS
    from fypbench.world.mini.world import MiniWorld

    options = parse_options(args.set)
    protocol = load_protocol("fyp-1024")
    probes = []
    for sample in protocol.samples[:: args.every]:
        d = min(args.shift, room(sample))
        if d >= MIN_SHIFT:
            probes.append((sample, d))
    print(f"fyp-1024 every {args.every}th sample: {len(probes)} probed (shift up to {args.shift}, "
          f"mean {np.mean([d for _, d in probes]):.3f} of the width)")
    world, detector = MiniWorld(), MediaPipePoseDetector()
    print(f"{'method':<20} {'gain':>6} {'95% CI':>16} {'followed':>8} {'95% CI':>16} {'frames found in both':>22} "
          f"{'seconds':>8}")
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        start = time.perf_counter()
        if name == "reference":
            generator = ShiftedReference(world, [sample for sample, _ in probes])
        else:
            generator = METHODS.load(name).from_world(world, **options.get(name, {}))
        per_sample, per_frame = [], []
        found = total = 0
        for sample, d in probes:
            left, right = generator.generate([shifted(sample, -d), shifted(sample, +d)])
            x_left, x_right = torso_x(left, detector), torso_x(right, detector)
            both = ~np.isnan(x_left) & ~np.isnan(x_right)
            found, total = found + int(both.sum()), total + len(both)
            if both.any():
                width = left.shape[2]
                gain = (x_right[both] - x_left[both]) / (2 * d * width)
                per_sample.append(float(np.mean(gain)))
                per_frame.append(gain)
        gains = np.array(per_sample)
        followed = [float(np.mean(g >= 0.5)) for g in per_frame]
        print(f"{name:<20} {mean_ci(gains)} {mean_ci(np.array(followed))} "
              f"{found:>10}/{total:<11} {time.perf_counter() - start:8.0f}", flush=True)
    detector.close()


if __name__ == "__main__":
    main()
