"""Training speed of the mini base model: VAE and UNet step times (fp32 vs bf16 autocast), projected and actual
wall time of `fypbench train vae` (presets mini, mini_decoder) + `fypbench train base` (mini).

    OMP_NUM_THREADS=2 python benchmarks/bench_base_training.py [--repeats 6] [--runs runs/train] [--compile]

Steps run on real renders of the training stream (flat-shaded images make denormal floats; the recipes flush
them, as measured here). Each figure is the median of `--repeats` steps after one warm-up step (wall clock,
time.perf_counter). The projection = rendering the image cache (measured per image, divided over the preset's
workers) + VAE steps x VAE step time + decoder fine-tune steps x decoder-only step time + latent encoding +
base steps x base step time. "actual" reads the
recipes' losses.jsonl (seconds since the session start) and train.log when runs exist. On a shared machine the
numbers move with other people's load: rerun before trusting a difference under ~20 %.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fypbench.base.components import build_text_encoder, build_unet, build_vae, preset_config  # noqa: E402
from fypbench.training.common import images_to_tensor, import_object, load_config  # noqa: E402


def median_step_time(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vae_step_factory(images: np.ndarray, bf16: bool, decoder_only: bool = False):
    config = load_config("vae", "mini")
    vae = build_vae({**preset_config(config["model"]["preset"])["vae"], "sample_size": images.shape[1]})
    if decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=1e-4)
    x = images_to_tensor(images)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.set_grad_enabled(not decoder_only):
                posterior = vae.encode(x).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample.float()
        loss = (reconstruction - x).abs().mean() + (reconstruction - x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def base_step_factory(batch: int, bf16: bool, train_text_encoder: bool, compiled: bool = False):
    config = load_config("base", "mini")
    parts = preset_config(config["model"]["preset"])
    unet, text_encoder = build_unet(parts["unet"]), build_text_encoder(parts["text_encoder"])
    text_encoder.requires_grad_(train_text_encoder)
    parameters = list(unet.parameters()) + (list(text_encoder.parameters()) if train_text_encoder else [])
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    size = parts["unet"]["sample_size"]
    latents = torch.randn(batch, 4, size, size, generator=generator)
    ids = torch.randint(0, 49408, (batch, 77), generator=generator)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    forward = torch.compile(unet) if compiled else unet  # inductor (C++ on CPU); compiled at the first step

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.set_grad_enabled(train_text_encoder):
                context = text_encoder(ids)[0]
            prediction = forward(latents, timesteps, context).sample.float()
        loss = (prediction - latents).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def actual_times(run_dir: Path) -> dict[str, float] | None:
    losses = run_dir / "losses.jsonl"
    if not losses.exists():
        return None
    rows = [json.loads(line) for line in losses.read_text().splitlines() if line.strip()]
    # "seconds" restarts at 0 when a run is resumed: sum the sessions' last values
    total, previous = 0.0, 0.0
    for row in rows:
        if row["seconds"] < previous:
            total += previous
        previous = row["seconds"]
    total += previous
    return {"steps": rows[-1]["step"], "train_seconds": total,
            "seconds_per_step": total / rows[-1]["step"] if rows[-1]["step"] else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--runs", type=Path, default=Path("runs/train"))
    parser.add_argument("--compile", action="store_true",
                        help="also time the base step with torch.compile(unet) (fp32; the first step compiles: minutes)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    vae_config, base_config = load_config("vae", "mini"), load_config("base", "mini")
    data = vae_config["data"]
    dataset = import_object(data["target"])(**data["kwargs"])
    batch = int(vae_config["train"]["batch_size"])
    start = time.perf_counter()
    images = np.stack([dataset[i][0] for i in range(batch)])
    render_seconds = (time.perf_counter() - start) / batch
    print(f"torch threads {torch.get_num_threads()}; rendering {render_seconds * 1e3:.1f} ms/image")

    timings = {}
    for bf16 in (False, True):
        label = "bf16" if bf16 else "fp32"
        timings[f"vae_{label}"] = median_step_time(vae_step_factory(images, bf16), args.repeats)
        print(f"VAE step, batch {batch}, {label}: {timings[f'vae_{label}']:.3f} s")
    decoder_config = load_config("vae", "mini_decoder")
    decoder_bf16 = decoder_config["train"]["mixed_precision"] == "bf16"
    timings["vae_decoder"] = median_step_time(vae_step_factory(images, decoder_bf16, decoder_only=True),
                                              args.repeats)
    print(f"VAE decoder-only step, batch {batch}, {'bf16' if decoder_bf16 else 'fp32'}: "
          f"{timings['vae_decoder']:.3f} s")
    base_batch = int(base_config["train"]["batch_size"])
    for bf16 in (False, True):
        label = "bf16" if bf16 else "fp32"
        for train_text in (True, False):
            key = f"base_{label}_{'text' if train_text else 'frozen'}"
            timings[key] = median_step_time(base_step_factory(base_batch, bf16, train_text), args.repeats)
            print(f"base step, batch {base_batch}, {label}, text encoder "
                  f"{'trained' if train_text else 'frozen'}: {timings[key]:.3f} s")

    if args.compile:
        step = base_step_factory(base_batch, False, True, compiled=True)
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        timings["base_fp32_text_compiled"] = median_step_time(step, args.repeats)
        print(f"base step, batch {base_batch}, fp32, text encoder trained, torch.compile(unet): "
              f"{timings['base_fp32_text_compiled']:.3f} s (first step, compiling: {first:.0f} s); "
              f"eager / compiled = {timings['base_fp32_text'] / timings['base_fp32_text_compiled']:.2f}")

    vae_key = f"vae_{'bf16' if vae_config['train']['mixed_precision'] == 'bf16' else 'fp32'}"
    base_key = (f"base_{'bf16' if base_config['train']['mixed_precision'] == 'bf16' else 'fp32'}_"
                f"{'text' if base_config['model']['train_text_encoder'] else 'frozen'}")
    count = int(data["count"])
    render_total = count * render_seconds / max(1, int(data["workers"]))
    vae_total = int(vae_config["train"]["steps"]) * timings[vae_key]
    encode_total = count / batch * timings["vae_fp32"] / 6  # encoder forward only: ~1/6 of a training step
    base_total = int(base_config["train"]["steps"]) * timings[base_key]
    decoder_total = int(decoder_config["train"]["steps"]) * timings["vae_decoder"]
    total = render_total + vae_total + decoder_total + encode_total + base_total
    print(f"projected (mini presets, one after another): render {render_total / 60:.1f} min + VAE "
          f"{vae_config['train']['steps']} steps {vae_total / 60:.1f} min + decoder fine-tune "
          f"{decoder_config['train']['steps']} steps {decoder_total / 60:.1f} min + encode {encode_total / 60:.1f} min"
          f" + base {base_config['train']['steps']} steps {base_total / 60:.1f} min = {total / 60:.1f} min "
          f"(budget 90 min)")
    for run_name in ("vae_mini", "vae_mini_decoder", "base_mini"):
        actual = actual_times(args.runs / run_name)
        if actual:
            print(f"actual {run_name}: {actual['steps']} steps in {actual['train_seconds'] / 60:.1f} min "
                  f"({actual['seconds_per_step']:.2f} s/step, training loop only)")


if __name__ == "__main__":
    main()
