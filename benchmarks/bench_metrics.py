"""Speed of the scoring stage: frames/s for CLIP score + frame consistency, and for pose accuracy.

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py [--videos 24] [--frames 8]

CS+FC: the mini world's shipped evaluator CLIP (fypbench/world/mini/data/evaluator_clip; before it is trained,
the same architecture from configs/evaluator_clip_mini.yaml with random weights: the cost does not depend on
the values) on 64-px renders, one shared image-embedding pass plus the prompt embeddings, at torch threads 1
and 2. Also the whole scoring stage (fypbench.scoring.score_run: integrity check, reading the stored frames,
CS + FC, parquet) over the same videos stored in a temporary run. PA: MediaPipe BlazePose (model_complexity=1, 64 -> 256 px) over the
same renders with 1 and 2 detector processes, plus the COCOeval / PCK scoring, reported separately. Wall
clock (time.perf_counter); a process pool's start-up (spawn, one detector per worker) is included.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from fypbench.metrics.base import VideoItem, score_items  # noqa: E402
from fypbench.sample import Sample, coco17_to_openpose18  # noqa: E402

MOTIONS = ("walk", "run", "jump", "wave", "squat", "dance", "arms_raise", "kick", "box", "bow", "turn", "clap")
CHARACTERS = ("man", "girl", "robot", "astronaut", "superman", "panda")
SCENES = ("grey simple background", "on the beach", "in the forest", "on the moon")


def rendered_items(count: int, num_frames: int) -> list[VideoItem]:
    from fypbench.world.mini.appearance import Appearance
    from fypbench.world.mini.grammar import VERBS, PromptParts, compose, indefinite_article
    from fypbench.world.mini.motion import MotionSpec
    from fypbench.world.mini.render import render_video

    items = []
    for index in range(count):
        character, scene = CHARACTERS[index % len(CHARACTERS)], SCENES[index % len(SCENES)]
        spec = MotionSpec(kind="procedural", name=MOTIONS[index % len(MOTIONS)], num_frames=num_frames,
                          view=float((index * 37) % 120 - 60))
        appearance = Appearance(character, None, scene)
        video = render_video(spec, appearance, size=64, seed=index)
        keypoints = video.keypoints.astype(np.float32)
        prompt = compose(PromptParts(appearance, VERBS[spec.name], indefinite_article(character)))
        sample = Sample(id=f"b{index:03d}", prompt=prompt, keypoints=keypoints,
                        openpose=coco17_to_openpose18(keypoints), seed=index)
        items.append(VideoItem("reference", sample, video.frames))
    return items


def mini_clip_embedder(folder: Path):
    """The shipped evaluator CLIP, or (not trained yet) its architecture with random weights."""
    from fypbench.metrics.clip_metrics import LOCAL_WEIGHTS_FILE, MINI_CLIP_DIR, load_local_clip, save_local_clip
    from fypbench.metrics.clip_vocab import build_vocab
    from fypbench.training.common import load_config
    from fypbench.training.evaluator_clip import build_model, model_config

    if (MINI_CLIP_DIR / LOCAL_WEIGHTS_FILE).is_file():
        return load_local_clip(), "shipped"
    config = load_config("evaluator_clip", "mini")
    vocab = build_vocab()
    save_local_clip(build_model(config, vocab["vocab_size"]), model_config(config, vocab["vocab_size"]), folder,
                    {"model_id": "bench-random-mini-clip"},
                    preprocess_cfg={"size": int(config["model"]["vision_cfg"]["image_size"])}, compact_vocab=vocab)
    return load_local_clip(folder), "random"


def bench_clip(items: list[VideoItem]) -> None:
    import torch

    from fypbench.metrics.clip_metrics import ClipScore, FrameConsistency

    frames = sum(len(item.frames) for item in items)
    with tempfile.TemporaryDirectory() as folder:
        embedder, kind = mini_clip_embedder(Path(folder))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            metrics = [ClipScore(embedder), FrameConsistency(embedder)]
            score_items(metrics, items[:2])  # warm-up
            start = time.perf_counter()
            score_items(metrics, items)
            seconds = time.perf_counter() - start
            print(f"CS+FC  mini CLIP ({kind})  torch threads {threads}: {frames / seconds:7.1f} frames/s "
                  f"({1000 * seconds / frames:.2f} ms/frame, {len(items)} videos x {len(items[0].frames)} frames)")
        torch.set_num_threads(1)
        bench_score_run(items, embedder)


def bench_score_run(items: list[VideoItem], embedder) -> None:
    """The whole stage: integrity check + reading the npz frames + CS/FC + the parquet, from a stored run."""
    from fypbench.scoring import score_run
    from fypbench.videos import write_video

    frames = sum(len(item.frames) for item in items)
    with tempfile.TemporaryDirectory() as run_dir:
        for item in items:
            write_video(run_dir, item.method, item.sample_id, item.frames, {"config_hash": "bench", "seed": 0},
                        previews=False)
        samples = [item.sample for item in items]
        start = time.perf_counter()
        score_run(run_dir, ["clip_score", "fc_clip_consecutive"], world="mini", samples=samples, embedder=embedder,
                  log=lambda message: None)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        score_run(run_dir, ["clip_score", "fc_clip_consecutive"], world="mini", samples=samples, embedder=embedder,
                  log=lambda message: None)
        resume_seconds = time.perf_counter() - start
    print(f"score_run CS+FC (stored run, torch threads 1): {frames / seconds:7.1f} frames/s; a resumed rerun with "
          f"nothing left to do: {resume_seconds:.2f} s")


def bench_pose(items: list[VideoItem]) -> None:
    from fypbench.metrics.pose import POSE_METRICS, DetectorSpec, PoseDetectionStep

    frames = sum(len(item.frames) for item in items)
    for processes in (1, 2):
        step = PoseDetectionStep(DetectorSpec("mediapipe"), processes=processes)
        step.config()  # hashes the bundled model files once, outside the timing
        start = time.perf_counter()
        detections = step.run(items)
        detect_seconds = time.perf_counter() - start
        metrics = [cls(step) for cls in POSE_METRICS]
        start = time.perf_counter()
        summary = {}
        for metric in metrics:
            results = [metric.score(item, {step.key: video}) for item, video in zip(items, detections)]
            summary[metric.name] = metric.aggregate(results)
        score_seconds = time.perf_counter() - start
        print(f"PA     MediaPipe detection  processes {processes}:   {frames / detect_seconds:7.1f} frames/s "
              f"({1000 * detect_seconds / frames:.1f} ms/frame incl. pool start)")
        print(f"       scoring (COCOeval per video + pooled, PCK, OKS, swap): {1000 * score_seconds / frames:.2f} "
              f"ms/frame; PA {summary['pa']['value']:.1f}, PCK@0.1h {summary['pck_0.1h']['value']:.3f}, "
              f"detection rate {summary['pose_detection_rate']['value']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    items = rendered_items(args.videos, args.frames)
    print(f"{os.cpu_count()} CPU cores visible; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    bench_clip(items)
    bench_pose(items)


if __name__ == "__main__":
    main()
