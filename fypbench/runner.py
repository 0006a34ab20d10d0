"""The generation stage: a deterministic job list of (method, batch of samples), sharded, resumable, locked.

    fypbench run --methods reference --limit 16 --out runs/demo

Rules (../shared/reference/metrics.md §7):
- The full job list is built first from (methods, protocol order, batch size) only; then it is split across
  processes (`--shard i/N`, or RANK/WORLD_SIZE from torchrun / accelerate launch); then each process skips jobs
  whose videos are all done. Never filter-then-split: ranks would see different lists.
- A batch's composition depends only on the protocol and the batch size, never on the number of processes, and a
  sample's noise only on its seed: 1 and N processes write identical videos.
- Methods that tune per source video (Tune-A-Video) get batches aligned to groups of samples sharing a source, so
  a source is tuned once, by one process.
- A process holds an exclusive lock on its shard (and an unsharded run on the whole run directory): a second run on
  the same directory while one is active is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fypbench.errors import UserError
from fypbench.io import file_lock, read_json_object, write_json_atomic
from fypbench.sample import Sample

RUN_FILE = "run.json"
LOCK_DIR = "locks"


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(x) for x in text.split("/"))
        except ValueError:
            raise UserError(f"--shard {text!r}: expected I/N with integers, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise UserError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
        return cls(index, count)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Shard:
        """RANK / WORLD_SIZE as set by torchrun and accelerate launch (CPU or GPU); 0/1 when absent."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            count, index = int(env["WORLD_SIZE"]), int(env.get("RANK", "-1"))
        except ValueError:
            raise UserError(f"RANK/WORLD_SIZE are not integers: {env.get('RANK')!r}/{env.get('WORLD_SIZE')!r}") from None
        if count < 1 or not 0 <= index < count:
            raise UserError(f"launcher environment RANK={env.get('RANK')} WORLD_SIZE={count} is inconsistent")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        """The shard's name in file names: its lock, its scores part."""
        return f"shard-{self.index}-of-{self.count}"


@dataclass(frozen=True)
class Job:
    method: str
    number: int  # position in the full job list
    sample_ids: tuple[str, ...]


def source_key(sample: Sample) -> str:
    return json.dumps(sample.source, sort_keys=True) if sample.source is not None else f"none:{sample.id}"


def plan_jobs(methods: Sequence[tuple[str, bool]], samples: Sequence[Sample], batch_size: int) -> list[Job]:
    """The full, deterministic job list. `methods` = (name, groups_by_source) in run order.

    Plain methods: consecutive batches of `batch_size` samples in protocol order. Per-source methods: samples
    grouped by source (first appearance order), each group split into batches of `batch_size`.
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    jobs: list[Job] = []
    for method, by_source in methods:
        if by_source:
            groups: dict[str, list[str]] = {}
            for s in samples:
                groups.setdefault(source_key(s), []).append(s.id)
            batches = [ids[i:i + batch_size] for ids in groups.values() for i in range(0, len(ids), batch_size)]
        else:
            ids = [s.id for s in samples]
            batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
        first = len(jobs)
        jobs.extend(Job(method, first + k, tuple(batch)) for k, batch in enumerate(batches))
    return jobs


def shard_jobs(jobs: Sequence[Job], shard: Shard) -> list[Job]:
    """Split the FULL job list (strided by job number, so every method is spread over every process)."""
    return [job for job in jobs if job.number % shard.count == shard.index]


# ---------------------------------------------------------------------------------------------- locking


@contextmanager
def run_lock(run_dir: Path, shard: Shard) -> Iterator[None]:
    """Exclusive lock of this shard; an unsharded run locks the directory exclusively, sharded runs share it."""
    folder = run_dir / LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)

    def busy(name: str) -> str:
        return (f"{run_dir}: another `fypbench run`, `score` or `forget` is active on this run directory ({name} is "
                "locked); wait for it to finish (or give `run` another --out)")

    with file_lock(folder / "run.lock", busy("run.lock"), shared=shard.count > 1), \
            file_lock(folder / f"{shard.label}.lock", busy(f"{shard.label}.lock")):
        yield


def shard_active(run_dir: Path, shard: Shard) -> bool:
    """Whether a live process holds `shard`'s lock (a shard that died or has not started holds nothing)."""
    return _lock_held(run_dir / LOCK_DIR / f"{shard.label}.lock")


def other_shards_active(run_dir: Path, shard: Shard) -> bool:
    """Whether a live process holds the lock of any shard but `shard`, whatever the number of shards it split
    the run into."""
    return any(_lock_held(path) for path in (run_dir / LOCK_DIR).glob("shard-*.lock")
               if path.name != f"{shard.label}.lock")


def _lock_held(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


# ---------------------------------------------------------------------------------------------- provenance


def git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{'-dirty' if dirty else ''}" if rev else "unknown"


def environment_record() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("fypbench", "torch", "torchvision", "diffusers", "transformers", "open_clip_torch", "accelerate",
                 "numpy", "mediapipe", "pycocotools", "pillow"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "packages": packages, "git": git_revision()}


# ---------------------------------------------------------------------------------------------- the stage


@dataclass
class GenerationReport:
    generated: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, method: str, generated: int, skipped: int, seconds: float) -> None:
        self.generated[method] = self.generated.get(method, 0) + generated
        self.skipped[method] = self.skipped.get(method, 0) + skipped
        self.seconds[method] = self.seconds.get(method, 0.0) + seconds


def generate_and_score(run_dir: Path, generators: dict[str, Any], samples: Sequence[Sample], *, world: str,
                       protocol, subset: str | None, limit: int | None, extra_record: dict[str, Any] | None = None,
                       batch_size: int = 8, log=print) -> None:
    """Generate every (generator, sample) video into `run_dir` under its lock, then score them: a run of
    ready-built generators outside `fypbench run` (the ablation's variants, the benchmarks' weights), with the
    same run.json, job plan, resumability and scores. `extra_record` adds fields to run.json."""
    from fypbench.scoring import score_run

    with run_lock(run_dir, Shard()):
        write_run_record(run_dir, {
            "world": world, "protocol": protocol.name, "protocol_path": str(protocol.path),
            "protocol_hash": protocol.hash, "subset": subset, "limit": limit, "sample_ids": [s.id for s in samples],
            "batch_size": batch_size,
            "methods": {m: {"config": g.config(), "config_hash": g.config_hash()} for m, g in generators.items()},
            "unavailable": {}, "environment": environment_record(), **(extra_record or {})})
        jobs = shard_jobs(plan_jobs([(m, False) for m in generators], samples, batch_size), Shard())
        generate(run_dir, generators, samples, jobs)
    score_run(run_dir, world=world, samples=samples, methods=list(generators), log=log)


def generate(run_dir: Path, generators: dict[str, Any], samples: Sequence[Sample], jobs: Sequence[Job],
             previews: Callable[[str, str], bool] = lambda method, sample_id: False,
             on_job: Callable[[Job, int, int], None] | None = None) -> GenerationReport:
    """Run this process's jobs: skip finished videos, generate the rest, store them atomically."""
    from fypbench.generator import check_video
    from fypbench.videos import is_done, write_video

    by_id = {s.id: s for s in samples}
    report = GenerationReport()
    for job in jobs:
        todo = [sid for sid in job.sample_ids if not is_done(run_dir, job.method, sid)]
        if not todo:
            report.add(job.method, 0, len(job.sample_ids), 0.0)
            if on_job:
                on_job(job, 0, len(job.sample_ids))
            continue
        generator = generators[job.method]
        batch = [by_id[sid] for sid in job.sample_ids]  # the whole batch: composition never depends on resume
        before = dict(getattr(generator, "stats", None) or {})
        started = time.perf_counter()
        videos = generator.generate(batch)
        seconds = time.perf_counter() - started
        config_hash = generator.config_hash()
        call_stats = _stats_delta(before, getattr(generator, "stats", None) or {})
        for sample, video in zip(batch, videos):
            if sample.id not in todo:
                continue
            check_video(video, sample.num_frames)
            write_video(run_dir, job.method, sample.id, video,
                        {"config_hash": config_hash, "seed": sample.seed, "job": job.number,
                         "batch": list(job.sample_ids), "seconds_per_sample": seconds / len(batch),
                         **({"call_stats": call_stats} if call_stats else {})},
                        previews=previews(job.method, sample.id))
        report.add(job.method, len(todo), len(job.sample_ids) - len(todo), seconds)
        if on_job:
            on_job(job, len(todo), len(job.sample_ids) - len(todo))
    return report


def _stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """What one generate() call added to a generator's numeric `stats` counters (e.g. Tune-A-Video's tunings and
    their seconds, so a breakdown can tell tuning from sampling and a cache hit from a tuning)."""
    delta = {}
    for key, value in after.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            change = value - before.get(key, 0)
            delta[key] = round(change, 3) if isinstance(change, float) else change
    return delta


def check_same_run(run_dir: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """The run.json already in `run_dir` (None if there is none), refused when it holds another run: another
    protocol, world, sample list or run preset. Called before any model loads, and again when run.json is written."""
    path = run_dir / RUN_FILE
    if not path.is_file():
        return None
    previous = read_run_record(run_dir)
    for key in ("protocol_hash", "world", "sample_ids"):
        if previous.get(key) != record.get(key):
            raise UserError(f"{path}: this run directory holds a run with a different {key}; use another --out")
    preset_before = (previous.get("preset") or {}).get("name", DEFAULT_RUN_PRESET)
    preset_now = (record.get("preset") or {}).get("name", DEFAULT_RUN_PRESET)
    if preset_before != preset_now:
        raise UserError(f"{path}: this run directory holds a run with run preset {preset_before!r}, not "
                        f"{preset_now!r}; use another --out")
    return previous


def check_unlocked(run_dir: Path, shard: Shard) -> None:
    """Refuse at once (before any model loads) when another process holds the run directory's locks."""
    if (run_dir / LOCK_DIR).is_dir():
        with run_lock(run_dir, shard):
            pass


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    """run.json: written at the start of a run (and refreshed by every later run on the same directory)."""
    path = run_dir / RUN_FILE
    previous = check_same_run(run_dir, record)
    # each method records the git revision of the invocation that first recorded its settings (its videos')
    git_now = (record.get("environment") or {}).get("git")
    record = {**record, "methods": {name: {**entry, "git": git_now}
                                    for name, entry in (record.get("methods") or {}).items()}}
    if previous is not None:
        # stored videos are skipped when present, so a method's settings must not change under them
        before = previous.get("methods") or {}
        for name, entry in (record.get("methods") or {}).items():
            if name in before and before[name].get("config_hash") != entry.get("config_hash"):
                raise UserError(f"{path}: this run directory holds {name} videos made with other settings "
                                f"(config hash {before[name].get('config_hash')}, now {entry.get('config_hash')}); "
                                "use another --out")
        git_before = (previous.get("environment") or {}).get("git")
        before = {name: {**entry, "git": entry.get("git", git_before)} for name, entry in before.items()}
        now = {name: {**entry, "git": before[name]["git"]} if name in before else entry
               for name, entry in record["methods"].items()}
        commands = [*(previous.get("commands") or []),
                    *(c for c in record.get("commands") or [] if c not in (previous.get("commands") or []))]
        record = {**record, "methods": {**before, **now}, "commands": commands,
                  "unavailable": {k: v for k, v in {**(previous.get("unavailable") or {}),
                                                    **(record.get("unavailable") or {})}.items()
                                  if k not in (record.get("methods") or {})}}
    write_json_atomic(path, record)


def read_run_record(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: {Path(run_dir)} is not a run directory (`fypbench run --out DIR` "
                        "makes one)")
    return read_json_object(path)


def shard_dict(shard: Shard) -> dict[str, int]:
    return asdict(shard)


# ---------------------------------------------------------------------------------------------- `fypbench run`

CONFIG_KEYS = ("methods", "batch_size", "previews", "metrics")


def load_run_config(path: Path | None, extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Optional YAML: {methods: {name: {option: value}}, batch_size, previews, metrics}; unknown keys refused."""
    if path is None:
        return {}
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    known = CONFIG_KEYS + extra_keys
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    methods = config.get("methods", {})
    if not isinstance(methods, dict) or not all(isinstance(v, dict) for v in methods.values()):
        raise UserError(f"{path}: 'methods' must map method names to option mappings")
    for key, least in (("batch_size", 1), ("previews", 0)):
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise UserError(f"{path}: '{key}' must be an integer >= {least}, got {value!r}")
    metrics = config.get("metrics")
    if metrics is not None:
        from fypbench.scoring import parse_metric_names

        try:
            parse_metric_names(metrics)
        except UserError as error:
            raise UserError(f"{path}: 'metrics': {error}") from None
    return config


# Named run presets: run configs shipped with the package (fypbench/run_presets/<name>.yaml). "default" = every
# method's own default preset; any other departs from it and is recorded and shown as such.
RUN_PRESET_DIR = Path(__file__).resolve().parent / "run_presets"
DEFAULT_RUN_PRESET = "default"


def run_preset_names() -> list[str]:
    return [DEFAULT_RUN_PRESET] + sorted(p.stem for p in RUN_PRESET_DIR.glob("*.yaml"))


def load_run_preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run config, record) of a named preset; the record ({name, description}) goes into run.json.

    "a+b" composes presets left to right (a later preset's method options win option by option, as a --config
    file's do); its record is named "a+b" and carries both descriptions."""
    parts = [part.strip() for part in name.split("+")]
    if len(parts) > 1:
        if DEFAULT_RUN_PRESET in parts or len(set(parts)) != len(parts) or not all(parts):
            raise UserError(f"run preset {name!r}: compose distinct named presets, e.g. 'fast+pose-guidance' "
                            f"(not {DEFAULT_RUN_PRESET!r}, none twice)")
        config: dict[str, Any] = {}
        descriptions = []
        for part in parts:
            part_config, part_record = load_run_preset(part)
            config = merge_run_configs(config, part_config)
            descriptions.append(f"{part}: {part_record['description']}")
        return config, {"name": "+".join(parts), "description": "; ".join(descriptions)}
    if name == DEFAULT_RUN_PRESET:
        return {}, {"name": DEFAULT_RUN_PRESET, "description": "every method's default preset"}
    path = RUN_PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        from fypbench.errors import did_you_mean

        raise did_you_mean(name, run_preset_names(), "run preset")
    config = load_run_config(path, extra_keys=("description",))
    description = str(config.pop("description", "")).strip()
    if not description:
        raise UserError(f"{path}: a run preset needs a 'description' (it heads every leaderboard built from it)")
    return config, {"name": name, "description": description}


def merge_run_configs(preset: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The preset's run config with a --config file on top (method options merged option by option)."""
    merged = {**preset, **{k: v for k, v in config.items() if k != "methods"}}
    methods = {name: dict(options) for name, options in preset.get("methods", {}).items()}
    for name, options in config.get("methods", {}).items():
        methods[name] = {**methods.get(name, {}), **options}
    if methods:
        merged["methods"] = methods
    return merged


def resolve_methods(text: str, registry) -> list[str]:
    names = registry.names() if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise UserError("--methods is empty")
    for name in names:
        registry.get(name)  # did-you-mean on unknown names
    return list(dict.fromkeys(names))


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{folder}: output directory is not writable ({exc.strerror})") from None
