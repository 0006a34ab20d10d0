"""Per-frame image baselines in the mini world: seconds per sample and pose accuracy of ControlNet and T2I-Adapter.

    OMP_NUM_THREADS=2 python benchmarks/bench_baselines_image.py [--samples 32] [--sheet /tmp/baselines.png]
    OMP_NUM_THREADS=2 python benchmarks/bench_baselines_image.py --random-weights --samples 4   (timing only)

For each method: build it from the mini world (shipped base + shipped weights; `--random-weights` builds the
mini base and the control module at their random initialisation instead, which measures speed only), generate
`--samples` fyp-1024 samples spread over the protocol (8 frames, 64 px, the mini preset's steps and guidance),
one sample per `generate` call, and report the median wall-clock seconds per sample (time.perf_counter; the
first call is a warm-up and is not counted). Quality: PA (OKS-AP x100, pooled over all frames) and PCK@0.1h of
the mini world's pose detector against the samples' keypoints (fypbench.metrics), next to two controls on the
same samples: `reference` (the world's ground-truth render, the ceiling) and `no-control` (ControlNet at
conditioning scale 0 = the plain base model, the floor). On a shared 2-core machine the timings move with other
people's load: rerun before trusting a difference under ~20 %.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

METHODS = ("controlnet", "t2i-adapter")


def spread_samples(count: int):
    from fypbench.protocol import load_protocol

    samples = load_protocol("fyp-1024").samples
    step = max(1, len(samples) // count)
    return list(samples[::step][:count])


def build(method: str, random_weights: bool, **options):
    from fypbench.baselines.controlnet import ControlNetGenerator
    from fypbench.baselines.t2i_adapter import T2IAdapterGenerator
    from fypbench.world.mini.world import MiniWorld

    cls = {"controlnet": ControlNetGenerator, "t2i-adapter": T2IAdapterGenerator}[method]
    if not random_weights:
        return cls.from_world(MiniWorld(), **options)
    from fypbench.base.components import build_components
    from fypbench.baselines.controlnet import build_controlnet
    from fypbench.baselines.t2i_adapter import build_adapter
    from fypbench.training.common import load_config

    base = build_components("mini")
    recipe = "controlnet" if method == "controlnet" else "t2i_adapter"
    model = load_config(recipe, "mini")["model"]
    control = (build_controlnet(base.unet, base.vae_scale_factor, model["conditioning_embedding_out_channels"], 0)
               if method == "controlnet" else build_adapter(base.unet, base.vae_scale_factor,
                                                            model["num_res_blocks"], 0))
    return cls.from_components(base, control, preset="mini", size=MiniWorld().size, **options)


def timed_generation(generator, samples) -> tuple[list[np.ndarray], float]:
    generator.generate(samples[:1])  # warm-up
    videos, seconds = [], []
    for sample in samples:
        start = time.perf_counter()
        videos.append(generator.generate([sample])[0])
        seconds.append(time.perf_counter() - start)
    return videos, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--random-weights", action="store_true", help="timing only: random base and control")
    parser.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG of the first 4 samples")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    samples = spread_samples(args.samples)
    videos: dict[str, list[np.ndarray]] = {}
    report: dict[str, dict] = {}
    for method in args.methods:
        generator = build(method, args.random_weights)
        videos[method], per_sample = timed_generation(generator, samples)
        report[method] = {"seconds_per_sample": round(per_sample, 3), "config": generator.config()}
        print(f"{method}: {per_sample:.2f} s/sample (median of {len(samples)}, {generator.num_inference_steps} "
              f"steps, guidance {generator.guidance_scale}, {samples[0].num_frames} frames, {generator.size} px)")
    if not args.random_weights:
        from fypbench.methods.reference import ReferenceGenerator

        floor = build("controlnet", False, conditioning_scale=0.0)
        videos["no-control"], seconds = timed_generation(floor, samples)
        report["no-control"] = {"seconds_per_sample": round(seconds, 3), "config": floor.config()}
        videos["reference"] = ReferenceGenerator().generate(samples)
        report["reference"] = {}
        from fypbench.metrics import build_metrics
        from fypbench.metrics.base import VideoItem, aggregate_rows, score_items

        metrics = build_metrics(["pa", "pck_0.1h"], world="mini")
        items = [VideoItem(method, sample, video) for method, vids in videos.items()
                 for sample, video in zip(samples, vids, strict=True)]
        aggregates = aggregate_rows(metrics, score_items(metrics, items))
        for method, values in aggregates.items():
            report[method]["quality"] = {name: round(v["value"], 2) for name, v in values.items()}
            print(f"{method:12s} " + "  ".join(f"{name} {v['value']:.1f}" for name, v in values.items())
                  + f"  ({len(samples)} samples)")
    if args.sheet:
        from fypbench.media import contact_sheet, upscale, write_png
        from fypbench.world.mini.skeleton import draw_keypose_video

        rows = []
        for sample in samples[:4]:
            index = samples.index(sample)
            rows.append((f"{sample.id} pose", upscale(draw_keypose_video(sample.keypoints, 64), 2)))
            rows += [(f"{sample.id} {m}", upscale(v[index], 2)) for m, v in videos.items()]
        write_png(args.sheet, contact_sheet(rows))
        print(f"contact sheet: {args.sheet}")
    if args.json:
        from fypbench.io import write_json_atomic

        write_json_atomic(args.json, {"samples": [s.id for s in samples], "omp_threads": os.environ["OMP_NUM_THREADS"],
                                      "methods": report})
    print(json.dumps({m: {k: v for k, v in r.items() if k != "config"} for m, r in report.items()}))


if __name__ == "__main__":
    main()
