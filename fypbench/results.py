"""The results record of a run: per method x metric the value, a bootstrap 95 % CI and n expected/found,
paired comparisons against a baseline method, per-tag slices, and everything needed to trace a number.

    fypbench results RUN_DIR

Built only from RUN_DIR/run.json and RUN_DIR/scores/scores.parquet (rows of each metric's current
configuration). Mean-type metrics are bootstrapped over sample ids on their per-video values; pooled metrics
(PA = COCO AP over all frames of a method) are recomputed on every resampled set of videos with the exact fast
AP of fypbench/metrics/fast_ap.py (checked against COCOeval's value on the full set at every call). Written atomically to RUN_DIR/results.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fypbench.errors import UserError, did_you_mean
from fypbench.io import read_json_object, write_json_atomic
from fypbench.stats import (
    DEFAULT_REPLICATES, DEFAULT_SEED, bootstrap_mean, bootstrap_statistic, paired_bootstrap_mean,
    paired_bootstrap_statistic,
)

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
POOLED_METRICS = ("pa",)  # aggregate is not a mean of per-video values
DEFAULT_BASELINE = "followpose"
POOLED_REPLICATES = 1000


def _value(aggregate: dict[str, Any]) -> float:
    return float(aggregate.get("value", float("nan")))


class _PooledAP:
    """Bootstrap-ready pooled PA: per-video image indices into one fast AP table (checked against COCOeval)."""

    def __init__(self, rows: list[dict[str, Any]]):
        from fypbench.metrics.fast_ap import KeypointAPTable
        from fypbench.metrics.pose import FrameDetections, gt_box

        frames, self.video_images = [], []
        for row in rows:
            extra = json.loads(row["extra"]) if isinstance(row["extra"], str) else row["extra"]
            indices = []
            for frame in extra.get("frames", []):
                gt = np.array(frame["gt"], dtype=np.float64).reshape(17, 3)
                if gt_box(gt) is None:
                    continue
                indices.append(len(frames))
                frames.append((gt, FrameDetections.from_json(frame["detections"])))
            self.video_images.append(np.array(indices, dtype=np.int64))
        self.table = KeypointAPTable(frames)

    def __call__(self, videos: np.ndarray) -> float:
        images = np.concatenate([self.video_images[v] for v in videos]) if len(videos) else np.zeros(0, np.int64)
        return self.table.ap(images)["ap"]


def build_results(run_dir: str | Path, baseline: str = DEFAULT_BASELINE, replicates: int = DEFAULT_REPLICATES,
                  pooled_replicates: int = POOLED_REPLICATES, seed: int = DEFAULT_SEED,
                  slice_tags: Sequence[str] | None = None, metrics=None) -> dict[str, Any]:
    """The results record (a JSON-ready dict). `metrics` overrides the metric objects (tests)."""
    from fypbench.metrics import DEFAULT_METRICS, build_metrics
    from fypbench.metrics.base import results_from_rows
    from fypbench.runner import read_run_record
    from fypbench.scoring import load_run_samples, read_scores, unusable_videos

    run_dir = Path(run_dir)
    started = time.perf_counter()
    run = read_run_record(run_dir)
    samples = load_run_samples(run_dir)
    scores = read_scores(run_dir)
    if scores.empty:
        raise UserError(f"{run_dir}: nothing scored yet (run `fypbench score {run_dir}`)")
    # rows of videos the last integrity check found missing or corrupt do not count as found
    unusable = unusable_videos(run_dir)
    if unusable:
        keep = [(m, s) not in unusable for m, s in zip(scores["method"], scores["sample_id"])]
        scores = scores[keep].reset_index(drop=True)
    if metrics is None:
        present = [m for m in DEFAULT_METRICS if m in set(scores["metric"])]
        metrics = build_metrics(present, run.get("world", "mini"))
    ids = [s.id for s in samples]
    tags = {s.id: s.tags for s in samples}
    methods = [m for m in list(run.get("methods", {})) if m in set(scores["method"])]
    if baseline != DEFAULT_BASELINE and baseline not in methods:
        raise did_you_mean(baseline, methods, "baseline method (scored in this run)")
    slice_tags = list(slice_tags) if slice_tags is not None else sorted({k for s in samples for k in s.tags})

    per_metric_rows: dict[str, dict[str, dict[str, Any]]] = {}
    for metric in metrics:
        current = scores[(scores["metric"] == metric.name) & (scores["metric_config_hash"] == metric.config_hash())]
        per_metric_rows[metric.name] = {
            method: {row["sample_id"]: row for row in group.to_dict("records")}
            for method, group in current.groupby("method")}

    def aggregate(metric, rows: list[dict[str, Any]]) -> float:
        return _value(metric.aggregate(results_from_rows(rows))) if rows else float("nan")

    table: dict[str, dict[str, Any]] = {}
    paired: dict[str, dict[str, Any]] = {}
    slices: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for metric in metrics:
        pooled = metric.name in POOLED_METRICS
        by_method = per_metric_rows[metric.name]
        for method in methods:
            rows_by_id = by_method.get(method, {})
            found = [sid for sid in ids if sid in rows_by_id]
            if pooled:
                rows = [rows_by_id[sid] for sid in found]
                pooled_ap = _PooledAP(rows)
                if rows and not np.isclose(pooled_ap(np.arange(len(rows))), aggregate(metric, rows), atol=1e-6,
                                           equal_nan=True):
                    raise RuntimeError(f"fast AP disagrees with COCOeval for {method}/{metric.name}")
                estimate = bootstrap_statistic(pooled_ap, len(rows), pooled_replicates, seed)
            else:
                estimate = bootstrap_mean([rows_by_id[sid]["value"] for sid in found], replicates, seed)
            entry = {**estimate.to_dict(), "n_expected": len(ids), "n_found": len(found)}
            if pooled and found:
                entry["details"] = {k: v for k, v in metric.aggregate(
                    results_from_rows([rows_by_id[s] for s in found])).items() if k != "value"}
            table.setdefault(method, {})[metric.name] = entry
            for tag in slice_tags:
                values: dict[str, list[str]] = {}
                for sid in found:
                    values.setdefault(str(tags[sid].get(tag)), []).append(sid)
                for tag_value, sids in values.items():
                    if pooled:
                        value = aggregate(metric, [rows_by_id[s] for s in sids])
                    else:
                        finite = [v for v in (float(rows_by_id[s]["value"]) for s in sids) if np.isfinite(v)]
                        value = float(np.mean(finite)) if finite else float("nan")
                    slices.setdefault(tag, {}).setdefault(tag_value, {}).setdefault(method, {})[metric.name] = {
                        "value": value, "n": len(sids)}
        if baseline in by_method:
            base_rows = by_method[baseline]
            for method in methods:
                if method == baseline:
                    continue
                rows_by_id = by_method.get(method, {})
                common = [sid for sid in ids if sid in rows_by_id and sid in base_rows]
                if pooled:
                    estimate = paired_bootstrap_statistic(
                        _PooledAP([rows_by_id[s] for s in common]), _PooledAP([base_rows[s] for s in common]),
                        len(common), pooled_replicates, seed)
                else:
                    estimate = paired_bootstrap_mean([rows_by_id[s]["value"] for s in common],
                                                     [base_rows[s]["value"] for s in common], replicates, seed)
                paired.setdefault(method, {})[metric.name] = estimate.to_dict()

    return {
        "schema_version": SCHEMA_VERSION,
        "run": {k: run.get(k) for k in ("fypbench_version", "world", "protocol", "protocol_path", "protocol_hash",
                                        "subset", "limit", "batch_size", "preset", "methods", "unavailable",
                                        "environment", "ablation", "commands", "run_config")},
        "n_samples": len(ids),
        "metrics": {metric.name: metric.record() for metric in metrics},
        "bootstrap": {"replicates": replicates, "pooled_replicates": pooled_replicates, "seed": seed,
                      "confidence": 0.95, "unit": "sample id", "method": "percentile"},
        "table": table,
        "paired": {"baseline": baseline if any(baseline in r for r in per_metric_rows.values()) else None,
                   "difference": "method - baseline", "comparisons": paired},
        "slices": slices,
        "unusable_videos": {m: sorted(s for mm, s in unusable if mm == m) for m in sorted({m for m, _ in unusable})},
        "seconds": round(time.perf_counter() - started, 2),
    }


def write_results(run_dir: str | Path, **options: Any) -> Path:
    record = build_results(run_dir, **options)
    path = Path(run_dir) / RESULTS_FILE
    write_json_atomic(path, json.loads(json.dumps(record, default=_jsonable)))
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"{path}: no results record (run `fypbench results {run_dir}`)")
    record = read_json_object(path, f"rebuild it with `fypbench results {run_dir}`")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema_version {record.get('schema_version')} != {SCHEMA_VERSION}")
    return record
