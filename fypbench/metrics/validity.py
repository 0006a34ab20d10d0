"""Metric validity controls: does each metric separate right from wrong on ground-truth renders?

    fypbench validate-metrics --world mini [--samples 256]      (the lead's CLI; the same as the line below)
    OMP_NUM_THREADS=1 python -m fypbench.metrics.validity --world mini --samples 256

On `num_samples` fyp-1024 samples (evenly spaced through the protocol: indices round(k * (N-1) / (n-1)), so
every pose sequence and prompt slot is covered) rendered as ground truth by the `reference` method:

- CS (clip_score, the world's CLIP): the true prompt against the same prompt with one attribute changed
  (character, colour, scene, style, verb; via the grammar's parse/compose, every alternative value the
  grammar allows: `attribute_alternatives`). Colour and verb controls exist only where the prompt names them.
- PA (per-video scores: pa = the video's own COCO OKS-AP, pck_0.1h, pose_mean_oks): the video's detections
  scored against its own keypoints and against another sample's keypoints (a seeded pick among samples of
  another pose sequence). A harder variant moves that other pose onto the true pose's box in every frame
  (same centre and height: `align_pose`), so only the body configuration differs.
- FC (fc_clip_consecutive): the true video against its frames in a seeded shuffled order (never the identity)
  and against a video whose frame t is frame t of 8 different other samples.
- Reference for the shuffle (not a metric): FC's statistic with each frame's exact keypoints as its embedding
  (`keypoint_smoothness`), true order vs the same shuffle: what a per-frame embedding that reads the pose
  perfectly would reach on that control.

Each control reports AUC = P(score of a true item > score of a control item), ties 1/2 (Mann-Whitney over all
true x control pairs; `auc`), overall, for upright and floor motions separately, and per tag; the paired win
rate compares each video with its own controls only. Diagnostics of the true videos (pose detection rate, their
PCK / OKS / AP) are reported beside them: where the detector finds nobody, true and control tie at 0. The detections are computed once per video; CLIP image
embeddings are cached per frame (`CachingEmbedder`), so the controls re-use them. The markdown report is
written atomically, headed by the command and the git revision.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fypbench.errors import UserError
from fypbench.sample import Sample, coco17_to_openpose18
from fypbench.seeding import numpy_rng

ATTRIBUTES = ("character", "colour", "scene", "style", "verb")
APPEARANCE_ATTRIBUTES = ("character", "colour", "scene", "style")  # what one frame shows; a verb needs motion
DEFAULT_OUT = Path("results/mini/metric_validity.md")
DEFAULT_PROTOCOL = "fyp-1024"
TARGET_AUC = 0.95
SEED_NAMESPACE = "metric-validity"
TAG_KEYS = ("camera", "motion_source", "motion_split", "combination", "style", "character", "verb")
MIXED_FRAMES = 8


# ---- prompt controls -------------------------------------------------------------------------------------

def attribute_alternatives(prompt: str, attribute: str) -> list[str]:
    """Every grammar prompt that differs from `prompt` in exactly one attribute (sorted; may be empty).

    character: another character; when the prompt has a clothing colour only the other recolourable ones (the
    colour stays); the article follows the character ("a"/"an") unless it is "the". colour: another colour
    (only if the prompt has one). scene, style: another value ("" = no style counts as a style). verb: another
    verb phrase (only if the prompt has a verb clause).
    """
    from fypbench.world.mini.appearance import CHARACTERS, COLOURS, RECOLOURABLE, SCENES, STYLES
    from fypbench.world.mini.grammar import VERB_PHRASES, PromptParts, compose, indefinite_article, parse

    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r} (known: {', '.join(ATTRIBUTES)})")
    parts = parse(prompt)
    look = parts.appearance
    variants: list[PromptParts] = []
    if attribute == "character":
        pool = RECOLOURABLE if look.colour is not None else tuple(CHARACTERS)
        for character in pool:
            if character != look.character:
                article = parts.article if parts.article == "the" else indefinite_article(character)
                variants.append(PromptParts(dataclasses.replace(look, character=character), parts.verb, article))
    elif attribute == "colour":
        if look.colour is not None:
            variants = [dataclasses.replace(parts, appearance=dataclasses.replace(look, colour=c))
                        for c in COLOURS if c != look.colour]
    elif attribute == "scene":
        variants = [dataclasses.replace(parts, appearance=dataclasses.replace(look, scene=s))
                    for s in SCENES if s != look.scene]
    elif attribute == "style":
        variants = [dataclasses.replace(parts, appearance=dataclasses.replace(look, style=s))
                    for s in STYLES if s != look.style]
    elif parts.verb is not None:
        variants = [dataclasses.replace(parts, verb=v) for v in VERB_PHRASES if v != parts.verb]
    return sorted(compose(v) for v in variants)


# ---- statistics -----------------------------------------------------------------------------------------

def auc(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray) -> float:
    """P(positive > negative) over all pairs, ties counted 1/2 (the Mann-Whitney AUC); NaN values raise."""
    pos = np.asarray(positives, dtype=np.float64).ravel()
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"AUC needs positives and negatives (got {pos.size} and {neg.size})")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("AUC of non-finite scores: drop or resolve NaN scores first")
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    tied = np.searchsorted(neg_sorted, pos, side="right") - below
    return float((below + 0.5 * tied).sum() / (pos.size * neg.size))


def paired_win_rate(positives: Sequence[float], negatives: Sequence[Sequence[float]]) -> float:
    """Mean over (video, control) pairs of [true > control] (ties 1/2), each video against its own controls."""
    wins, count = 0.0, 0
    for pos, negs in zip(positives, negatives):
        for neg in negs:
            wins += 1.0 if pos > neg else 0.5 if pos == neg else 0.0
            count += 1
    if count == 0:
        raise ValueError("paired win rate needs at least one control")
    return wins / count


# ---- pose controls --------------------------------------------------------------------------------------

def _box(keypoints: np.ndarray) -> tuple[float, float, float, float] | None:
    """(centre x, centre y, width, height) of the visible keypoints of one frame, or None."""
    visible = keypoints[:, 2] > 0
    if not visible.any():
        return None
    xy = keypoints[visible, :2]
    low, high = xy.min(axis=0), xy.max(axis=0)
    centre = (low + high) / 2
    return float(centre[0]), float(centre[1]), float(high[0] - low[0]), float(high[1] - low[1])


def align_pose(other: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`other` (F, 17, 3) moved frame by frame onto `target`'s box: same centre, scaled to the same height
    (the larger side when a box is flat); keypoints that leave [0, 1] become invisible."""
    other = np.asarray(other, dtype=np.float32)
    out = other.copy()
    for t in range(len(other)):
        source_box, target_box = _box(other[t]), _box(target[t])
        if source_box is None or target_box is None:
            continue
        source_size = max(source_box[3], source_box[2] if source_box[3] < 1e-6 else 0.0, 1e-6)
        target_size = max(target_box[3], target_box[2] if target_box[3] < 1e-6 else 0.0, 1e-6)
        scale = target_size / source_size
        xy = (other[t, :, :2] - np.array(source_box[:2])) * scale + np.array(target_box[:2])
        inside = (xy >= 0).all(axis=1) & (xy <= 1).all(axis=1)
        out[t, :, :2] = xy
        out[t, :, 2] = np.where(inside & (other[t, :, 2] > 0), 1.0, 0.0)
    return out


def with_keypoints(sample: Sample, keypoints: np.ndarray) -> Sample:
    keypoints = np.asarray(keypoints, dtype=np.float32)
    return dataclasses.replace(sample, keypoints=keypoints, openpose=coco17_to_openpose18(keypoints))


def other_sample_index(samples: Sequence[Sample], index: int, purpose: str) -> int:
    """A seeded pick among the samples whose pose sequence differs from sample `index`'s."""
    own = samples[index].keypoints
    candidates = [j for j, s in enumerate(samples)
                  if j != index and (s.keypoints.shape != own.shape or not np.allclose(s.keypoints, own))]
    if not candidates:
        raise UserError("metric validity needs samples with at least two different pose sequences")
    return int(numpy_rng(SEED_NAMESPACE, purpose, samples[index].id).choice(candidates))


def shuffled_order(num_frames: int, sample_id: str) -> np.ndarray:
    """A seeded permutation of the frames that is not the identity."""
    if num_frames < 2:
        raise ValueError("a shuffled video needs at least 2 frames")
    rng = numpy_rng(SEED_NAMESPACE, "shuffle", sample_id)
    while True:
        order = rng.permutation(num_frames)
        if (order != np.arange(num_frames)).any():
            return order


def mixed_sources(samples: Sequence[Sample], index: int, count: int = MIXED_FRAMES) -> list[int]:
    """`count` distinct other samples (seeded) whose frame t makes frame t of the mixed video."""
    others = [j for j in range(len(samples)) if j != index]
    if len(others) < count:
        raise UserError(f"the mixed-frame control needs at least {count + 1} samples")
    return [int(j) for j in numpy_rng(SEED_NAMESPACE, "mixed", samples[index].id).choice(others, count, replace=False)]


# ---- cached CLIP ----------------------------------------------------------------------------------------

class CachingEmbedder:
    """Wraps a ClipEmbedder: each distinct frame (by its bytes) and text is embedded once; same config()."""

    def __init__(self, embedder: Any):
        self.embedder = embedder
        self._images: dict[bytes, np.ndarray] = {}
        self._texts: dict[str, tuple[np.ndarray, bool]] = {}
        self.frames_embedded = 0

    def config(self) -> dict[str, Any]:
        return self.embedder.config()

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        keys = [hashlib.sha1(np.ascontiguousarray(f).tobytes()).digest() for f in frames]
        missing = {k: i for i, k in enumerate(keys) if k not in self._images}
        if missing:
            embedded = self.embedder.embed_images(np.stack([frames[i] for i in missing.values()]))
            self.frames_embedded += len(missing)
            for key, vector in zip(missing, embedded):
                self._images[key] = np.asarray(vector, dtype=np.float32)
        return np.stack([self._images[k] for k in keys])

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._texts))
        if missing:
            embedded, truncated = self.embedder.embed_texts(missing)
            for text, vector, cut in zip(missing, embedded, truncated):
                self._texts[text] = (np.asarray(vector, dtype=np.float32), bool(cut))
        return np.stack([self._texts[t][0] for t in texts]), [self._texts[t][1] for t in texts]


# ---- the study ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Control:
    """One control: a metric's per-video score on the true item and on its control items."""

    name: str
    metric: str
    description: str
    positives: list[float]
    negatives: list[list[float]]  # per video (may be empty: no control for that video)
    reference: bool = False  # a bound computed from the ground truth, not a metric: no target applies

    def used(self, mask: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
        keep = [i for i, m in enumerate(mask) if m and self.negatives[i]]
        pos = np.array([self.positives[i] for i in keep])
        return pos, np.array([v for i in keep for v in self.negatives[i]]), [self.negatives[i] for i in keep]

    def stats(self, mask: Sequence[bool]) -> dict[str, Any]:
        pos, neg, paired = self.used(mask)
        if len(pos) == 0:
            return {"n_videos": 0}
        return {"n_videos": len(pos), "n_controls": len(neg), "mean_true": float(pos.mean()),
                "mean_control": float(neg.mean()), "auc": auc(pos, neg),
                "paired": paired_win_rate(list(pos), paired)}


def keypoint_smoothness(keypoints: np.ndarray) -> float:
    """FC's consecutive-frame statistic with each frame's exact pose as its embedding: minus the mean
    displacement of the 17 keypoints between consecutive frames, in units of the video's mean keypoint-box
    height (higher = smoother). keypoints: (F, 17, 3), F >= 2."""
    points = np.asarray(keypoints, np.float64)[..., :2]
    if points.ndim != 3 or len(points) < 2:
        raise ValueError(f"expected (F >= 2, 17, 3) keypoints, got {np.shape(keypoints)}")
    height = float(np.ptp(points[..., 1], axis=1).mean())
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1).mean()
    return -float(steps) / max(height, 1e-6)


def evenly_spaced(count: int, total: int) -> list[int]:
    if count > total:
        raise UserError(f"--samples {count} exceeds the protocol's {total} samples")
    if count < MIXED_FRAMES + 1:
        raise UserError(f"--samples must be at least {MIXED_FRAMES + 1} (the mixed-frame control uses 8 others)")
    return sorted({int(round(k * (total - 1) / (count - 1))) for k in range(count)})


def git_description() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head}{' (with uncommitted changes to tracked files)' if dirty else ''}"


def command_line(world: str, num_samples: int, out: Path, clip_weights: str | os.PathLike | None,
                 pose_processes: int) -> str:
    parts = ["fypbench", "validate-metrics", "--world", world, "--samples", str(num_samples)]
    if Path(out) != DEFAULT_OUT:
        parts += ["--out", str(out)]
    if clip_weights is not None:
        parts += ["--clip-weights", str(clip_weights)]
    if pose_processes != 1:
        parts += ["--pose-processes", str(pose_processes)]
    return " ".join(parts)


def _score(metric: Any, items: Sequence[Any], features: Mapping[str, Any] | None = None) -> list[float]:
    from fypbench.metrics.base import score_items

    if features is None:
        rows = score_items([metric], items)
        return [row["value"] for row in rows]
    return [metric.score(item, {key: value[i] for key, value in features.items()}).value
            for i, item in enumerate(items)]


@dataclasses.dataclass
class Study:
    """The controls, plus per-video diagnostics of the true videos (means are reported, no AUC)."""

    controls: list[Control]
    diagnostics: dict[str, list[float]]


def run_controls(samples: Sequence[Sample], videos: Sequence[np.ndarray], embedder: Any, pose_step: Any,
                 log: Callable[[str], None] = print) -> Study:
    """Every control over the given samples and their ground-truth videos (the study without the report)."""
    from fypbench.metrics.base import VideoItem
    from fypbench.metrics.clip_metrics import ClipScore, FrameConsistency
    from fypbench.metrics.pose import PCK10, MeanOKS, PoseAP

    from fypbench.metrics.pose import DetectionRate

    controls: list[Control] = []
    diagnostics: dict[str, list[float]] = {}
    items = [VideoItem("reference", s, v) for s, v in zip(samples, videos)]
    if embedder is not None:
        clip = CachingEmbedder(embedder)
        clip_score, consistency = ClipScore(clip), FrameConsistency(clip)
        start = time.perf_counter()
        true_cs = _score(clip_score, items)
        pooled: list[list[float]] = [[] for _ in items]
        appearance: list[list[float]] = [[] for _ in items]
        for attribute in ATTRIBUTES:
            changed_items, owner = [], []
            for i, item in enumerate(items):
                for prompt in attribute_alternatives(item.sample.prompt, attribute):
                    changed_items.append(VideoItem("control", dataclasses.replace(item.sample, prompt=prompt),
                                                   item.frames))
                    owner.append(i)
            per_video: list[list[float]] = [[] for _ in items]
            for i, value in zip(owner, _score(clip_score, changed_items)):
                per_video[i].append(value)
                pooled[i].append(value)
                if attribute in APPEARANCE_ATTRIBUTES:
                    appearance[i].append(value)
            controls.append(Control(f"CS: {attribute} changed", "clip_score",
                                    f"true prompt vs every prompt with another {attribute}", true_cs, per_video))
        controls.append(Control("CS: appearance changed", "clip_score",
                                "true prompt vs every single change of character, colour, scene or style",
                                true_cs, appearance))
        controls.append(Control("CS: any one attribute changed", "clip_score",
                                "true prompt vs all single-attribute changes above (verb included)", true_cs, pooled))
        log(f"CS controls: {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        true_fc = _score(consistency, items)
        shuffled = [VideoItem("control", item.sample, item.frames[shuffled_order(len(item.frames), item.sample_id)])
                    for item in items]
        mixed = []
        for i, item in enumerate(items):
            sources = mixed_sources(samples, i, len(item.frames))
            mixed.append(VideoItem("control", item.sample,
                                   np.stack([videos[j][t] for t, j in enumerate(sources)])))
        controls.append(Control("FC: frames shuffled", "fc_clip_consecutive",
                                "true video vs its frames in a shuffled order", true_fc,
                                [[v] for v in _score(consistency, shuffled)]))
        controls.append(Control("FC: 8 frames of 8 samples", "fc_clip_consecutive",
                                "true video vs frame t taken from 8 different samples", true_fc,
                                [[v] for v in _score(consistency, mixed)]))
        log(f"FC controls: {time.perf_counter() - start:.1f} s")
    controls.append(Control(
        "Reference, exact keypoints: frames shuffled", "keypoint_smoothness",
        "not a metric: FC's consecutive-frame statistic with each frame's exact keypoints as its embedding "
        "(`keypoint_smoothness`), true order vs the shuffled order above: a perfect pose reader's result",
        [keypoint_smoothness(item.sample.keypoints) for item in items],
        [[keypoint_smoothness(item.sample.keypoints[shuffled_order(len(item.frames), item.sample_id)])]
         for item in items], reference=True))
    if pose_step is not None:
        start = time.perf_counter()
        detections = pose_step.run(items)
        log(f"pose detection: {time.perf_counter() - start:.1f} s for {sum(len(v) for v in videos)} frames")
        features = {pose_step.key: detections}
        others = [other_sample_index(samples, i, "pose-distractor") for i in range(len(samples))]
        distractor = [VideoItem("control", with_keypoints(item.sample, samples[j].keypoints), item.frames)
                      for item, j in zip(items, others)]
        aligned = [VideoItem("control", with_keypoints(item.sample, align_pose(samples[j].keypoints,
                                                                                 item.sample.keypoints)), item.frames)
                   for item, j in zip(items, others)]
        diagnostics["pose detection rate (true videos)"] = _score(DetectionRate(pose_step), items, features)
        for metric in (PCK10(pose_step), MeanOKS(pose_step), PoseAP(pose_step)):
            truth = _score(metric, items, features)
            diagnostics[f"{metric.name} (true videos)"] = truth
            for label, control_items, what in (("another sample's pose", distractor, "keypoints of a sample of "
                                                "another pose sequence"),
                                               ("another pose on the true box", aligned, "that pose moved onto the "
                                                "true pose's box (centre, height) in every frame")):
                values = _score(metric, control_items, features)
                keep = [i for i in range(len(items)) if np.isfinite(truth[i]) and np.isfinite(values[i])]
                controls.append(Control(f"PA ({metric.name}): {label}", metric.name,
                                        f"detections scored against the true keypoints vs {what}",
                                        [truth[i] if i in keep else float("nan") for i in range(len(items))],
                                        [[values[i]] if i in keep else [] for i in range(len(items))]))
    return Study(controls, diagnostics)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _mean(values: Sequence[float], mask: Sequence[bool]) -> float:
    kept = [v for v, m in zip(values, mask) if m and np.isfinite(v)]
    return float(np.mean(kept)) if kept else float("nan")


def render_report(study: Study, samples: Sequence[Sample], header: Mapping[str, str]) -> str:
    controls = study.controls
    lines = ["# Metric validity: mini world", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    groups = {"all": [True] * len(samples),
              "upright": [s.tags.get("motion_class") == "upright" for s in samples],
              "floor": [s.tags.get("motion_class") == "floor" for s in samples]}
    lines += ["", "## AUC per control", "",
              f"AUC = P(true item scores higher than a control item), ties 1/2; target >= {TARGET_AUC} on upright "
              "motions. 'paired' = the same comparison within each video only. Means are the metric's per-video "
              "values (CS, FC x100; PCK, OKS in [0, 1]; per-video AP x100).", "",
              "| control | videos (all/upright/floor) | controls | mean true | mean control | AUC all | "
              "AUC upright | AUC floor | paired upright | upright >= target |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for control in controls:
        stats = {name: control.stats(mask) for name, mask in groups.items()}
        every, upright, floor = stats["all"], stats["upright"], stats["floor"]
        if every["n_videos"] == 0:
            continue
        met = ("(reference)" if control.reference
               else "yes" if upright.get("auc", 0.0) >= TARGET_AUC else "**no**")
        lines.append(f"| {control.name} | {every['n_videos']}/{upright['n_videos']}/{floor['n_videos']} | "
                     f"{every['n_controls']} | {_fmt(every['mean_true'])} | {_fmt(every['mean_control'])} | "
                     f"{_fmt(every['auc'])} | {_fmt(upright.get('auc'))} | {_fmt(floor.get('auc'))} | "
                     f"{_fmt(upright.get('paired'))} | {met} |")
    lines += ["", "Controls:", ""]
    lines += [f"- {c.name}: {c.description} (metric `{c.metric}`)" for c in controls]
    if study.diagnostics:
        lines += ["", "## Pose detection on the ground-truth videos", "",
                  "Where the detector finds nobody in a true video, its PA, PCK and OKS are 0 like the control's, so "
                  "the comparison ties: the PA AUCs above are bounded by the detection rate (see the style table).",
                  "", "| diagnostic (mean per video) | all | upright | floor |", "|---|---|---|---|"]
        for name, values in study.diagnostics.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(_mean(values, mask)) for mask in groups.values()) + " |")
        detection = study.diagnostics.get("pose detection rate (true videos)")
        pose_controls = [c for c in controls if c.name.startswith("PA (")]
        if detection is not None and pose_controls:
            upright = groups["upright"]
            subsets = {"every frame": [u and d >= 1.0 for u, d in zip(upright, detection)],
                       "some frame": [u and d > 0.0 for u, d in zip(upright, detection)],
                       "no frame": [u and d == 0.0 for u, d in zip(upright, detection)]}
            lines += ["", "The PA controls on upright videos, split by where the detector finds the person in the "
                      "true video (the control scores the same detections):", "",
                      "| control | " + " | ".join(f"AUC, found in {k} (videos)" for k in subsets) + " |",
                      "|---|" + "---|" * len(subsets)]
            for control in pose_controls:
                cells = []
                for mask in subsets.values():
                    stats = control.stats(mask)
                    cells.append(f"{_fmt(stats.get('auc'))} ({stats['n_videos']})")
                lines.append(f"| {control.name} | " + " | ".join(cells) + " |")
    summary = [c for c in controls if c.name in ("CS: appearance changed", "CS: verb changed",
                                                 "FC: frames shuffled", "FC: 8 frames of 8 samples")
               or c.name.startswith("PA (pck_0.1h)") or c.name.startswith("PA (pose_mean_oks)")]
    for key in ("motion_class", *TAG_KEYS):
        values = sorted({s.tags.get(key, "") for s in samples})
        if len(values) < 2:
            continue
        detection = study.diagnostics.get("pose detection rate (true videos)")
        lines += ["", f"## AUC per tag: {key}", "",
                  "| " + key + " | videos | " + " | ".join(c.name for c in summary)
                  + (" | pose detection rate (true) |" if detection is not None else " |"),
                  "|---|---|" + "---|" * (len(summary) + (detection is not None))]
        for value in values:
            mask = [s.tags.get(key, "") == value for s in samples]
            cells = [_fmt(c.stats(mask).get("auc")) for c in summary]
            if detection is not None:
                cells.append(_fmt(_mean(detection, mask)))
            lines.append(f"| {value} | {sum(mask)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def validate_metrics(world: str = "mini", num_samples: int = 256, out: str | os.PathLike = DEFAULT_OUT,
                     clip_weights: str | os.PathLike | None = None, pose_processes: int = 1,
                     log: Callable[[str], None] = print) -> Path:
    """Run the controls on `num_samples` fyp-1024 ground-truth renders and write the markdown report `out`."""
    from fypbench.io import write_text_atomic
    from fypbench.methods.reference import ReferenceGenerator
    from fypbench.metrics import default_detector
    from fypbench.metrics.clip_metrics import load_clip_for_world
    from fypbench.metrics.pose import PoseDetectionStep
    from fypbench.protocol import load_protocol

    if world != "mini":
        raise UserError(f"validate-metrics --world {world!r}: only the mini world renders ground-truth videos "
                        "for the controls (known: mini)")
    if pose_processes < 1:
        raise UserError(f"--pose-processes must be >= 1, got {pose_processes}")
    out = Path(out)
    started = time.perf_counter()
    protocol = load_protocol(DEFAULT_PROTOCOL)
    indices = evenly_spaced(int(num_samples), len(protocol.samples))
    samples = [protocol.samples[i] for i in indices]
    generator = ReferenceGenerator()
    videos = generator.generate(samples)
    log(f"rendered {len(videos)} reference videos")
    embedder = load_clip_for_world(world, clip_weights)
    pose_step = PoseDetectionStep(default_detector(world), processes=pose_processes)
    study = run_controls(samples, videos, embedder, pose_step, log)
    clip_config = embedder.config()
    detector = pose_step.config()["detector"]
    header = {
        "command": f"`{command_line(world, int(num_samples), out, clip_weights, pose_processes)}`",
        "git": git_description(),
        "protocol": f"{protocol.name} (hash {protocol.hash[:16]}), {len(samples)} of {len(protocol.samples)} samples "
                    "evenly spaced (index round(k (N-1)/(n-1)))",
        "videos": f"`reference` method ({generator.config()}), {videos[0].shape[0]} frames of "
                  f"{videos[0].shape[1]}x{videos[0].shape[2]} px",
        "CLIP": f"{clip_config.get('model_id')} (weights sha256 {str(clip_config.get('weights_sha256'))[:16]})",
        "pose detector": f"{detector.get('detector')} {detector.get('mediapipe_version', '')} (model_complexity "
                         f"{detector.get('model_complexity', '-')}, border {detector.get('pad_fraction', '-')} x "
                         f"long side, resized to {detector.get('resize_long_side', '-')} px, variants "
                         f"{', '.join(detector.get('variants', {})) or '-'}, min confidences "
                         f"{detector.get('min_detection_confidence', '-')}/"
                         f"{detector.get('min_tracking_confidence', '-')})",
        "seeds": f"controls drawn from fypbench.seeding.numpy_rng({SEED_NAMESPACE!r}, purpose, sample id)",
        "runtime": f"{time.perf_counter() - started:.0f} s",
    }
    write_text_atomic(out, render_report(study, samples, header))
    log(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="mini")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--clip-weights", default=None)
    parser.add_argument("--pose-processes", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        validate_metrics(args.world, args.samples, args.out, args.clip_weights, args.pose_processes)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
