"""Paired comparison of the same methods across run directories (e.g. one sampler option changed per run).

    python benchmarks/compare_runs.py --baseline runs/A --methods followpose,followpose-stage1 \
        [--show reference,base-no-pose] runs/B runs/C

A run directory holds one configuration per method name, so a sampler variant of a method lives in its own run.
For every method in --methods and every variant run, this prints the per-video means of the scored metrics on the
samples the variant run holds, and the paired difference from the same method in --baseline on those samples
(95 % percentile bootstrap over samples, fypbench.stats.paired_bootstrap_mean). Methods in --show are printed
from the baseline only, as anchors. Metrics are the per-video rows of scores/scores.parquet (`pa` here is each
video's own OKS-AP, not the leaderboard's pooled AP). The runs must share world and protocol (whose hash covers
every sample's seed): checked from run.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fypbench.stats import paired_bootstrap_mean

METRICS = ("pck_0.1h", "pose_mean_oks", "pose_detection_rate", "pa", "clip_score", "fc_clip_consecutive")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def per_video(run: Path) -> pd.DataFrame:
    path = run / "scores" / "scores.parquet"
    if not path.exists():
        fail(f"{path} does not exist (score the run first: fypbench score {run})")
    scores = pd.read_parquet(path)
    return scores.pivot_table(index=["method", "sample_id"], columns="metric", values="value")


def protocol_of(run: Path) -> tuple:
    if not (run / "run.json").exists():
        fail(f"{run / 'run.json'} does not exist (not a run directory written by fypbench run)")
    record = json.loads((run / "run.json").read_text())
    return record.get("world"), record.get("protocol"), record.get("protocol_hash")  # the hash covers the seeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--methods", required=True)
    parser.add_argument("--show", default="")
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    baseline = per_video(args.baseline)
    anchor_ids: list[str] = []  # the first variant run's samples: where the --show rows are averaged
    print("| run | method | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for run in args.runs:
        if protocol_of(run) != protocol_of(args.baseline):
            fail(f"{run} and {args.baseline} differ in world or protocol (run.json)")
        variant = per_video(run)
        for method in methods:
            if method not in variant.index.get_level_values(0) or method not in baseline.index.get_level_values(0):
                fail(f"method {method!r} is not scored in both {run} and {args.baseline}")
            ids = sorted(variant.loc[method].index)
            anchor_ids = anchor_ids or ids
            ours, theirs = variant.loc[method].reindex(ids), baseline.loc[method].reindex(ids)
            if theirs.isna().all(axis=None):
                fail(f"{args.baseline} has no scores for {method!r} on {run}'s samples")
            cells = []
            for metric in METRICS:
                paired = paired_bootstrap_mean(ours[metric].to_numpy(), theirs[metric].to_numpy())
                cells.append(f"{np.nanmean(ours[metric]):.3f} ({paired.difference:+.3f} "
                             f"[{paired.ci_low:+.3f}, {paired.ci_high:+.3f}])")
            print(f"| {run.name} (n={len(ids)}) | {method} | " + " | ".join(cells) + " |")
    for method in [m for m in args.show.split(",") if m] + methods:
        table = baseline.loc[method].reindex(anchor_ids)
        print(f"| {args.baseline.name} (n={len(anchor_ids)}) | {method} | "
              + " | ".join(f"{np.nanmean(table[m]):.3f}" for m in METRICS) + " |")


if __name__ == "__main__":
    main()
