"""Where a `fypbench run` spent its time, per method and per stage, and what the full protocol would cost.

    python benchmarks/run_breakdown.py runs/mini-fyp-1024-dev128 [--full 1024 --full-sources 64]

Reads only the run directory: every stored video's meta (`seconds_per_sample` of the generate() call that made
it, the batch it was in) and `scores/timings.json` (wall seconds per scoring feature step). Prints per method:
videos, generation seconds (sum over its generate() calls), seconds per sample, the share of the run; per
scoring step: seconds and seconds per video; then a projection to the full protocol (--full samples, with
per-source costs, i.e. Tune-A-Video's tuning, scaled by --full-sources; the video meta's `call_stats` tell tuning
from sampling and count cache hits) at the same per-sample cost, and which stage dominates. Generation seconds
are process wall time: with several shards at once on a shared machine they add up to more than the wall clock.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def generation_seconds(run_dir: Path) -> dict[str, dict[str, float]]:
    """{method: {"videos": n, "seconds": s, "calls": c, **counters}}: each generate() call (batch) counted once;
    counters = the sums of the calls' `call_stats` (Tune-A-Video: tuned, cache_hits, tuning_seconds)."""
    out: dict[str, dict[str, float]] = {}
    for method_dir in sorted((run_dir / "videos").iterdir()):
        batches: dict[tuple[str, ...], float] = {}
        counters: dict[tuple[str, ...], dict[str, float]] = {}
        videos = 0
        for meta_path in method_dir.glob("*.json"):
            meta = json.loads(meta_path.read_text())
            videos += 1
            batch = tuple(meta.get("batch") or [meta["sample_id"]])
            batches[batch] = float(meta.get("seconds_per_sample", 0.0)) * len(batch)
            counters[batch] = meta.get("call_stats", {})
        totals: dict[str, float] = defaultdict(float)
        for stats in counters.values():
            for key, value in stats.items():
                totals[key] += value
        out[method_dir.name] = {**totals, "videos": videos, "seconds": sum(batches.values()), "calls": len(batches)}
    return out


def scoring_seconds(run_dir: Path) -> dict[str, dict[str, float]]:
    path = run_dir / "scores" / "timings.json"
    steps: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "videos": 0})
    if path.is_file():
        for session in json.loads(path.read_text())["sessions"]:
            for key, entry in session["steps"].items():
                steps[key]["seconds"] += entry["seconds"]
                steps[key]["videos"] += entry["videos"]
    return dict(steps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--full", type=int, default=1024, help="samples of the full protocol")
    parser.add_argument("--full-sources", type=int, default=64, help="source videos of the full protocol")
    args = parser.parse_args(argv)
    run = json.loads((args.run_dir / "run.json").read_text())
    n = len(run["sample_ids"])
    from fypbench.scoring import load_run_samples

    sources = len({json.dumps(s.source, sort_keys=True) for s in load_run_samples(args.run_dir)})
    generation = generation_seconds(args.run_dir)
    scoring = scoring_seconds(args.run_dir)
    total = sum(g["seconds"] for g in generation.values()) + sum(s["seconds"] for s in scoring.values())
    print(f"run {args.run_dir}: {n} samples, {sources} source sequences, subset {run.get('subset')}, "
          f"limit {run.get('limit')}")
    print(f"{'stage':<34}{'videos':>8}{'seconds':>10}{'s/video':>9}{'share':>8}")
    rows = [(f"generate {m}", g["videos"], g["seconds"]) for m, g in generation.items()]
    rows += [(f"score {k}", s["videos"], s["seconds"]) for k, s in scoring.items()]
    for name, videos, seconds in sorted(rows, key=lambda r: -r[2]):
        print(f"{name:<34}{videos:>8}{seconds:>10.0f}{seconds / max(videos, 1):>9.2f}{seconds / total:>8.1%}")
    print(f"{'total (process seconds)':<34}{'':>8}{total:>10.0f}")
    scale = args.full / n
    projected = 0.0
    for name, videos, seconds in rows:
        if name.startswith("score "):  # every method's videos: the stage grows with the samples
            projected += seconds * scale
            continue
        method = generation[name.removeprefix("generate ")]
        per_sample = scale * n / max(videos, 1)  # a method covering part of the run's samples counts for all
        if "tuned" in method or "cache_hits" in method:  # per-source work grows with the sources
            tuning, tuned = method.get("tuning_seconds", 0.0), int(method.get("tuned", 0))
            projected += (seconds - tuning) * per_sample + (tuning / tuned * args.full_sources if tuned else 0.0)
            print(f"{name}: {tuned} tunings here ({tuning / max(tuned, 1):.1f} s each), "
                  f"{int(method.get('cache_hits', 0))} from the tuning cache (not in these seconds)"
                  + ("" if tuned else f"; no tuning timed: the projection leaves {args.full_sources} out"))
        elif name == "generate tune-a-video":  # a run made before the counters were recorded
            projected += seconds * args.full_sources / sources
            print(f"{name}: tunings and cache hits not recorded (run made before call_stats); scaled as if the "
                  f"whole cost were per source")
        else:
            projected += seconds * per_sample
    print(f"projected for {args.full} samples ({args.full_sources} sources) at these per-video costs: "
          f"{projected / 3600:.2f} process-hours; on 2 parallel shards ~{projected / 7200:.2f} h wall")
    if rows:
        top = max(rows, key=lambda r: r[2])
        print(f"dominant stage: {top[0]} ({top[2] / total:.0%} of the run)")


if __name__ == "__main__":
    main()
