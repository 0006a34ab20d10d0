"""The scoring stage: every stored video of a run -> RUN_DIR/scores/scores.parquet (long format).

    fypbench score RUN_DIR [--metrics a,b] [--pose-processes N] [--clip-weights PATH] [--rescore]
    python -c "from fypbench.scoring import score_run; print(score_run('runs/my_run'))"

Inputs: RUN_DIR/videos/<method>/<sample>.{npz,json} (fypbench.videos) and the run's samples: RUN_DIR/run.json
(written by fypbench.run_job) or `samples=` given explicitly. run.json fields read here:
  "protocol"       a protocol name (fypbench.protocol.builtin_names) or a path to a protocol folder (required)
  "protocol_path"  the protocol folder the run used (optional; preferred over "protocol" when it exists)
  "protocol_hash"  the protocol's content hash (optional; checked: a changed protocol is a UserError)
  "sample_ids"     the run's sample ids, in protocol order (optional; default: every sample of the protocol)
  "world"          the world the run was generated in (optional; score_run's `world` argument wins when given)

Steps: the integrity check (missing / incomplete / corrupt / wrong frame count or size / non-finite videos;
its per-method coverage is logged and written to scores/coverage.json and broken videos are not scored), then
the metrics (fypbench.metrics.build_metrics; CS and FC share one CLIP image pass, the pose metrics one
detection pass, `pose_processes` detector processes), `chunk_videos` videos at a time.

Output, in RUN_DIR/scores/:
  scores.parquet  one row per (method, sample_id, metric, metric_config_hash): metric_version, value, extra
                  (a JSON string: raw per-frame cosines, detections, NaN reasons...). Rewritten atomically after
                  every chunk, so an interrupted run keeps what it scored; a rerun skips every row already
                  present with the same metric config hash (resume). A metric configured differently (another
                  CLIP, detector, threshold...) has another hash: it is scored again from the stored frames,
                  beside the old rows, without regenerating any video. `rescore=True` drops and recomputes the
                  rows of the requested metrics' current configurations.
  metrics.json    every metric definition ever scored into scores.parquet, by config hash (model ids, weight
                  hashes, preprocessing, clamping, thresholds): what the rows' hashes mean.
  coverage.json   the last integrity check: per method expected / ok / each problem kind, and the problems.
  timings.json    one entry per scoring session: wall seconds, rows, seconds per feature step.
  parts/          shard-local scoring (`part=`): a sharded `fypbench run` scores each shard's own videos right
                  after its generation, in parallel, into parts/<part>.parquet (+ <part>.timings.json, and
                  <part>.done once finished); shard 0 then scores what is left and folds every part into
                  scores.parquet and timings.json. read_scores() reads scores.parquet and any part not folded
                  yet, one row per key (scores.parquet wins).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from fypbench.errors import UserError, did_you_mean
from fypbench.io import is_temp_file, read_json_object
from fypbench.runner import RUN_FILE, read_run_record
from fypbench.sample import Sample

SCORES_DIR = "scores"
SCORES_FILE = "scores.parquet"
METRICS_FILE = "metrics.json"
COVERAGE_FILE = "coverage.json"
TIMINGS_FILE = "timings.json"
PARTS_DIR = "parts"
KEY_COLUMNS = ("method", "sample_id", "metric", "metric_config_hash")
WORLD_FRAME_SIZE = {"mini": (64, 64)}  # (height, width) every method of the world must store; others: unchecked
KNOWN_WORLDS = ("mini", "sd")


def _default_metrics() -> tuple[str, ...]:
    from fypbench.metrics import DEFAULT_METRICS

    return tuple(DEFAULT_METRICS)


DEFAULT = _default_metrics()


def parse_metric_names(names: str | Sequence[str] | None) -> list[str]:
    """"a,b" or ["a", "b"] -> checked metric names (an unknown one raises UserError with a did-you-mean)."""
    from fypbench.metrics import METRICS

    if names is None:
        return list(DEFAULT)
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
    items = [n for n in items if n]
    if not items:
        raise UserError("--metrics: no metric name given (known: " + ", ".join(METRICS.names()) + ")")
    for name in items:
        if name not in METRICS:
            raise did_you_mean(name, METRICS.names(), "metric")
    return list(dict.fromkeys(items))


def load_run_samples(run_dir: str | os.PathLike) -> list[Sample]:
    """The run's samples from RUN_DIR/run.json (its protocol, restricted to its sample_ids when listed)."""
    from fypbench.protocol import load_protocol

    path = Path(run_dir) / RUN_FILE
    record = read_run_record(Path(run_dir))
    protocol_ref = record.get("protocol")
    if not isinstance(protocol_ref, str) or not protocol_ref:
        raise UserError(f"{path}: field 'protocol' must name a protocol or a protocol folder")
    folder = record.get("protocol_path")
    protocol = load_protocol(folder if isinstance(folder, str) and Path(folder).is_dir() else protocol_ref)
    expected_hash = record.get("protocol_hash")
    if expected_hash is not None and expected_hash != protocol.hash:
        raise UserError(f"{path}: field 'protocol_hash' {str(expected_hash)[:16]}... differs from protocol "
                        f"{protocol.name!r} as loaded now ({protocol.hash[:16]}...): the protocol changed since the run")
    ids = record.get("sample_ids")
    if ids is None:
        return list(protocol.samples)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise UserError(f"{path}: field 'sample_ids' must be a list of sample id strings")
    by_id = {s.id: s for s in protocol.samples}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise UserError(f"{path}: field 'sample_ids' names {len(unknown)} sample(s) not in protocol "
                        f"{protocol.name!r}, e.g. {unknown[0]!r}")
    return [by_id[i] for i in ids]


def scores_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / SCORES_DIR / SCORES_FILE


def parts_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / SCORES_DIR / PARTS_DIR


def part_done_path(run_dir: str | os.PathLike, part: str) -> Path:
    """The marker a shard writes once its part is scored (shard 0 waits for it before folding the parts)."""
    return parts_dir(run_dir) / f"{part}.done"


def _part_timings_path(run_dir: str | os.PathLike, part: str) -> Path:
    return parts_dir(run_dir) / f"{part}.timings.json"


def _empty_scores():
    import pandas as pd

    from fypbench.metrics.base import ROW_COLUMNS

    return pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in ROW_COLUMNS})


def _read_scores_file(path: Path):
    import pandas as pd

    from fypbench.metrics.base import ROW_COLUMNS

    if not path.is_file():
        return _empty_scores()
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise UserError(f"{path}: unreadable parquet ({type(error).__name__}); delete it to score again") from None
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: not a scores file (columns {', '.join(missing)} missing)")
    return frame[list(ROW_COLUMNS)]


def _concat_unique(frames: Sequence[Any]):
    """Rows of `frames` in order, one per key (the first wins)."""
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty_scores()
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return frame.drop_duplicates(subset=list(KEY_COLUMNS), keep="first").reset_index(drop=True)


def _part_files(run_dir: str | os.PathLike) -> list[Path]:
    folder = parts_dir(run_dir)
    return sorted(p for p in folder.glob("*.parquet") if not is_temp_file(p)) if folder.is_dir() else []


def read_scores(run_dir: str | os.PathLike):
    """The run's scores as a DataFrame (empty with the row columns when nothing was scored yet): scores.parquet
    plus the rows of shard parts not folded into it yet (one row per key; scores.parquet's wins)."""
    return _concat_unique([_read_scores_file(scores_path(run_dir))]
                          + [_read_scores_file(path) for path in _part_files(run_dir)])


def drop_method_rows(run_dir: str | os.PathLike, methods: Collection[str], log: Callable[[str], None] = print) -> int:
    """Remove every score row of `methods` (scores.parquet and unfolded parts); returns the number removed.
    The caller holds the run's exclusive lock (`fypbench forget`)."""
    removed = 0
    for path in [scores_path(run_dir), *_part_files(run_dir)]:
        if not path.is_file():
            continue
        frame = _read_scores_file(path)
        keep = ~frame["method"].isin(list(methods))
        if not keep.all():
            _write_scores(path, frame[keep].reset_index(drop=True))
            removed += int((~keep).sum())
            log(f"{path}: dropped {int((~keep).sum())} rows")
    return removed


def _write_scores(path: Path, frame) -> None:
    from fypbench.io import atomic_path

    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def score_run(run_dir: str | os.PathLike, metric_names: str | Sequence[str] | None = DEFAULT,
              world: str | None = None, clip_weights: str | os.PathLike | None = None, pose_processes: int = 1,
              rescore: bool = False, samples: Sequence[Sample] | None = None, methods: Sequence[str] | None = None,
              pose_detector: Any = None, embedder: Any = None, chunk_videos: int = 64,
              pairs: Collection[tuple[str, str]] | None = None, part: str | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Score every stored video of the run into RUN_DIR/scores/scores.parquet; returns that path.

    world: "mini" or "sd" (default: run.json's "world", else "mini"). samples: the run's samples (default:
    from run.json). methods: default every method with stored videos. pose_detector: a
    fypbench.metrics.pose.DetectorSpec (default: the world's). embedder: a CLIP embedder overriding the world's
    (tests). pairs: score only these (method, sample_id) videos. part: a shard's name; its new rows go to
    scores/parts/<part>.parquet (returned) and nothing shared is rewritten but metrics.json, so shards score at
    once; without `part`, every part is folded into scores.parquet (rows, timings) and removed. Bad input
    (missing run dir, unknown metric, missing weights, unreadable run.json, rescore of a part) raises UserError.
    """
    import pandas as pd

    from fypbench.metrics import build_metrics
    from fypbench.metrics.base import ROW_COLUMNS, score_videos
    from fypbench.videos import Coverage, integrity_check, stored_methods

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} not found")
    names = parse_metric_names(metric_names)
    if pose_processes < 1:
        raise UserError(f"--pose-processes must be >= 1, got {pose_processes}")
    if chunk_videos < 1:
        raise ValueError(f"chunk_videos must be >= 1, got {chunk_videos}")
    if part is not None and rescore:
        raise UserError("rescore folds every shard part first: run it without a part")
    if world is None:
        world = str(read_run_record(Path(run_dir)).get("world", "mini")) if (run_dir / RUN_FILE).is_file() else "mini"
    if world not in KNOWN_WORLDS:
        raise did_you_mean(world, KNOWN_WORLDS, "world")
    samples = list(samples) if samples is not None else load_run_samples(run_dir)
    stored = stored_methods(run_dir)
    methods = list(methods) if methods is not None else stored
    if pairs is not None:
        pairs = {(str(m), str(sid)) for m, sid in pairs}
        methods = [m for m in methods if any(pm == m for pm, _ in pairs)]
        samples = [s for s in samples if any((m, s.id) in pairs for m in methods)]
    if not samples:
        raise UserError(f"{run_dir}: the run has no samples to score")
    if not methods:
        raise UserError(f"{run_dir / 'videos'}: no stored videos (run `fypbench run` first)")
    for method in methods:
        if method not in stored:
            raise did_you_mean(method, stored, f"method with stored videos in {run_dir}")

    size = WORLD_FRAME_SIZE.get(world)
    if pairs is None:
        coverage = integrity_check(run_dir, methods, samples, size=size)
    else:  # each method on its own samples only (the other shards' videos may still be on their way); the
        # coverage then limits everything below to `pairs`
        coverage = Coverage({m: integrity_check(run_dir, [m], [s for s in samples if (m, s.id) in pairs],
                                                size=size).methods[m] for m in methods})
    log(f"integrity check of {run_dir}{f' ({part})' if part else ''}:\n{coverage.summary()}")
    metrics = build_metrics(names, world, clip_weights=clip_weights, pose_detector=pose_detector,
                            pose_processes=pose_processes, embedder=embedder)
    out_dir = run_dir / SCORES_DIR
    folded: list[tuple[Path, os.stat_result]] = []
    if part is None:
        path, timings_path = out_dir / SCORES_FILE, out_dir / TIMINGS_FILE
        folded = [(p, p.stat()) for p in _part_files(run_dir)]
        existing = _concat_unique([_read_scores_file(path)] + [_read_scores_file(p) for p, _ in folded])
        own = existing
    else:
        path, timings_path = parts_dir(run_dir) / f"{part}.parquet", _part_timings_path(run_dir, part)
        existing = read_scores(run_dir)
        own = _read_scores_file(path)
    current = {(m.name, m.config_hash()) for m in metrics}
    if rescore and not existing.empty:
        redo = [(row.metric, row.metric_config_hash) in current and row.method in methods
                for row in existing.itertuples(index=False)]
        dropped = int(sum(redo))
        existing = existing[[not r for r in redo]].reset_index(drop=True)
        own = existing
        log(f"rescore: dropped {dropped} existing rows of the requested metrics")
    done = set(existing[list(KEY_COLUMNS)].itertuples(index=False, name=None))

    from fypbench.io import write_json_atomic

    if part is None:
        write_json_atomic(out_dir / COVERAGE_FILE, {"world": world, "methods": methods, "counts": coverage.counts(),
                                                    "problems": [vars(p) for p in coverage.problems]})
    definitions = _read_definitions(out_dir / METRICS_FILE)
    for metric in metrics:
        definitions.setdefault(metric.name, {})[metric.config_hash()] = metric.record()
    write_json_atomic(out_dir / METRICS_FILE, definitions)

    state = {"frame": own, "new": 0}
    if rescore or folded:
        _write_scores(path, own)

    def persist(rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        added = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
        state["frame"] = pd.concat([state["frame"], added], ignore_index=True) if len(state["frame"]) else added
        state["new"] += len(added)
        _write_scores(path, state["frame"])
        log(f"scored {state['new']} new rows -> {path}")

    skipped = sum(1 for method in methods for sample_id in coverage.ok_ids(method) for metric in metrics
                  if (method, sample_id, metric.name, metric.config_hash()) in done)
    timings: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    score_videos(run_dir, metrics, samples, methods=methods, done=done, chunk_videos=chunk_videos,
                 on_chunk=persist, coverage=coverage, timings=timings)
    if not path.is_file():
        _write_scores(path, state["frame"])
    session = {"seconds": round(time.perf_counter() - started, 2), "rows": state["new"],
               "pose_processes": pose_processes, **({"part": part} if part else {}),
               "steps": {k: {"seconds": round(v["seconds"], 2), "videos": v["videos"]} for k, v in timings.items()}}
    _append_timings(timings_path, session)
    for part_path, seen in folded:  # folded into scores.parquet above; a part rewritten since is kept
        part_name = part_path.stem
        _fold_part_timings(_part_timings_path(run_dir, part_name), timings_path)
        with contextlib.suppress(FileNotFoundError):
            now = part_path.stat()
            if (now.st_mtime_ns, now.st_size) == (seen.st_mtime_ns, seen.st_size):
                part_path.unlink()
                part_done_path(run_dir, part_name).unlink(missing_ok=True)
    if folded:
        log(f"folded {len(folded)} shard part(s) into {path}")
    log(f"{state['new']} rows scored, {skipped} already present (same metric config), "
        f"{len(coverage.problems)} videos not scored (integrity problems)")
    return path


def unusable_videos(run_dir: str | os.PathLike) -> set[tuple[str, str]]:
    """(method, sample id) of the videos the last full integrity check (scores/coverage.json) found missing,
    corrupt or mis-shaped: their score rows, if any, describe a video the run no longer holds."""
    path = Path(run_dir) / SCORES_DIR / COVERAGE_FILE
    if not path.is_file():
        return set()
    hint = f"rebuild it with `fypbench score {run_dir}`"
    try:
        return {(str(p["method"]), str(p["sample_id"])) for p in read_json_object(path, hint)["problems"]}
    except (KeyError, TypeError) as error:
        raise UserError(f"{path}: unreadable ({error}); {hint}") from None


def _fold_part_timings(part_timings: Path, timings_path: Path) -> None:
    if not part_timings.is_file():
        return
    try:
        sessions = json.loads(part_timings.read_text(encoding="utf-8"))["sessions"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        sessions = []
    _append_timings(timings_path, *sessions)
    part_timings.unlink(missing_ok=True)


def _append_timings(path: Path, *new_sessions: dict[str, Any]) -> None:
    """scores/timings.json: one entry per scoring session (wall seconds, rows, seconds per feature step)."""
    from fypbench.io import write_json_atomic

    try:
        sessions = json.loads(path.read_text(encoding="utf-8"))["sessions"] if path.is_file() else []
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        sessions = []  # a timing log is diagnostics only: an unreadable one is restarted, never fatal
    write_json_atomic(path, {"sessions": [*sessions, *new_sessions]})


def _read_definitions(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return read_json_object(path, "delete it (it is rebuilt from the next scoring)")


def summarize_scores(run_dir: str | os.PathLike, metric_names: Iterable[str] | None = None,
                     world: str | None = None, clip_weights: str | os.PathLike | None = None,
                     embedder: Any = None, pose_detector: Any = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Method-level values {method: {metric: aggregate}} of the rows scored with the current metric configs."""
    from fypbench.metrics import build_metrics
    from fypbench.metrics.base import aggregate_rows

    run_dir = Path(run_dir)
    if world is None:
        world = str(read_run_record(Path(run_dir)).get("world", "mini")) if (run_dir / RUN_FILE).is_file() else "mini"
    names = parse_metric_names(list(metric_names) if metric_names is not None else None)
    metrics = build_metrics(names, world, clip_weights=clip_weights, pose_detector=pose_detector, embedder=embedder)
    return aggregate_rows(metrics, read_scores(run_dir))


def score_command(run_dir: str, metrics: str | None = None, pose_processes: int = 1,
                  clip_weights: str | None = None, rescore: bool = False, world: str | None = None) -> Path:
    """`fypbench score RUN_DIR [--metrics a,b] [--pose-processes N] [--clip-weights PATH] [--rescore]
    [--world W]`: the CLI's entry point (metrics as one comma-separated string)."""
    from fypbench.runner import Shard, run_lock

    run_path = Path(run_dir)
    if not run_path.is_dir():
        raise UserError(f"run directory {run_path} not found")
    with run_lock(run_path, Shard(0, 1)):  # refused while a `fypbench run` or `forget` works on the directory
        path = score_run(run_dir, parse_metric_names(metrics), world=world, clip_weights=clip_weights,
                         pose_processes=pose_processes, rescore=rescore)
    from fypbench.results import RESULTS_FILE

    if (run_path / RESULTS_FILE).is_file():
        print(f"note: {run_path / RESULTS_FILE} and the report predate these scores; rebuild them with "
              f"`fypbench results {run_dir} && fypbench leaderboard {run_dir}`")
    return path
