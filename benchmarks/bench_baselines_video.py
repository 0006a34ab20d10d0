"""Seconds per sample of the video baselines Tune-A-Video and MasaCtrl (mini preset, 64 px, 8 frames, CPU).

    OMP_NUM_THREADS=1 python benchmarks/bench_baselines_video.py [--samples 2] [--cache-dir DIR]
    python benchmarks/bench_baselines_video.py --sd-random cuda [--tuning-steps 10]

Runs on the fyp-1024 protocol's first samples (they share one source motion, as 16 prompts per motion do in
fyp-1024). Weights: the shipped mini base (fypbench/weights/mini/base) and mini T2I-Adapter when present, else
freshly initialised components of the same architectures (`build_components("mini")`, a full adapter of the
mini UNet's widths): the cost does not depend on the weights' values, the images do. Prints, for Tune-A-Video,
the one-off tuning and inversion seconds per source and the sampling seconds per sample, and the amortised
seconds per sample for a source shared by 16 samples; for MasaCtrl, seconds per sample. Wall clock
(time.perf_counter) on a shared machine: noisy.

`--sd-random DEVICE` instead runs the sd presets on Stable Diffusion 1.x's architecture with random weights
(`build_components("sd")`, a full T2I-Adapter of SD's widths) at 512 px, 8 frames: Tune-A-Video's fp16 tuning
with gradient checkpointing (`--tuning-steps` of the preset's 500, timed per step), its float32 inversion and
float16 sampling; MasaCtrl in float16. It proves the sd code paths on an accelerator (every output finite) and
times them; the images are noise.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from fypbench.base.components import build_components, load_base  # noqa: E402
from fypbench.generator import MethodUnavailable  # noqa: E402
from fypbench.protocol import load_protocol  # noqa: E402
from fypbench.world.mini.world import MiniWorld  # noqa: E402

SAMPLES_PER_SOURCE = 16  # fyp-1024: 16 prompts per motion


def base_components(world: MiniWorld):
    folder = Path(world.base_model())
    if (folder / "model_index.json").is_file():
        return load_base(folder), f"shipped mini base ({folder})"
    return build_components("mini"), "random mini-architecture base (no shipped weights yet)"


def mini_adapter(world: MiniWorld, components):
    from fypbench.baselines.t2i_adapter import T2IAdapterGenerator, build_adapter

    try:
        folder = world.method_weights("t2i-adapter")
    except MethodUnavailable:
        return build_adapter(components.unet, components.vae_scale_factor, 2, 0).eval(), "random mini adapter"
    generator = T2IAdapterGenerator(world)
    return generator.control, f"shipped mini T2I-Adapter ({folder})"


def bench_tune_a_video(world: MiniWorld, components, samples, cache_dir: Path) -> None:
    from fypbench.baselines.tune_a_video import TuneAVideoGenerator

    generator = TuneAVideoGenerator(world, components=components, preset="mini", cache_dir=cache_dir)
    source = generator.source_video_of(samples[0])
    start = time.perf_counter()
    generator.prepare_source(source)
    tuning = time.perf_counter() - start
    start = time.perf_counter()
    generator.inverted_latents(source)
    inversion = time.perf_counter() - start
    start = time.perf_counter()
    generator.generate(samples)
    sampling = (time.perf_counter() - start) / len(samples)
    losses = next(iter(generator.last_losses.values()))
    amortised = (tuning + inversion) / SAMPLES_PER_SOURCE + sampling
    print(f"tune-a-video (mini preset: {generator.tuning.steps} tuning steps, lr {generator.tuning.learning_rate:g}, "
          f"DDIM {generator.num_inference_steps}, inversion {generator.inversion_steps}): tuning {tuning:.1f} s "
          f"per source ({tuning / max(generator.tuning.steps, 1):.2f} s/step; loss first 10 "
          f"{sum(losses[:10]) / 10:.3f}, last 10 {sum(losses[-10:]) / 10:.3f}), inversion {inversion:.1f} s per "
          f"source, sampling {sampling:.1f} s per sample; {tuning + inversion + sampling:.1f} s for a lone "
          f"sample, {amortised:.1f} s per sample with {SAMPLES_PER_SOURCE} samples per source")


def bench_masactrl(world: MiniWorld, components, samples) -> None:
    from fypbench.baselines.masactrl import MasaCtrlGenerator

    adapter, where = mini_adapter(world, components)
    generator = MasaCtrlGenerator(components=components, control_module=adapter, preset="mini")
    generator.generate(samples[:1])  # warm-up
    start = time.perf_counter()
    generator.generate(samples)
    seconds = (time.perf_counter() - start) / len(samples)
    print(f"masactrl (mini preset: DDIM {generator.num_inference_steps}, start step {generator.start_step}, start "
          f"layer {generator.start_layer}, {where}): {seconds:.1f} s per sample")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_sd_random(device_name: str, tuning_steps: int, base_preset: str = "sd",
                    size: int = 512) -> None:
    """`base_preset`/`size` other than sd/512 only for a quick local dry run of this function."""
    import numpy as np

    from fypbench.baselines.masactrl import MasaCtrlGenerator
    from fypbench.baselines.t2i_adapter import build_adapter
    from fypbench.baselines.tune_a_video import TuneAVideoGenerator

    device = torch.device(device_name)
    start = time.perf_counter()
    components = build_components(base_preset, device=device)
    synchronize(device)
    print(f"{base_preset}-architecture random components on {device}: built in {time.perf_counter() - start:.1f} s")
    sample = load_protocol("fyp-1024").samples[0]
    frames = sample.num_frames
    world = MiniWorld(size=size, num_frames=frames)

    with tempfile.TemporaryDirectory() as cache:
        generator = TuneAVideoGenerator(world, components=components, preset="sd", tuning_steps=tuning_steps,
                                        device=device, cache_dir=cache,
                                        dtype=torch.float16 if device.type == "cuda" else torch.float32)
        source = generator.source_video_of(sample)
        synchronize(device)
        start = time.perf_counter()
        generator.prepare_source(source)
        synchronize(device)
        tuning = time.perf_counter() - start
        losses = next(iter(generator.last_losses.values()))
        start = time.perf_counter()
        inverted = generator.inverted_latents(source)
        synchronize(device)
        inversion = time.perf_counter() - start
        start = time.perf_counter()
        video = generator.generate([sample])[0]
        synchronize(device)
        sampling = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(f"tune-a-video sd preset ({tuning_steps} of 500 tuning steps, {generator.precision} autocast, gradient "
          f"checkpointing, {frames} frames at {size} px): tuning {tuning / tuning_steps:.2f} s/step (500 steps = "
          f"{500 * tuning / tuning_steps / 60:.1f} min), losses finite {all(np.isfinite(losses))}; inversion "
          f"{generator.inversion_steps} steps fp32 {inversion:.1f} s (finite {bool(torch.isfinite(inverted).all())});"
          f" sampling {generator.num_inference_steps} steps {generator.dtype} CFG {generator.guidance_scale} "
          f"{sampling:.1f} s; "
          f"video {video.shape} std {video.std():.1f}; peak GPU memory {memory:.1f} GiB")
    del generator
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    adapter = build_adapter(components.unet, components.vae_scale_factor, 2, 0).to(device).eval()
    generator = MasaCtrlGenerator(components=components, control_module=adapter, preset="sd", device=device_name,
                                  dtype="float16" if device.type == "cuda" else "float32", size=size)
    generator.generate([sample])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    video = generator.generate([sample])[0]
    synchronize(device)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(f"masactrl sd preset (T2I full adapter, {generator.pose.dtype}, {frames} frames at {size} px, "
          f"{generator.num_inference_steps} "
          f"steps, start step {generator.start_step}, layer {generator.start_layer}): {seconds:.1f} s per sample; "
          f"stats over warm-up + timed pass {generator.stats}; "
          f"video {video.shape} std {video.std():.1f}; peak GPU memory {memory:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None, help="Tune-A-Video cache (default: a temp dir, "
                        "so tuning is measured)")
    parser.add_argument("--sd-random", metavar="DEVICE", default=None,
                        help="run the sd presets on random SD-architecture weights on DEVICE (e.g. cuda)")
    parser.add_argument("--tuning-steps", type=int, default=10, help="with --sd-random: tuning steps to time")
    args = parser.parse_args()
    if args.sd_random:
        bench_sd_random(args.sd_random, args.tuning_steps)
        return
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    world = MiniWorld()
    samples = load_protocol("fyp-1024").samples[:args.samples]
    components, where = base_components(world)
    print(f"base: {where}; {world.size} px, {world.num_frames} frames, {torch.get_num_threads()} thread(s)")
    bench_masactrl(world, components, samples)
    with tempfile.TemporaryDirectory() as temporary:
        bench_tune_a_video(world, components, samples, args.cache_dir or Path(temporary))


if __name__ == "__main__":
    main()
