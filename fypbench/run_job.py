"""`fypbench run`: protocol -> generate -> score, in one resumable, shardable, locked run directory.

    fypbench run --methods reference --limit 16 --out runs/demo   (then RUN_DIR/results.json, RUN_DIR/report/)

Same command under `torchrun --standalone --nproc_per_node 2 -m fypbench.cli run ...` or `accelerate launch`
(RANK/WORLD_SIZE), or as Slurm array tasks with `--shard i/N`: the full job list is split first, then each
process skips its finished jobs (fypbench/runner.py). Each shard then scores its own videos into a scores part
(fypbench.scoring, `part=`); shard 0 waits for every video and every other shard's part, scores what is left (a
dead shard's videos) and folds the parts into scores/scores.parquet, then writes results.json and the report.
Videos still missing when no other shard has run for $FYPBENCH_SHARD_TAKEOVER_S seconds (default 120: a shard
that died, has not started, or split the job list with another --batch-size) are made by shard 0 itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fypbench.errors import UserError
from fypbench.io import check_output_dir, is_temp_file
from fypbench.runner import (
    DEFAULT_RUN_PRESET, Shard, check_same_run, check_unlocked, check_writable, environment_record, generate,
    load_run_config, load_run_preset, merge_run_configs, plan_jobs, resolve_methods, run_lock, shard_jobs,
    write_run_record,
)

DEFAULT_BATCH_SIZE = 8
# Seconds shard 0 waits, with no other shard running, before it makes the missing videos itself.
DEFAULT_TAKEOVER_S = 120.0
TAKEOVER_ENV = "FYPBENCH_SHARD_TAKEOVER_S"
DEFAULT_PREVIEWS = 8


@dataclass(frozen=True)
class RunOptions:
    methods: str = "all"
    world: str = "mini"
    protocol: str = "fyp-1024"
    limit: int | None = None
    subset: str | None = None
    out: Path | None = None
    shard: str | None = None
    batch_size: int | None = None
    config: Path | None = None
    previews: int | None = None
    score: bool = True
    preset: str = DEFAULT_RUN_PRESET
    command: str | None = None  # the command line as typed, recorded in run.json and named in every table


def check_method_options(method_options: dict[str, dict[str, Any]], where: Callable[[str], str]) -> None:
    """Refuse an option a method does not take, before anything is loaded or written. `where(method)` names
    the file (or run preset) that set the method's options."""
    from fypbench.errors import did_you_mean
    from fypbench.registry import METHODS

    for method, options in method_options.items():
        accepted = METHODS.load(method).option_names()
        unknown = sorted(set(options) - accepted) if accepted is not None else []
        if unknown:
            error = did_you_mean(unknown[0], accepted, f"{method} option")
            raise UserError(f"{where(method)}: methods.{method}: {error}")


def _build_generators(names: list[str], world, method_options: dict[str, dict[str, Any]], console,
                      where: Callable[[str], str]):
    from fypbench.generator import MethodUnavailable
    from fypbench.registry import METHODS

    generators, unavailable = {}, {}
    for name in names:
        options = method_options.get(name, {})
        try:
            generators[name] = METHODS.load(name).from_world(world, **options)
        except MethodUnavailable as exc:
            unavailable[name] = str(exc)
            console.print(f"[bold red]SKIPPED {name}[/bold red]: {exc}", soft_wrap=True)
        except (TypeError, ValueError) as exc:
            if not options:
                raise
            # an option of the right name but a value the method cannot take (e.g. a string for a step count)
            raise UserError(f"{where(name)}: methods.{name}: {exc}") from None
    return generators, unavailable


def _check_scoring_inputs(world: str, metric_names: list[str] | None) -> None:
    """What scoring will need from the user, checked before hours of generation: the sd world's CLIP file."""
    from fypbench.metrics import CLIP_METRICS, DEFAULT_METRICS

    if world != "sd" or not any(name in CLIP_METRICS for name in (metric_names or DEFAULT_METRICS)):
        return
    from fypbench.metrics.clip_metrics import resolve_openai_weights

    try:
        resolve_openai_weights("ViT-L-14", None)
    except UserError as error:
        raise UserError(f"{error}; for `fypbench run`: set FYPBENCH_CLIP_WEIGHTS, or run with --no-score and score "
                        "later with `fypbench score RUN_DIR --clip-weights PATH`") from None


def run_benchmark(options: RunOptions) -> Path:
    from fypbench.console import make_console

    from fypbench import __version__
    from fypbench.protocol import load_protocol, select_samples
    from fypbench.registry import METHODS, WORLDS

    console = make_console()
    preset_config, preset_record = load_run_preset(options.preset)
    user_config = load_run_config(options.config)
    config = merge_run_configs(preset_config, user_config)
    names = resolve_methods(options.methods, METHODS)

    def where(method: str) -> str:
        return str(options.config) if method in user_config.get("methods", {}) else f"run preset {options.preset}"

    unknown_methods = sorted(set(config.get("methods", {})) - set(METHODS.names()))
    if unknown_methods:
        raise UserError(f"{where(unknown_methods[0])}: 'methods' names unknown method {unknown_methods[0]!r}")
    check_method_options(config.get("methods", {}), where)
    shard = Shard.parse(options.shard) if options.shard is not None else Shard.from_environment()
    batch_size = options.batch_size if options.batch_size is not None else int(config.get("batch_size",
                                                                                         DEFAULT_BATCH_SIZE))
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    n_previews = options.previews if options.previews is not None else int(config.get("previews", DEFAULT_PREVIEWS))
    if n_previews < 0:
        raise UserError(f"--previews must be >= 0, got {n_previews}")
    if options.out is not None:
        check_output_dir(options.out)
    protocol = load_protocol(options.protocol)
    samples, subset = select_samples(protocol, options.subset, options.limit)
    world = WORLDS.load(options.world)()
    run_dir = Path(options.out) if options.out else Path("runs") / (
        f"{options.world}-{protocol.name}" + (f"-{subset}" if subset else "")
        + (f"-{options.limit}" if options.limit else "")
        + (f"-{options.preset}" if options.preset != DEFAULT_RUN_PRESET else ""))
    if options.score:
        _check_scoring_inputs(options.world, config.get("metrics"))
    # a run directory holding another run, or in use, is refused before any model loads
    check_same_run(run_dir, {"protocol_hash": protocol.hash, "world": options.world,
                             "sample_ids": [s.id for s in samples], "preset": preset_record})
    check_unlocked(run_dir, shard)
    # built before the run directory is touched: a bad option value leaves nothing on disk
    generators, unavailable = _build_generators(names, world, config.get("methods", {}), console, where)
    if not generators:
        raise UserError(f"none of the requested methods can run in the {options.world} world (each SKIPPED above, "
                        "with the reason); nothing was written")
    check_writable(run_dir)

    metric_names = config.get("metrics")
    score_options = {"metric_names": metric_names} if metric_names else {}
    part = shard.label
    with run_lock(run_dir, shard):
        if options.score and shard.count > 1:
            from fypbench.scoring import part_done_path

            part_done_path(run_dir, part).unlink(missing_ok=True)  # set again once this shard's part is scored
        record = {
            "fypbench_version": __version__, "world": options.world, "protocol": protocol.name,
            "protocol_path": str(protocol.path), "protocol_hash": protocol.hash, "subset": subset, "limit": options.limit,
            "sample_ids": [s.id for s in samples], "batch_size": batch_size, "preset": preset_record,
            "commands": [options.command] if options.command else [], "run_config": user_config,
            "methods": {name: {"config": g.config(), "config_hash": g.config_hash()}
                        for name, g in generators.items()},
            "unavailable": unavailable, "environment": environment_record(),
        }
        write_run_record(run_dir, record)
        plan = [(name, generators[name].needs.per_video_tuning) for name in names if name in generators]
        jobs = shard_jobs(plan_jobs(plan, samples, batch_size), shard)
        _remove_broken_videos(run_dir, jobs, samples, console)
        gallery = {s.id for s in samples[:n_previews]}
        started = time.perf_counter()
        report = _generate_with_progress(run_dir, generators, samples, jobs, gallery, console)
        console.print(f"generation done in {time.perf_counter() - started:.1f} s (shard {shard}): "
                      + ", ".join(f"{m} +{report.generated.get(m, 0)} ({report.seconds.get(m, 0.0):.1f} s)"
                                  for m in generators))
        if options.score and generators and shard.count > 1 and jobs:
            # every shard scores its own videos at once, in parallel with the others (one detector process
            # each); shard 0 then scores what is left and folds the parts
            from fypbench.scoring import part_done_path, score_run

            mine = {(job.method, sid) for job in jobs for sid in job.sample_ids}
            score_run(run_dir, **score_options, world=options.world, samples=samples, methods=list(generators),
                      pairs=mine, part=part, pose_processes=1, log=console.print)
            marker = part_done_path(run_dir, part)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("done\n", encoding="utf-8")
    if options.score and generators:
        if shard.index != 0:
            console.print(f"shard {shard}: generation and its own scores done; shard 0 folds the scores")
            return run_dir
        with run_lock(run_dir, shard):  # held to the end, so that no `fypbench score`/`forget` runs meanwhile
            if shard.count > 1:
                missing = _wait_for_all_videos(run_dir, list(generators), samples, shard, console)
                if missing:
                    console.print(f"[bold yellow]no other shard is running and {len(missing)} videos are "
                                  "missing[/] (a shard died, has not started, or split the jobs with other "
                                  f"settings): shard {shard} makes them itself")
                    # the full job list: generate() skips every finished video
                    _generate_with_progress(run_dir, generators, samples, plan_jobs(plan, samples, batch_size),
                                            gallery, console)
                _wait_for_shard_parts(run_dir, shard, console)
            from fypbench.scoring import score_run

            score_run(run_dir, **score_options, world=options.world,
                      samples=samples, methods=list(generators), pose_processes=max(1, shard.count),
                      log=console.print)
            from fypbench.leaderboard import write_leaderboard
            from fypbench.results import write_results

            console.print(f"results: {write_results(run_dir)}")
            paths = write_leaderboard(run_dir, "md,csv,tex,html")
            console.print(f"leaderboard: {', '.join(str(p) for p in paths)}")
    return run_dir


def forget_methods(run_dir: str | Path, methods: str, log=print) -> list[str]:
    """`fypbench forget RUN_DIR --methods a,b`: delete these methods' stored videos, score rows and run.json
    entries, so that the next `fypbench run --out RUN_DIR` regenerates them (e.g. with retrained weights) while
    the other methods' videos and scores stay. Holds the run's exclusive lock. results.json and report/ are
    removed (they would still show the forgotten methods); the next run, or `fypbench results` + `fypbench
    leaderboard`, writes them again."""
    import shutil

    from fypbench.io import write_json_atomic
    from fypbench.leaderboard import REPORT_DIR
    from fypbench.results import RESULTS_FILE
    from fypbench.runner import RUN_FILE, read_run_record
    from fypbench.scoring import drop_method_rows
    from fypbench.videos import VIDEOS_DIR, stored_methods

    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    known = sorted(set(record.get("methods") or {}) | set(stored_methods(run_dir)))
    if not names:
        raise UserError("--methods names no method")
    for name in names:
        if name not in known:
            from fypbench.errors import did_you_mean

            raise did_you_mean(name, known, f"method of {run_dir}")
    with run_lock(run_dir, Shard(0, 1)):
        drop_method_rows(run_dir, names, log)
        record["methods"] = {k: v for k, v in (record.get("methods") or {}).items() if k not in names}
        write_json_atomic(run_dir / RUN_FILE, record)
        for name in names:
            folder = run_dir / VIDEOS_DIR / name
            if folder.is_dir():
                count = len([p for p in folder.glob("*.npz") if not is_temp_file(p)])
                shutil.rmtree(folder)
                log(f"{folder}: removed {count} videos")
        stale = [path for path in (run_dir / RESULTS_FILE, run_dir / REPORT_DIR) if path.exists()]
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if stale:
            log(f"removed the stale {' and '.join(p.name for p in stale)}; rebuild with `fypbench results {run_dir} "
                f"&& fypbench leaderboard {run_dir}` (or the next `fypbench run --out {run_dir}`)")
    return names


def _remove_broken_videos(run_dir: Path, jobs, samples, console) -> None:
    """Integrity check of this process's finished videos; broken ones are deleted, loudly, and so regenerated."""
    from fypbench.videos import integrity_check, remove_video

    mine = {(job.method, sid) for job in jobs for sid in job.sample_ids}
    methods = sorted({method for method, _ in mine})
    coverage = integrity_check(run_dir, methods, [s for s in samples if any((m, s.id) in mine for m in methods)])
    broken = [p for p in coverage.problems if p.kind != "missing" and (p.method, p.sample_id) in mine]
    for problem in broken:  # only this process's jobs: another shard may be writing its own videos right now
        console.print(f"[bold red]{problem.kind}[/bold red] stored video {problem.method}/{problem.sample_id} "
                      f"({problem.detail}): regenerating it")
        remove_video(run_dir, problem.method, problem.sample_id)


def _wait_until(pending: Callable[[], list], message: Callable[[int], str], console, poll_s: float = 5.0,
                give_up: Callable[[list], bool] = lambda left: False) -> list:
    """Poll `pending()` until it is empty, saying once what is awaited (a file barrier, off the hot path); stops
    early with what is still pending when `give_up(pending)` says so. Returns [] when everything arrived."""
    announced = False
    while left := pending():
        if give_up(left):
            return list(left)
        if not announced:
            console.print(message(len(left)))
            announced = True
        time.sleep(poll_s)
    return []


def takeover_seconds() -> float:
    """How long shard 0 waits for missing videos while no other shard runs before it makes them itself."""
    text = os.environ.get(TAKEOVER_ENV, "")
    try:
        return float(text) if text else DEFAULT_TAKEOVER_S
    except ValueError:
        raise UserError(f"{TAKEOVER_ENV}={text!r}: expected a number of seconds") from None


def _wait_for_all_videos(run_dir: Path, methods: list[str], samples, shard: Shard, console) -> list[tuple[str, str]]:
    """Shard 0 scores only once every shard's videos exist. Returns the videos still missing once, for
    takeover_seconds(), no other shard has held its lock and no video has arrived (a shard that died, has not
    started, or split the job list another way, e.g. with another --batch-size): shard 0 then makes them itself;
    [] when all arrived."""
    from fypbench.runner import other_shards_active
    from fypbench.videos import is_done

    waiting = [(m, s.id) for m in methods for s in samples]
    patience = takeover_seconds()
    idle = {"since": None, "left": len(waiting)}

    def pending() -> list:
        waiting[:] = [(m, sid) for m, sid in waiting if not is_done(run_dir, m, sid)]
        return waiting

    def give_up(left: list) -> bool:
        arrived, idle["left"] = len(left) < idle["left"], len(left)
        if arrived or other_shards_active(run_dir, shard):  # videos still arrive, or a shard runs
            idle["since"] = None
            return False
        idle["since"] = idle["since"] if idle["since"] is not None else time.monotonic()
        return time.monotonic() - idle["since"] >= patience

    return _wait_until(pending, lambda n: f"waiting for the other shards: {n} videos still to come", console,
                       give_up=give_up)


def _wait_for_shard_parts(run_dir: Path, shard: Shard, console) -> None:
    """Shard 0 folds the parts once every other shard has scored its own videos, or holds its lock no more (a
    shard that died: shard 0 scores its videos itself)."""
    from fypbench.runner import shard_active
    from fypbench.scoring import part_done_path

    others = [Shard(i, shard.count) for i in range(1, shard.count)]

    def pending() -> list:
        return [o for o in others if not part_done_path(run_dir, o.label).is_file() and shard_active(run_dir, o)]

    _wait_until(pending, lambda n: f"waiting for {n} shard(s) to score their own videos", console)


def _generate_with_progress(run_dir, generators, samples, jobs, gallery, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    totals: dict[str, int] = {}
    for job in jobs:
        totals[job.method] = totals.get(job.method, 0) + len(job.sample_ids)
    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        tasks = {m: progress.add_task(m, total=totals[m]) for m in totals}

        def on_job(job, generated, skipped):
            progress.advance(tasks[job.method], generated + skipped)

        return generate(run_dir, generators, samples, jobs, previews=lambda m, sid: sid in gallery, on_job=on_job)
