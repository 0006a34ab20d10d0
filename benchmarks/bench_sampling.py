"""Sampling throughput in the mini world: batched vs one-sample-at-a-time generation, and MFU.

    python benchmarks/bench_sampling.py [--methods followpose,controlnet,t2i-adapter,masactrl] [--samples 8]
        [--threads 2] [--steps N]

For every method (shipped mini weights; methods without weights are reported and skipped):
- `batched`: one `generate(samples)` call over --samples fyp-1024 samples with the method's default batch size;
- `looped`: the same samples one `generate([sample])` call at a time (the loop a user writes first; the method's
  own options, so a per-frame method still runs the sample's frames in one UNet call); the videos must agree
  (checked: batch composition changes a video by at most float round-off, printed as max |diff|);
- printed: seconds per sample of each, and the ratio looped / batched.

Then the UNet alone (the mini base's UNet2DConditionModel on 16x16 latents, 77 text tokens): forward FLOPs per
frame (torch.utils.flop_counter) and achieved GFLOP/s at batch 1, 16, 64 and 128 frames, against this machine's
fp32 matmul peak measured here (2048^3 GEMM, best of 5) -> MFU. The machine is shared: rerun before trusting a
small difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="followpose,controlnet,t2i-adapter,masactrl")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: each method's preset)")
    return parser.parse_args(argv)


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def unet_rates(peak: float) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fypbench.world.mini.world import MiniWorld
    from fypbench.base.components import load_base

    components = load_base(MiniWorld().base_model())
    unet = components.unet.float().eval()
    channels, size = int(unet.config.in_channels), int(unet.config.sample_size)
    width = int(unet.config.cross_attention_dim)
    print(f"\nUNet alone ({sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params, {size}x{size} latents):")
    for batch in (1, 16, 64, 128):
        x, text = torch.randn(batch, channels, size, size), torch.randn(batch, 77, width)
        t = torch.tensor(500)
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                unet(x, t, text)
            flops = counter.get_total_flops()
            seconds = min(_timed(lambda: unet(x, t, text)) for _ in range(3))
        rate = flops / seconds / 1e9
        print(f"  batch {batch:>3}: {seconds / batch * 1e3:7.2f} ms/frame, {flops / batch / 1e6:.0f} MFLOP/frame, "
              f"{rate:6.1f} GFLOP/s = {rate / peak:5.1%} MFU")


def main(argv=None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from fypbench.generator import MethodUnavailable
    from fypbench.protocol import load_protocol
    from fypbench.registry import METHODS
    from fypbench.world.mini.world import MiniWorld

    world = MiniWorld()
    samples = load_protocol("fyp-1024").samples[: args.samples]
    peak = matmul_peak_gflops()
    print(f"{args.threads} threads; fp32 matmul peak measured: {peak:.0f} GFLOP/s; {len(samples)} samples")
    print(f"{'method':<14}{'batched s/sample':>18}{'looped s/sample':>17}{'ratio':>8}  max |diff| (uint8)")
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        options = {} if args.steps is None else {"num_inference_steps": args.steps}
        try:
            generator = METHODS.load(name).from_world(world, **options)
        except MethodUnavailable as exc:
            print(f"{name:<14} SKIPPED: {exc}")
            continue
        generator.generate(samples[:1])  # warm-up (allocations, lazy init)
        start = time.perf_counter()
        batched = generator.generate(samples)
        batched_s = (time.perf_counter() - start) / len(samples)
        start = time.perf_counter()
        looped = [generator.generate([sample])[0] for sample in samples]
        looped_s = (time.perf_counter() - start) / len(samples)
        diff = max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(batched, looped))
        print(f"{name:<14}{batched_s:>18.2f}{looped_s:>17.2f}{looped_s / batched_s:>7.2f}x  {diff}")
    unet_rates(peak)


if __name__ == "__main__":
    main()
