"""How fast could `fypbench run --methods all` be on this machine? A FLOP-count lower bound per method.

    OMP_NUM_THREADS=1 python benchmarks/bench_run_lower_bound.py [--methods all] [--samples 2] [--full 1024]
        [--preset fast] [--scoring-minutes 28]

For every method of the mini world with its default mini preset (or a run preset's options, `--preset`), one
`generate()` call on --samples fyp-1024 samples (two samples of one source: Tune-A-Video then tunes once and
reuses the tuning) runs under torch.utils.flop_counter.FlopCounterMode, which counts the FLOPs of matrix products,
convolutions and attention (CPU SDPA registered here; element-wise work is not counted, so the count is a lower
bound). Tune-A-Video's tuning runs in a fresh temporary cache (so it is counted) and is split from its per-sample
cost by a second call on the already-tuned source. The per-sample and per-source FLOPs are scaled to the full
protocol (--full samples, the protocol's number of distinct sources) and divided by this machine's fp32 matmul
peak, measured here (4096^3 GEMM, best of 8, with 1 thread and with every core; the higher the peak, the
lower the bound, so a generous peak keeps the bound honest) and at --reference-peak, to give the time the run could
not beat even at 100 % of the peak on every core, beside the achieved rate of each call (MFU).

It also bounds the batching target of issue 7: batched generation can be at most peak / looped rate faster than
a one-sample-at-a-time loop, where the looped rate is measured here on the same weights (one sample per call).
Scoring (MediaPipe BlazePose through TFLite, CLIP) is not FLOP-counted: --scoring-minutes adds a measured figure
(28 min: the scoring of the committed full `--preset fast` run on 2 processes, README). The machine is shared:
rerun before trusting a small difference.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

DEFAULT_METHODS = "followpose,followpose-stage1,base-no-pose,controlnet,t2i-adapter,masactrl,tune-a-video"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma list, or 'all' (reference costs nothing)")
    parser.add_argument("--samples", type=int, default=2, help="samples per counted generate() call (>= 2)")
    parser.add_argument("--full", type=int, default=1024, help="protocol size to project to")
    parser.add_argument("--preset", default=None, help="a run preset whose method options to apply (e.g. fast)")
    parser.add_argument("--scoring-minutes", type=float, default=28.0, help="measured scoring wall time to add")
    parser.add_argument("--target-hours", type=float, default=2.0)
    parser.add_argument("--reference-peak", type=float, default=190.0,
                        help="another fp32 peak (GFLOP/s, all cores) to bound at (190: issue 7's figure for this box)")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be >= 2 (Tune-A-Video's tuning is told apart by a second sample of its source)")
    if args.methods == "all":
        args.methods = DEFAULT_METHODS
    return args


def register_cpu_attention_flops() -> None:
    """FlopCounterMode counts CUDA SDPA kernels but not the CPU flash kernel that F.scaled_dot_product_attention
    dispatches to here: register the same formulas for it (forward and backward)."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    forward_op = aten._scaled_dot_product_flash_attention_for_cpu
    backward_op = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward_op in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(forward_op)
    def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    @flop_counter.register_flop_formula(backward_op)
    def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def matmul_peak_gflops(threads: int) -> float:
    """bench_sampling's GEMM peak (best of 8 at 4096^3) with `threads` threads."""
    import torch

    from bench_sampling import matmul_peak_gflops as gemm_peak  # this script's folder is on sys.path

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return gemm_peak(n=4096, repeats=8)
    finally:
        torch.set_num_threads(previous)


def counted_call(generator, samples) -> tuple[float, float]:
    """(FLOPs, wall seconds) of one generate() call; the wall time includes the counter's own overhead."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        start = time.perf_counter()
        generator.generate(samples)
        seconds = time.perf_counter() - start
    return float(counter.get_total_flops()), seconds


def timed_call(generator, samples) -> float:
    start = time.perf_counter()
    generator.generate(samples)
    return time.perf_counter() - start


def pick_samples(samples, count: int):
    """`count` samples sharing one source (the first source that has that many)."""
    from fypbench.runner import source_key

    groups: dict[str, list] = {}
    for sample in samples:
        groups.setdefault(source_key(sample), []).append(sample)
        if len(groups[source_key(sample)]) == count:
            return groups[source_key(sample)]
    raise SystemExit(f"no source of the protocol has {count} samples; lower --samples")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    from fypbench.registry import METHODS, WORLDS
    from fypbench.protocol import load_protocol
    from fypbench.runner import DEFAULT_RUN_PRESET, load_run_preset
    from fypbench.runner import source_key

    register_cpu_attention_flops()
    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    peak_1 = matmul_peak_gflops(1)
    peak_all = matmul_peak_gflops(cores)
    world = WORLDS.load("mini")()
    protocol = load_protocol("fyp-1024")
    sources = len(Counter(source_key(s) for s in protocol.samples))
    full_sources = round(sources * args.full / len(protocol.samples))
    preset_config, _ = load_run_preset(args.preset or DEFAULT_RUN_PRESET)
    samples = pick_samples(protocol.samples, args.samples)
    preset_name = args.preset or "default (every method's mini preset)"
    print(f"fp32 matmul peak: {peak_1:.1f} GFLOP/s on 1 thread, {peak_all:.1f} GFLOP/s on {cores} threads; "
          f"protocol fyp-1024: {len(protocol.samples)} samples, {sources} sources; projected to {args.full} samples "
          f"and {full_sources} sources; preset {preset_name}")
    print(f"{'method':<18} {'GFLOP/sample':>13} {'GFLOP/source':>13} {'full PFLOP':>11} {'h @ peak':>9} "
          f"{'looped s/sample':>16} {'looped GFLOP/s':>15} {'max batching':>13}")
    total_flops = 0.0
    for name in args.methods.split(","):
        options = dict((preset_config.get("methods") or {}).get(name, {}))
        with tempfile.TemporaryDirectory() as cache:
            if name == "tune-a-video":
                options["cache_dir"] = cache  # a fresh cache: the tuning runs and is counted
            generator = METHODS.load(name).from_world(world, **options)
            first_flops, _ = counted_call(generator, samples[:1])
            rest_flops, _ = counted_call(generator, samples[1:])
            per_sample = rest_flops / (len(samples) - 1)
            per_source = max(first_flops - per_sample, 0.0) if name == "tune-a-video" else 0.0
            looped = min(timed_call(generator, samples[1:2]) for _ in range(2))
        full = per_sample * args.full + per_source * full_sources
        total_flops += full
        looped_rate = per_sample / looped / 1e9
        print(f"{name:<18} {per_sample / 1e9:13.1f} {per_source / 1e9:13.1f} {full / 1e15:11.3f} "
              f"{full / (peak_all * 1e9) / 3600:9.2f} {looped:16.2f} {looped_rate:15.1f} "
              f"{peak_1 / looped_rate:12.1f}x")
    for label, peak in (("measured", peak_all), ("reference", args.reference_peak)):
        generation_h = total_flops / (peak * 1e9) / 3600
        bound_h = generation_h + args.scoring_minutes / 60
        print(f"generation at 100 % of the {label} {cores}-core fp32 peak ({peak:.0f} GFLOP/s): {generation_h:.2f} h "
              f"(counted FLOPs only); + scoring {args.scoring_minutes:.0f} min measured = {bound_h:.2f} h; target "
              f"{args.target_hours:g} h: "
              f"{'unreachable on this machine' if bound_h > args.target_hours else 'not ruled out by this bound'}")
    print("max batching = the 1-thread peak / the looped call's achieved rate: no batching of the same work can be "
          "faster than that on one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
