"""Follow-Your-Pose in the mini world: training step times and the projected/actual stage-1 + stage-2 wall time,
sampling seconds per sample, and (subcommand `quality`) PA / PCK / FC on a subset of fyp-1024.

    OMP_NUM_THREADS=1 python benchmarks/bench_followpose.py [timing] [--repeats 4] [--runs runs/train]
    OMP_NUM_THREADS=1 python benchmarks/bench_followpose.py quality [--every 16] [--limit 64] [--out FILE]
        [--weights-dir DIR --size N]   (another weights folder holding base/ and followpose/)

timing: one stage-1 step (batch of image-pose pairs, pose injected) and one stage-2 step (batch of 8-frame
pose-free clips) exactly as the mini presets run them (their batch sizes and sizes), median of --repeats steps
after one warm-up (time.perf_counter), on the shipped mini base when it exists, else on freshly initialised
mini-preset components (same shapes, same compute). Projection per stage = rendering the data cache (measured
per item, divided over the preset's workers) + VAE encoding (measured per item) + steps x step time; "actual"
reads the recipes' train.log (first to last line of each session) when runs exist. Sampling: seconds per sample
(8 frames, 64 px, the mini preset's 25 DDIM steps with CFG) for `followpose` and the per-frame stage-1 model.

quality: samples = fyp-1024 every --every-th sample, at most --limit. Methods: `followpose`; `base-no-pose` =
the base model per frame with the same initial noise (each frame its slice of initial_noise(seed, (C, F, h, w)),
no pose); `followpose-stage1` per frame (independent and shared noise); `reference` (the ground-truth renders,
ceiling). Metrics: PA and PCK@0.1 (fypbench.metrics, MediaPipe), FC (needs the evaluator CLIP in
fypbench/world/mini/data/evaluator_clip/; skipped with a note when absent).
The machine is shared (2 cores): timings move with other people's load; rerun before trusting a small difference.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fypbench.base.components import build_components, load_base, mini_weights_dir  # noqa: E402
from fypbench.models.followpose.pose_encoder import pose_videos_to_tensor  # noqa: E402
from fypbench.models.followpose.train import StageObjective, encode_posterior, sample_timesteps  # noqa: E402
from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig, freeze_for_stage  # noqa: E402
from fypbench.training.common import import_object, load_config, per_sample_randn  # noqa: E402
from fypbench.world.mini.skeleton import draw_keypose_video  # noqa: E402

BUDGET_MINUTES = 40.0


def median_time(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def base_components():
    folder = mini_weights_dir()
    if (folder / "manifest.json").is_file():
        return load_base(folder), f"shipped mini base ({folder})"
    return build_components("mini"), "freshly initialised mini-preset components (no shipped base yet)"


def stage_config(stage: int) -> dict:
    return load_config(f"followpose_stage{stage}", "mini")


def architecture(stage: int) -> FollowPoseConfig:
    one, two = stage_config(1)["model"]["followpose"], stage_config(2)["model"]["followpose"]
    if stage == 1:
        return FollowPoseConfig(**one, temporal_attention=False, conv_temporal=False)
    return FollowPoseConfig(**one, **two)


def render_items(stage: int, count: int) -> tuple[list, float]:
    data = stage_config(stage)["data"]
    dataset = import_object(data["target"])(**data["kwargs"])
    start = time.perf_counter()
    items = [dataset[i] for i in range(count)]
    return items, (time.perf_counter() - start) / count


def step_factory(stage: int, components, items: list):
    """One training step of `stage` on the rendered items, as the recipe runs it."""
    import copy

    config = stage_config(stage)
    batch = int(config["train"]["batch_size"])
    model = FollowPose.from_unet2d(copy.deepcopy(components.unet), architecture(stage)).train()
    trainable = freeze_for_stage(model, stage)
    objective = StageObjective(model, trainable)
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=float(config["train"]["lr"]),
                                  weight_decay=float(config["train"]["weight_decay"]))
    frames = np.stack([item[0][None] if stage == 1 else item[0] for item in items[:batch]])
    captions = [item[-1] for item in items[:batch]]
    size = int(config["data"]["kwargs"]["size"])
    scheduler = components.noise_scheduler()
    scaling = float(components.vae.config.scaling_factor)
    ids = components.tokenizer(captions, padding="max_length", max_length=components.tokenizer.model_max_length,
                               truncation=True, return_tensors="pt").input_ids
    start = time.perf_counter()
    mean, std = encode_posterior(components.vae, frames)
    encode_seconds = (time.perf_counter() - start) / batch
    positions = list(range(batch))
    mode = str(config["loss"]["timesteps"])

    def step() -> None:
        latents = (mean + std * per_sample_randn(0, "bench-posterior", positions, mean.shape[1:])) * scaling
        noise = per_sample_randn(0, "bench-noise", positions, mean.shape[1:])
        timesteps = sample_timesteps(0, "bench-t", positions, 1000, mode)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with torch.no_grad():
            text = components.text_encoder(ids)[0]
        pose = None
        if stage == 1:
            pose = pose_videos_to_tensor([draw_keypose_video(item[1][None], size) for item in items[:batch]])
        loss = (objective(noisy, timesteps, text, pose) - noise).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trainable.values()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, encode_seconds


def actual_minutes(run_dir: Path) -> float | None:
    """Wall minutes of a recipe run from its train.log: first to last line of each session, summed."""
    log = run_dir / "train.log"
    if not log.is_file():
        return None
    total, start, last = 0.0, None, None
    for line in log.read_text().splitlines():
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)", line)
        if not match:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        if "trainable tensors" in match.group(2):  # a session starts
            if start is not None and last is not None:
                total += (last - start).total_seconds()
            start = stamp
        last = stamp
    if start is not None and last is not None:
        total += (last - start).total_seconds()
    return total / 60.0


def sampling_seconds(components, repeats: int) -> dict[str, float]:
    """Seconds per sample (8 frames, 64 px, 25 steps, CFG) for the video model and the per-frame model."""
    import copy

    from fypbench.models.followpose.pipeline import generate_videos
    from fypbench.protocol import load_protocol

    samples = load_protocol("fyp-1024").samples[:: 128][:8]
    size = components.resolution
    poses = [draw_keypose_video(s.keypoints, size) for s in samples]
    out = {}
    for name, stage, per_frame in (("followpose", 2, False), ("followpose-stage1", 1, True)):
        model = FollowPose.from_unet2d(copy.deepcopy(components.unet), architecture(stage)).eval()

        def run(model=model, per_frame=per_frame) -> None:
            generate_videos(model.unet, model.pose_encoder, components.vae, components.text_encoder,
                            components.tokenizer, components.scheduler, [s.prompt for s in samples], poses,
                            [s.seed for s in samples], num_inference_steps=25, guidance_scale=5.0, batch_size=8,
                            per_frame=per_frame)

        out[name] = median_time(run, max(1, repeats // 2)) / len(samples)
    return out


def timing(args: argparse.Namespace) -> None:
    torch.set_flush_denormal(True)
    components, where = base_components()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); components: {where}")
    total = 0.0
    for stage in (1, 2):
        config = stage_config(stage)
        items, render_seconds = render_items(stage, int(config["train"]["batch_size"]))
        step, encode_seconds = step_factory(stage, components, items)
        step_seconds = median_time(step, args.repeats)
        count, workers = int(config["data"]["count"]), int(config["data"]["workers"])
        steps = int(config["train"]["steps"])
        data_minutes = (render_seconds * count / workers + encode_seconds * count) / 60
        train_minutes = steps * step_seconds / 60
        total += data_minutes + train_minutes
        print(f"stage {stage}: batch {config['train']['batch_size']} x {items[0][0].shape[0] if stage == 2 else 1} "
              f"frame(s): {step_seconds:.2f} s/step; render {render_seconds * 1000:.1f} ms/item, VAE encode "
              f"{encode_seconds * 1000:.1f} ms/item; projected {data_minutes:.1f} min data ({count} items, "
              f"{workers} workers) + {train_minutes:.1f} min training ({steps} steps)")
        actual = actual_minutes(Path(args.runs) / f"followpose_stage{stage}_mini")
        if actual is not None:
            print(f"stage {stage}: actual {actual:.1f} min (train.log, all sessions)")
    print(f"projected stage 1 + stage 2: {total:.1f} min (budget {BUDGET_MINUTES:.0f} min)")
    for name, seconds in sampling_seconds(components, args.repeats).items():
        print(f"sampling {name}: {seconds:.2f} s per sample (8 frames, 64 px, 25 DDIM steps, CFG, batch 8)")


# ------------------------------------------------------------------------------------------------------ quality
def quality(args: argparse.Namespace) -> None:
    from fypbench.errors import UserError
    from fypbench.metrics import build_metrics
    from fypbench.metrics.base import VideoItem, aggregate_rows, score_items
    from fypbench.methods.reference import ReferenceGenerator
    from fypbench.models.followpose.generator import FollowPoseGenerator, FollowPoseStage1Generator
    from fypbench.models.followpose.pipeline import generate_videos
    from fypbench.protocol import load_protocol
    from fypbench.world.mini.world import MiniWorld

    torch.set_flush_denormal(True)
    world = MiniWorld() if args.weights_dir is None else MiniWorld(weights_dir=Path(args.weights_dir), size=args.size)
    samples = load_protocol("fyp-1024").samples[:: args.every][: args.limit]
    options = {"num_inference_steps": args.steps, "guidance_scale": args.guidance, "batch_size": args.batch_size}
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    video = FollowPoseGenerator.from_world(world, **options)
    per_frame = FollowPoseStage1Generator.from_world(world, **options)
    shared = FollowPoseStage1Generator.from_world(world, noise_mode="shared", **options)

    def base_no_pose(batch):
        c = per_frame.components
        return generate_videos(per_frame.model.unet, per_frame.model.pose_encoder, c.vae, c.text_encoder,
                               c.tokenizer, c.scheduler, [s.prompt for s in batch],
                               [per_frame.pose_video(s) for s in batch], [s.seed for s in batch],
                               num_inference_steps=args.steps, guidance_scale=args.guidance,
                               batch_size=args.batch_size, per_frame=True, inject_pose=False)

    methods = {"followpose": (video.generate, video.config_hash()),
               "base-no-pose": (base_no_pose, f"base-no-pose-{per_frame.config_hash()}"),
               "followpose-stage1": (per_frame.generate, per_frame.config_hash()),
               "followpose-stage1-shared": (shared.generate, shared.config_hash()),
               "reference": (ReferenceGenerator(world).generate, "reference")}
    items, seconds = [], {}
    for method, (generate, key) in methods.items():
        path = cache / f"{method}-{key}-{len(samples)}-{args.every}.npz"
        if path.is_file():
            with np.load(path) as stored:
                videos = list(stored["videos"])
        else:
            start = time.perf_counter()
            videos = generate(samples)
            seconds[method] = (time.perf_counter() - start) / len(samples)
            np.savez_compressed(path, videos=np.stack(videos))
        items += [VideoItem(method, s, v) for s, v in zip(samples, videos)]
        print(f"{method}: {len(videos)} videos" + (f", {seconds[method]:.2f} s/sample" if method in seconds else
                                                     " (cached)"), flush=True)
    results: dict[str, dict] = {}
    pose_metrics = build_metrics(["pa", "pck_0.1h"], world="mini")
    for method, values in aggregate_rows(pose_metrics, score_items(pose_metrics, items)).items():
        results.setdefault(method, {}).update({k: v["value"] for k, v in values.items()})
    note = None
    try:
        fc_metrics = build_metrics(["fc_clip_consecutive"], world="mini")
    except (UserError, FileNotFoundError, OSError) as exc:
        note = f"FC skipped: {exc}"
    else:
        for method, values in aggregate_rows(fc_metrics, score_items(fc_metrics, items)).items():
            results.setdefault(method, {}).update({k: v["value"] for k, v in values.items()})
    record = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "samples": len(samples),
              "subset": f"fyp-1024 every {args.every}th sample, first {len(samples)}",
              "followpose_config": video.config(), "results": results, "seconds_per_sample": seconds, "note": note}
    print(json.dumps(record["results"], indent=2))
    if note:
        print(note)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("timing", "quality"), default="timing")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--runs", default="runs/train")
    parser.add_argument("--every", type=int, default=16)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache-dir", default="/tmp/bench_followpose")
    parser.add_argument("--out", default=None)
    parser.add_argument("--weights-dir", default=None, help="a folder with base/ and followpose/ (default: shipped)")
    parser.add_argument("--size", type=int, default=64, help="frame size with --weights-dir")
    args = parser.parse_args()
    timing(args) if args.mode == "timing" else quality(args)


if __name__ == "__main__":
    main()
