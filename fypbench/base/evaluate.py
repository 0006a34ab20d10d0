"""Measure the mini base model against issue 3's quality bar, on held-out renders and prompts.

    python -m fypbench.base.evaluate [--weights DIR] [--prompts 256] [--vae-renders 512] [--guidance 5 7.5]

Held-out items are drawn from evaluation seeds only (fypbench.world.mini.splits.eval_seed), so no image, noise
or procedural motion coincides with a training item; prompts are unrestricted grammar prompts (some contain the
held-out appearance pairs; those are reported separately as "unseen") and motions include the held-out clips.

1. VAE: PSNR of reconstructions (posterior mean -> decode) of `--vae-renders` held-out renders, and the
   attribute oracle's accuracy on the reconstructions relative to its accuracy on the raw renders (both with
   the renders' ground-truth keypoints). Bar: PSNR >= 28 dB, ratio >= 0.9.
2. Base: one image per held-out prompt (DDIM, `--steps`, classifier-free guidance, noise from the item's eval
   seed). A generated frame has no known pose: TemplateKeypoints finds it (figure evidence against the known
   scene backgrounds, matched to 2,000 rendered training-pose silhouettes) and its keypoints place the oracle's
   colour probes. The same procedure scores the ceiling (the ground-truth renders of the same prompts; also
   shown with their true keypoints) and the floor (renders of other prompts, scored against these prompts).
   MediaPipe's person-detection rate is reported beside (it places no probes: it finds too few 64-px figures,
   even on ground truth). Bar: scene and style >= 90 %, character+colour >= 60 %, person detected >= 80 %.
Prints a table and writes every figure to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.seeding import numpy_rng

EVAL_NAME = "fypbench.base.evaluate"
FIELDS = ("scene", "style", "character", "colour")
PSNR_TARGET_DB = 28.0


@dataclass(frozen=True)
class EvalItem:
    prompt: str
    spec: Any  # fypbench.world.mini.motion.MotionSpec (one frame)
    background_seed: int
    noise_seed: int
    split: str  # "seen" / "unseen" appearance combination


def eval_items(count: int, start: int = 0) -> list[EvalItem]:
    """Held-out items start..start+count-1: random real or procedural motion (any clip), view in +-90 degrees,
    an unrestricted grammar prompt, all seeds from the evaluation seed space."""
    from fypbench.world.mini import splits
    from fypbench.world.mini.grammar import compose, random_prompt
    from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS, MotionSpec, clip_duration

    items = []
    for index in range(start, start + count):
        rng = numpy_rng(EVAL_NAME, "item", index)
        common = dict(num_frames=1, view=float(rng.uniform(-90, 90)), pitch=float(rng.uniform(-8, 8)),
                      mirror=bool(rng.random() < 0.5))
        if rng.random() < 0.5:
            name = str(rng.choice(REAL_CLIPS))
            spec = MotionSpec("real", name, start=float(rng.uniform(0, clip_duration(name))), **common)
        else:
            name = str(rng.choice(PROCEDURAL_MOTIONS))
            spec = MotionSpec("procedural", name, start=float(rng.uniform(0, clip_duration(name, "procedural"))),
                              jitter=float(rng.uniform(0, 0.1)), seed=splits.eval_seed(EVAL_NAME, "motion", index),
                              **common)
        parts = random_prompt(rng, motion=name)
        items.append(EvalItem(prompt=compose(parts), spec=spec,
                              background_seed=splits.eval_seed(EVAL_NAME, "background", index),
                              noise_seed=splits.eval_seed(EVAL_NAME, "noise", index),
                              split=splits.combination_split(parts.appearance, name)))
    return items


def render_items(items: Sequence[EvalItem], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth frames (N, size, size, 3) uint8 and keypoints (N, 17, 3) of the items."""
    from fypbench.world.mini.grammar import parse
    from fypbench.world.mini.render import render_video

    frames, keypoints = [], []
    for item in items:
        video = render_video(item.spec, parse(item.prompt).appearance, size=size, seed=item.background_seed)
        frames.append(video.frames[0])
        keypoints.append(video.keypoints[0])
    return np.stack(frames), np.stack(keypoints).astype(np.float64)


def derangement(count: int) -> np.ndarray:
    """A fixed permutation without fixed points (the floor pairs each prompt with another item's render)."""
    if count < 2:
        raise ValueError("the floor needs at least 2 items")
    return (np.arange(count) + 1 + numpy_rng(EVAL_NAME, "floor", count).integers(0, count - 1)) % count


# --------------------------------------------------------------------------------------------------------- VAE
def psnr(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 images."""
    mse = ((reference.astype(np.float64) - test.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    from fypbench.base.sample import to_uint8
    from fypbench.training.common import images_to_tensor

    out = []
    for lo in range(0, len(frames), batch):
        x = images_to_tensor(frames[lo:lo + batch]).to(vae.device, vae.dtype)
        decoded = vae.decode(vae.encode(x).latent_dist.mean).sample.float().clamp(-1, 1)
        out.append(to_uint8(((decoded + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()))
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------------------ oracle
def _oracle_row(args: tuple[np.ndarray, np.ndarray, str]) -> tuple[list[bool], str]:
    from fypbench.world.mini.oracle import expected_attributes, measure_attributes

    frame, points, prompt = args
    measured = measure_attributes(frame, points)
    correct = measured.correct(expected_attributes(prompt))
    return [bool(correct[name]) for name in FIELDS], measured.style or "none"


def oracle_hits(frames: np.ndarray, keypoints: np.ndarray, prompts: Sequence[str], workers: int = 1,
                read_styles: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """bool (N, len(FIELDS)): whether the oracle reads each field of prompt n off frame n (keypoints n); with
    `read_styles`, also the style it read off each frame ("none" without one)."""
    jobs = list(zip(frames, keypoints, prompts))
    if workers > 1:
        import multiprocessing

        # fork is cheap, but not after CUDA has started in this process
        method = "spawn" if torch.cuda.is_available() and torch.cuda.is_initialized() else "fork"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            rows = pool.map(_oracle_row, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    else:
        rows = [_oracle_row(job) for job in jobs]
    hits = np.array([row[0] for row in rows], bool).reshape(len(jobs), len(FIELDS))
    return (hits, np.array([row[1] for row in rows], dtype=object)) if read_styles else hits


def styles_of(prompts: Sequence[str]) -> np.ndarray:
    """The prompted style of each prompt ("none" without one)."""
    from fypbench.world.mini.grammar import parse

    return np.array([parse(prompt).appearance.style or "none" for prompt in prompts])


def style_read_by_style(hits: np.ndarray, styles: np.ndarray) -> dict[str, float]:
    """Per prompted style (`styles_of`), the share of frames whose style the oracle read right."""
    return {style: float(hits[styles == style, 1].mean()) for style in sorted(set(styles))}


def summarise(hits: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Per-field accuracy plus scene+style and character+colour (the subject) both right."""
    if mask is not None:
        hits = hits[mask]
    if len(hits) == 0:
        return {}
    out = {name: float(hits[:, i].mean()) for i, name in enumerate(FIELDS)}
    out["scene+style"] = float((hits[:, 0] & hits[:, 1]).mean())
    out["character+colour"] = float((hits[:, 2] & hits[:, 3]).mean())
    out["n"] = int(len(hits))
    return out


class TemplateKeypoints:
    """Keypoints of a generated frame by template matching, with the mini world's own knowledge.

    The frame is compared with every (scene, style) background (median over a few scene seeds, styled); pixels
    far from the closest one are figure evidence; the pose whose rendered silhouette overlaps the evidence best
    (IoU), out of `bank` poses of the training stream, gives the keypoints. Used to place the oracle's colour
    probes on frames without a known pose (MediaPipe finds few 64-px figures; see the report).
    """

    def __init__(self, size: int, bank: int = 2000, evidence_threshold: float = 24.0, reference_seeds: int = 5):
        from fypbench.world.mini.appearance import NEUTRAL, SCENES, STYLES
        from fypbench.world.mini.render import render_video
        from fypbench.world.mini.scene import apply_style, paint_scene
        from fypbench.world.mini.streams import CaptionedImages

        self.size, self.threshold = size, evidence_threshold
        painted = {scene: np.median(np.stack([paint_scene(scene, size, seed=s) for s in range(reference_seeds)]),
                                    axis=0).round().astype(np.uint8) for scene in SCENES}
        self.references = np.stack([apply_style(painted[scene], style) for scene in SCENES
                                    for style in STYLES]).astype(np.float32)
        stream = CaptionedImages(size=size)
        masks, keypoints = [], []
        for index in range(bank):
            video = render_video(stream.motion_spec(index), NEUTRAL, size=size, seed=0)
            masks.append(video.mask[0].reshape(-1) > 0.5)
            keypoints.append(video.keypoints[0])
        self.masks = np.stack(masks).astype(np.float32)  # (bank, size*size)
        self.keypoints = np.stack(keypoints).astype(np.float64)

    def evidence(self, frame: np.ndarray) -> np.ndarray:
        """bool (size*size,): pixels unlike the closest reference background."""
        distance = np.abs(frame.astype(np.float32)[None] - self.references).mean(axis=-1)  # (refs, H, W)
        best = int(np.argmin(np.minimum(distance, 2 * self.threshold).mean(axis=(1, 2))))
        return (distance[best] > self.threshold).reshape(-1)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, 17, 3) normalised keypoints, one best-matching template pose per frame."""
        if frames.shape[1:3] != (self.size, self.size):
            raise ValueError(f"frames are {frames.shape[1:3]}, the templates {self.size} px")
        out = []
        for frame in frames:
            evidence = self.evidence(frame).astype(np.float32)
            intersection = self.masks @ evidence
            union = self.masks.sum(axis=1) + evidence.sum() - intersection
            out.append(self.keypoints[int(np.argmax(intersection / np.maximum(union, 1.0)))])
        return np.stack(out)


def detection_rate(frames: np.ndarray) -> float:
    """Share of frames where MediaPipe (fypbench.metrics.pose) finds a person."""
    from fypbench.metrics.pose import MediaPipePoseDetector

    detector = MediaPipePoseDetector()
    try:
        return float(np.mean([len(d) > 0 for d in detector.detect(frames)]))
    finally:
        detector.close()


# -------------------------------------------------------------------------------------------------------- main
def evaluate(weights: Path, prompts: int = 256, vae_renders: int = 512, steps: int = 25,
             guidances: Sequence[float] = (5.0,), detector: bool = True, workers: int = 1,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    from fypbench.base.components import load_base
    from fypbench.base.sample import sample_images
    from fypbench.world.mini.oracle import ORACLE_VERSION

    began = time.perf_counter()
    components = load_base(weights, device="cuda" if torch.cuda.is_available() else "cpu")
    manifest_path = Path(weights) / "manifest.json"
    report: dict[str, Any] = {"weights": str(weights), "steps": steps, "oracle_version": ORACLE_VERSION,
                              "version": json.loads(manifest_path.read_text()).get("version")
                              if manifest_path.exists() else None}

    items = eval_items(max(prompts, vae_renders))
    frames, keypoints = render_items(items, components.resolution)
    all_prompts = [item.prompt for item in items]

    # 1. VAE
    n = vae_renders
    reconstructions = reconstruct(components.vae, frames[:n])
    values = psnr(frames[:n], reconstructions)
    raw_hits = oracle_hits(frames[:n], keypoints[:n], all_prompts[:n], workers)
    rec_hits = oracle_hits(reconstructions, keypoints[:n], all_prompts[:n], workers)
    raw, rec = summarise(raw_hits), summarise(rec_hits)
    styles = styles_of(all_prompts[:n])
    by_style = {style: {"n": int((styles == style).sum()), "psnr_db": float(values[styles == style].mean()),
                        "style_read_raw": float(raw_hits[styles == style, 1].mean()),
                        "style_read_reconstructed": float(rec_hits[styles == style, 1].mean())}
                for style in sorted(set(styles))}
    report["vae"] = {
        "renders": n, "psnr_mean_db": float(values.mean()), "psnr_median_db": float(np.median(values)),
        "psnr_of_mean_mse_db": float(10 * np.log10(255.0 ** 2 / np.mean(
            ((frames[:n].astype(np.float64) - reconstructions) ** 2).mean(axis=(1, 2, 3))))),
        "oracle_raw": raw, "oracle_reconstructed": rec,
        "oracle_ratio": {k: rec[k] / raw[k] for k in raw if k != "n" and raw[k] > 0},
        "by_style": by_style,
    }
    log(f"VAE: PSNR {values.mean():.2f} dB (median {np.median(values):.2f}) on {n} held-out renders")

    # 2. base generations
    m = prompts
    prompt_list, split = all_prompts[:m], np.array([item.split for item in items[:m]])
    prompt_styles = styles_of(prompt_list)
    templates = TemplateKeypoints(components.resolution)
    floor_index = derangement(m)
    ceiling_frames, floor_frames = frames[:m], frames[:m][floor_index]
    base: dict[str, Any] = {
        "prompts": m, "unseen_prompts": int((split == "unseen").sum()),
        "ceiling_gt_keypoints": summarise(oracle_hits(ceiling_frames, keypoints[:m], prompt_list, workers)),
        "floor_gt_keypoints": summarise(oracle_hits(floor_frames, keypoints[:m][floor_index], prompt_list,
                                                         workers)),
        "ceiling": summarise(oracle_hits(ceiling_frames, templates(ceiling_frames), prompt_list, workers)),
        "floor": summarise(oracle_hits(floor_frames, templates(floor_frames), prompt_list, workers)),
        "generated": {}, "images": {}}
    if detector:
        base["ceiling"]["detected"] = detection_rate(ceiling_frames)
        base["floor"]["detected"] = detection_rate(floor_frames)
    report["base"] = base
    for guidance in guidances:
        start = time.perf_counter()
        generated = sample_images(components, prompt_list, [item.noise_seed for item in items[:m]], steps=steps,
                                  guidance=guidance)
        seconds = time.perf_counter() - start
        hits, read = oracle_hits(generated, templates(generated), prompt_list, workers, read_styles=True)
        misread = read[prompt_styles != read]
        row = {**summarise(hits), "seen": summarise(hits, split == "seen"),
               "unseen": summarise(hits, split == "unseen"), "seconds": round(seconds, 1),
               "style_read_by_style": style_read_by_style(hits, prompt_styles),
               "style_misread_as": {style: int((misread == style).sum()) for style in sorted(set(misread))}}
        if detector:
            row["detected"] = detection_rate(generated)
        base["generated"][str(guidance)] = row
        base["images"][str(guidance)] = generated
        log(f"base (guidance {guidance}): {summarise(hits)} detected {row.get('detected')} ({seconds:.0f} s)")
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


def format_report(report: dict[str, Any]) -> str:
    vae, base = report["vae"], report["base"]
    lines = [f"weights {report['weights']} (version {report['version']}), attribute oracle version "
             f"{report.get('oracle_version')}, {report['seconds']} s",
             f"VAE on {vae['renders']} held-out renders: PSNR {vae['psnr_mean_db']:.2f} dB mean, "
             f"{vae['psnr_median_db']:.2f} median, {vae['psnr_of_mean_mse_db']:.2f} of the mean MSE "
             f"(target >= {PSNR_TARGET_DB})",
             f"{'oracle (GT keypoints)':<28}" + "".join(f"{k:>12}" for k in (*FIELDS, "char+colour"))]
    for name in ("oracle_raw", "oracle_reconstructed", "oracle_ratio"):
        row = vae[name]
        lines.append(f"  {name:<26}" + "".join(f"{row.get(k, float('nan')):>12.3f}"
                                                for k in (*FIELDS, "character+colour")))
    lines.append("  by style: " + ", ".join(f"{style} {row['psnr_db']:.1f} dB (style read {row['style_read_raw']:.2f}"
                                         f" -> {row['style_read_reconstructed']:.2f})"
                                         for style, row in vae["by_style"].items()))
    lines.append(f"base on {base['prompts']} held-out prompts ({base['unseen_prompts']} with a held-out pair); "
                 "targets: scene, style >= 0.90, character+colour >= 0.60, detected >= 0.80")
    header = (*FIELDS, "scene+style", "character+colour", "detected")
    lines.append(f"{'':<28}" + "".join(f"{k[:11]:>12}" for k in header))
    rows = [(k, base[k]) for k in ("ceiling", "floor", "ceiling_gt_keypoints", "floor_gt_keypoints") if k in base]
    rows += [(f"generated g={g}", r) for g, r in base["generated"].items()]
    rows += [(f"  seen g={g}", r["seen"]) for g, r in base["generated"].items() if r["seen"]]
    rows += [(f"  unseen g={g}", r["unseen"]) for g, r in base["generated"].items() if r["unseen"]]
    for name, row in rows:
        lines.append(f"  {name:<26}" + "".join(f"{row.get(k, float('nan')):>12.3f}" for k in header))
    for g, row in base["generated"].items():
        if "style_read_by_style" in row:
            lines.append(f"  style read by prompted style, g={g}: " + ", ".join(
                f"{style} {value:.2f}" for style, value in row["style_read_by_style"].items()))
            lines.append(f"  wrong styles read, g={g}: " + (", ".join(
                f"{style} {count}" for style, count in row["style_misread_as"].items()) or "none"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from fypbench.base.components import mini_weights_dir

    parser = argparse.ArgumentParser(description="Measure the mini base model against issue 3's quality bar.")
    parser.add_argument("--weights", type=Path, default=mini_weights_dir())
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--vae-renders", type=int, default=512)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, nargs="+", default=None)
    parser.add_argument("--no-detector", action="store_true", help="skip MediaPipe's detection rate")
    parser.add_argument("--workers", type=int, default=1, help="processes for the oracle")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--grid", type=Path, default=None, help="write a PNG grid of the first 64 generations")
    args = parser.parse_args(argv)
    from fypbench.base.sample import DEFAULT_GUIDANCE, image_grid

    report = evaluate(args.weights, args.prompts, args.vae_renders, args.steps,
                      args.guidance or [DEFAULT_GUIDANCE], not args.no_detector, args.workers)
    images = report["base"].pop("images")
    print(format_report(report))
    if args.out:
        from fypbench.io import write_json_atomic

        write_json_atomic(args.out, report)
    if args.grid:
        from PIL import Image

        from fypbench.io import atomic_path

        first = next(iter(images.values()))
        with atomic_path(args.grid) as tmp:
            Image.fromarray(image_grid(first[:64], columns=8)).save(tmp, format="PNG")


if __name__ == "__main__":
    main()
