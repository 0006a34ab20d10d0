"""Does Follow-Your-Pose's pose following grow with stage-1 training? Stage-1 exports sampled per frame, paired.

    OMP_NUM_THREADS=1 python benchmarks/bench_stage1_steps.py --run-dir runs/stage1-steps --limit 64 \
        steps1000=runs/s1-export-1000 steps2000=runs/s1-export-2000 [--pose-guidance] [--out FILE.md]

The exports come from one training continued in place, each stop exported (`train.steps` may grow on resume):

    fypbench train followpose-stage1 --world mini --preset mini --out runs/s1 --set train.steps=1000
    cp -r runs/s1/followpose runs/s1-export-1000
    fypbench train followpose-stage1 --world mini --preset mini --out runs/s1 --set train.steps=2000   # resumes
    ...

Every export is the `followpose-stage1` generator (the 2D base UNet + that pose encoder, every frame sampled
independently, 25 DDIM steps, CFG 5) on the first --limit dev128 samples with each sample's own initial noise, next
to `shipped` (the same generator on the shipped Follow-Your-Pose weights). Rows, scores and paired bootstrap CIs
come from the runner, the scoring stage and the results record (fypbench.runner / scoring / results), so the
numbers are the leaderboard's definitions. `--pose-guidance`: the pose in the text half of CFG only (the
`pose-guidance` run preset's option), instead of both halves (the official sampler).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

METRICS = ("clip_score", "fc_clip_consecutive", "pa", "pck_0.1h", "pose_detection_rate", "pose_mean_oks")
BASELINE = "shipped"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", metavar="NAME=FOLDER", help="stage-1 deltas folders to compare")
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory (resumable: finished videos stay)")
    parser.add_argument("--limit", type=int, default=64, help="the first N dev128 samples")
    parser.add_argument("--pose-guidance", action="store_true", help="pose in the text half of CFG only")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    exports = {}
    for item in args.exports:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            parser.error(f"{item!r}: expected NAME=FOLDER")
        if name == BASELINE or name in exports:
            parser.error(f"{name!r}: a name used twice (or the reserved {BASELINE!r})")
        exports[name] = Path(folder)
    args.exports = exports
    return args


def markdown(record: dict, args, seconds: float) -> str:
    table, paired = record["table"], record["paired"]["comparisons"]
    mode = "pose in the text half of CFG only (pose-guidance)" if args.pose_guidance else "pose in both CFG halves"
    lines = [f"Command: `python benchmarks/bench_stage1_steps.py {' '.join(sys.argv[1:])}` ({seconds:.0f} s)  ",
             f"followpose-stage1 per frame, 25 DDIM steps, CFG 5, {mode}; first {args.limit} dev128 samples; "
             f"paired 95 % bootstrap CIs over samples against `{BASELINE}`.", "",
             "| weights | " + " | ".join(METRICS) + " | " + " | ".join(f"d {m} [95% CI]" for m in METRICS) + " |",
             "|---" * (1 + 2 * len(METRICS)) + "|"]
    for method, row in table.items():
        values = [f"{row[m]['value']:.3f}" for m in METRICS]
        deltas = ["—"] * len(METRICS) if method == BASELINE else [
            f"{paired[method][m]['difference']:+.3f} [{paired[method][m]['ci_low']:+.3f}, "
            f"{paired[method][m]['ci_high']:+.3f}]" for m in METRICS]
        lines.append(f"| {method} | " + " | ".join(values) + " | " + " | ".join(deltas) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from fypbench.io import write_text_atomic
    from fypbench.models.followpose.generator import FollowPoseStage1Generator
    from fypbench.protocol import load_protocol, select_samples
    from fypbench.registry import WORLDS
    from fypbench.results import build_results
    from fypbench.runner import generate_and_score

    start = time.perf_counter()
    world = WORLDS.load("mini")()
    protocol = load_protocol("fyp-1024")
    samples, subset = select_samples(protocol, "dev128", args.limit)
    base = world.base_model()
    options = {"unconditional_pose": not args.pose_guidance}
    generators = {BASELINE: FollowPoseStage1Generator(base, world.method_weights("followpose"), **options)}
    for name, folder in args.exports.items():
        generators[name] = FollowPoseStage1Generator(base, folder, **options)
    generate_and_score(args.run_dir, generators, samples, world="mini", protocol=protocol, subset=subset,
                       limit=args.limit)
    text = markdown(build_results(args.run_dir, baseline=BASELINE), args, time.perf_counter() - start)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
