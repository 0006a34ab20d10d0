"""Does a pose-conditioned method's pose following grow with its training budget? Exports sampled, paired.

    OMP_NUM_THREADS=1 python benchmarks/bench_training_steps.py --method controlnet --run-dir runs/cn-steps \
        --limit 64 steps1000=runs/cn-export-1000 steps2000=runs/cn-export-2000 [--pose-guidance] [--out FILE.md]

The exports come from one training continued in place, each stop exported (`train.steps` may grow on resume):

    fypbench train controlnet --world mini --preset mini --out runs/cn --set train.steps=1000
    cp -r runs/cn/controlnet runs/cn-export-1000
    fypbench train controlnet --world mini --preset mini --out runs/cn --set train.steps=2000   # resumes
    ...

--method picks the generator every export is loaded into, with its mini defaults (25 DDIM steps, CFG 5):
`followpose-stage1` (stage-1 deltas: the 2D base UNet + that pose encoder, every frame sampled independently;
exports of `fypbench train followpose-stage1`), `controlnet` or `t2i-adapter` (their recipes' exports). Each runs
on the first --limit dev128 samples with each sample's own initial noise, next to `shipped` (the same generator on
the shipped weights). Rows, scores and paired bootstrap CIs come from the runner, the scoring stage and the
results record (fypbench.runner / scoring / results), so the numbers are the leaderboard's definitions.
`--pose-guidance`: the pose in the text half of CFG only (the `pose-guidance` run preset's option), instead of
both halves (the official samplers).
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
METHODS = ("followpose-stage1", "controlnet", "t2i-adapter")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", metavar="NAME=FOLDER", help="exported weights folders to compare")
    parser.add_argument("--method", choices=METHODS, default="followpose-stage1",
                        help="the generator the exports are loaded into (default: followpose-stage1)")
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
    lines = [f"Command: `python benchmarks/bench_training_steps.py {' '.join(sys.argv[1:])}` ({seconds:.0f} s)  ",
             f"{args.method} per frame, 25 DDIM steps, CFG 5, {mode}; first {args.limit} dev128 samples; "
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


def make_generator(method: str, world, folder: Path | None, options: dict):
    """`method`'s generator on `folder`'s weights (None: the shipped ones), mini defaults."""
    if method == "followpose-stage1":
        from fypbench.models.followpose.generator import FollowPoseStage1Generator

        return FollowPoseStage1Generator(world.base_model(), folder or world.method_weights("followpose"), **options)
    from fypbench.registry import METHODS as GENERATORS

    return GENERATORS.load(method)(world, weights=folder, **options)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from fypbench.io import write_text_atomic
    from fypbench.protocol import load_protocol, select_samples
    from fypbench.registry import WORLDS
    from fypbench.results import build_results
    from fypbench.runner import generate_and_score

    start = time.perf_counter()
    world = WORLDS.load("mini")()
    protocol = load_protocol("fyp-1024")
    samples, subset = select_samples(protocol, "dev128", args.limit)
    options = {"unconditional_pose": not args.pose_guidance}
    generators = {BASELINE: make_generator(args.method, world, None, options)}
    for name, folder in args.exports.items():
        generators[name] = make_generator(args.method, world, folder, options)
    generate_and_score(args.run_dir, generators, samples, world="mini", protocol=protocol, subset=subset,
                       limit=args.limit)
    text = markdown(build_results(args.run_dir, baseline=BASELINE), args, time.perf_counter() - start)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
