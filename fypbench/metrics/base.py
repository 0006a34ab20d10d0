"""The metric interface: versioned definitions over stored uint8 videos, with shared feature steps.

    python -c "from fypbench.metrics.base import score_videos; help(score_videos)"

A `FeatureStep` is the expensive part several metrics share (CLIP image embeddings for CS and FC; pose
detections for PA, PCK and the pose diagnostics). Each step has a `key` derived from its configuration;
`score_items` runs every distinct step once over the videos and hands the results to every metric that
asked for it.

Aggregation (metrics.md §0): frame -> video inside `Metric.score`, video -> method in `Metric.aggregate`
(mean over videos with a finite value by default; NaN videos are counted and their reasons kept, never
dropped silently). A metric may pool instead (COCO AP pools all frames of a method).

`score_videos(run_dir, metrics, samples)` is the scoring stage's core: integrity check, then long-format
rows (method, sample_id, metric, metric_version, metric_config_hash, value, extra JSON), skipping rows already
done (resume) and scoring a changed metric configuration anew without regenerating videos;
`aggregate_rows` turns rows into method-level values.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fypbench.generator import config_hash
from fypbench.sample import Sample
from fypbench.videos import validate_frames


@dataclass(frozen=True, eq=False)
class VideoItem:
    """One stored video to score: which method made it, for which sample, and its uint8 frames."""

    method: str
    sample: Sample
    frames: np.ndarray

    def __post_init__(self) -> None:
        validate_frames(self.frames, f"video {self.method}/{self.sample.id}")

    @property
    def sample_id(self) -> str:
        return self.sample.id


@dataclass(frozen=True)
class MetricResult:
    """A metric's value for one video. NaN values carry `extra["nan_reason"]`."""

    value: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if math.isnan(self.value) and "nan_reason" not in self.extra:
            raise ValueError("a NaN metric value needs extra['nan_reason']")


def nan_result(reason: str, **extra: Any) -> MetricResult:
    return MetricResult(float("nan"), {"nan_reason": reason, **extra})


class FeatureStep(ABC):
    """A per-video computation shared by metrics; `key` identifies it (equal keys are run once)."""

    kind: ClassVar[str]

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the step's output (model id, weights hash, preprocessing...)."""

    @property
    def key(self) -> str:
        return f"{self.kind}:{config_hash(self.config())}"

    @abstractmethod
    def run(self, items: Sequence[VideoItem]) -> list[Any]:
        """One feature per item, in order."""


class Metric(ABC):
    """A versioned metric definition.

    Subclasses set `name` and `version` (bump it whenever the definition changes), list their shared
    `steps()`, and implement `score(item, features)` where `features[step.key]` is that step's output
    for this item.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the value (includes the steps' configs)."""

    def steps(self) -> Sequence[FeatureStep]:
        return ()

    @abstractmethod
    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        """The value for one video."""

    def config_hash(self) -> str:
        return config_hash({"metric": self.name, "version": self.version, **self.config()})

    def record(self) -> dict[str, Any]:
        """The definition stored with every result."""
        return {"name": self.name, "version": self.version, "config": self.config(),
                "config_hash": self.config_hash()}

    def aggregate(self, results: Sequence[MetricResult]) -> dict[str, Any]:
        """Method-level value: mean over videos with a finite value; NaN videos counted with reasons."""
        return mean_aggregate(results)


def mean_aggregate(results: Sequence[MetricResult]) -> dict[str, Any]:
    values = np.array([r.value for r in results], dtype=np.float64)
    finite = np.isfinite(values)
    reasons = Counter(r.extra.get("nan_reason", "non-finite value") for r, ok in zip(results, finite) if not ok)
    return {"value": float(values[finite].mean()) if finite.any() else float("nan"),
            "n_videos": int(len(values)), "n_finite": int(finite.sum()), "nan_reasons": dict(reasons)}


def unique_steps(metrics: Iterable[Metric]) -> dict[str, FeatureStep]:
    steps: dict[str, FeatureStep] = {}
    for metric in metrics:
        for step in metric.steps():
            steps.setdefault(step.key, step)
    return steps


def check_unique_names(metrics: Sequence[Metric]) -> None:
    names = [m.name for m in metrics]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"metric name(s) given twice: {', '.join(duplicated)}")


def score_items(metrics: Sequence[Metric], items: Sequence[VideoItem],
                wanted: Callable[[VideoItem, Metric], bool] | None = None,
                timings: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Long-format rows, one per wanted (video, metric): method, sample_id, metric, metric_version,
    metric_config_hash, value and extra (a JSON string). Each distinct feature step runs once, over the
    videos that at least one wanted metric needs. `timings`, when given, accumulates each step's wall seconds
    and video count under its key ({"seconds": s, "videos": n})."""
    check_unique_names(metrics)
    wanted_pairs = [[wanted is None or wanted(item, metric) for metric in metrics] for item in items]
    features: dict[str, dict[int, Any]] = {}
    for key, step in unique_steps(metrics).items():
        users = [j for j, metric in enumerate(metrics) if any(s.key == key for s in metric.steps())]
        indices = [i for i in range(len(items)) if any(wanted_pairs[i][j] for j in users)]
        started = time.perf_counter()
        outputs = step.run([items[i] for i in indices]) if indices else []
        if timings is not None and indices:
            entry = timings.setdefault(key, {"seconds": 0.0, "videos": 0})
            entry["seconds"] += time.perf_counter() - started
            entry["videos"] += len(indices)
        if len(outputs) != len(indices):
            raise RuntimeError(f"feature step {key} returned {len(outputs)} outputs for {len(indices)} videos")
        features[key] = dict(zip(indices, outputs))
    rows = []
    for i, item in enumerate(items):
        for j, metric in enumerate(metrics):
            if not wanted_pairs[i][j]:
                continue
            result = metric.score(item, {step.key: features[step.key][i] for step in metric.steps()})
            rows.append({"method": item.method, "sample_id": item.sample_id, "metric": metric.name,
                         "metric_version": metric.version, "metric_config_hash": metric.config_hash(),
                         "value": float(result.value),
                         "extra": json.dumps(result.extra, sort_keys=True, allow_nan=True)})
    return rows


ROW_COLUMNS = ("method", "sample_id", "metric", "metric_version", "metric_config_hash", "value", "extra")


def score_videos(run_dir: str | os.PathLike, metrics: Sequence[Metric], samples: Sequence[Sample],
                 methods: Sequence[str] | None = None, done: Iterable[tuple[str, str, str, str]] = (),
                 size: tuple[int, int] | None = None, chunk_videos: int = 256,
                 on_chunk: Callable[[list[dict[str, Any]]], None] | None = None, coverage: Any = None,
                 timings: dict[str, dict[str, float]] | None = None):
    """Score every usable stored video of `methods` (default: all stored) for `samples`.

    Runs the integrity check first (its per-method counts go to `df.attrs["coverage"]`, its problems to
    `df.attrs["problems"]`) and scores only videos that pass; a `coverage` (fypbench.videos.Coverage) already
    computed for the same methods and samples is used instead. Rows whose (method, sample_id, metric,
    metric_config_hash) is in `done` are skipped (resume); a metric with another configuration has another
    hash, so it is scored anew without touching the videos. Videos are read and scored `chunk_videos` at a
    time; `on_chunk(rows)` receives each chunk's rows (the caller persists them, so an interrupted run keeps
    its finished chunks). Returns a long-format pandas DataFrame of all new rows.
    """
    import pandas as pd

    from fypbench.videos import integrity_check, read_video, stored_methods

    check_unique_names(metrics)
    methods = list(methods) if methods is not None else stored_methods(run_dir)
    if coverage is None:
        coverage = integrity_check(run_dir, methods, samples, size=size)
    done_set = {tuple(map(str, key)) for key in done}
    hashes = {metric.name: metric.config_hash() for metric in metrics}
    by_id = {sample.id: sample for sample in samples}

    def wanted(method: str, sample_id: str, metric: Metric) -> bool:
        return (method, sample_id, metric.name, hashes[metric.name]) not in done_set

    jobs = [(method, sample_id) for method in methods for sample_id in coverage.ok_ids(method)
            if any(wanted(method, sample_id, metric) for metric in metrics)]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(jobs), chunk_videos):
        items = [VideoItem(method, by_id[sample_id], read_video(run_dir, method, sample_id))
                 for method, sample_id in jobs[start:start + chunk_videos]]
        chunk_rows = score_items(metrics, items, lambda item, metric: wanted(item.method, item.sample_id, metric),
                                 timings=timings)
        if on_chunk is not None:
            on_chunk(chunk_rows)
        rows.extend(chunk_rows)
    frame = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    frame.attrs["coverage"] = coverage.counts()
    frame.attrs["problems"] = [vars(p) for p in coverage.problems]
    frame.attrs["metrics"] = {metric.name: metric.record() for metric in metrics}
    return frame


def aggregate_rows(metrics: Sequence[Metric], rows) -> dict[str, dict[str, dict[str, Any]]]:
    """Method-level values {method: {metric: aggregate}} from long-format rows (a DataFrame or dicts);
    only rows with each metric's current config hash are used."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for metric in metrics:
        current = metric.config_hash()
        by_method: dict[str, list[Mapping[str, Any]]] = {}
        for row in records:
            if row["metric"] == metric.name and row["metric_config_hash"] == current:
                by_method.setdefault(row["method"], []).append(row)
        for method, method_rows in by_method.items():
            out.setdefault(method, {})[metric.name] = metric.aggregate(results_from_rows(method_rows))
    return out


def results_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[MetricResult]:
    return [MetricResult(float(row["value"]), json.loads(row["extra"]) if isinstance(row["extra"], str)
                         else dict(row["extra"])) for row in rows]
