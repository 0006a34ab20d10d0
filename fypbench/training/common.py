"""Shared training-loop utilities for every recipe: configs, accelerate, data order, checkpoints, progress, EMA.

    python -c "from fypbench.training.common import load_config; print(load_config('vae', 'debug'))"

- Configs are YAML presets `configs/<recipe>_<preset>.yaml` (or a YAML file path), with dotted overrides
  ("train.lr=1e-4"); an unknown preset, key or a value of the wrong type raises UserError naming it.
- `make_accelerator` works in a single CPU process and under `accelerate launch` / `torchrun` (gloo on CPU).
- Data order: the global batch of step s is a fixed function of (seed, s); each process takes its slice, so
  training sees the same samples for any process count. Per-sample randomness (noise, timesteps) comes from
  (seed, purpose, stream position), never from the rank or the position in a process's batch.
- Checkpoints are written atomically every N steps and on the last step; resuming restores model, optimizer,
  LR schedule, EMA and the step, and continues with the same data order.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fypbench.errors import UserError, did_you_mean
from fypbench.io import atomic_path, file_lock, temp_files_of, write_json_atomic, write_text_atomic
from fypbench.seeding import derive_seed, numpy_rng

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_PREFIX = "package:"
CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_LOCK = "train.lock"
# Config fields that may change between a checkpoint and its resumption (they do not change what is trained).
# The learning-rate tail may change too, so that a finished run can be extended and annealed ("train longer, then
# decay"), as long as the steps already taken keep their learning rate (checked on resume): then a fresh run with
# the new values takes the same path.
RESUMABLE_CHANGES = ("train.steps", "train.checkpoint_every", "train.log_every", "data.workers", "export.dir",
                     "export.vae_dir", "export.float16", "train.lr_decay_start", "train.lr_final_ratio")
# Numbers every recipe's loop reads, with the least value each may take (checked before any work).
MINIMUM_VALUES = {"train.steps": 1, "train.batch_size": 1, "train.checkpoint_every": 1, "train.log_every": 1,
                  "data.count": 1, "train.warmup_steps": 0, "train.lr": 0.0, "train.weight_decay": 0.0,
                  "train.grad_clip": 0.0, "train.ema_decay": 0.0}


# ------------------------------------------------------------------------------------------------------ config
def preset_names(recipe: str) -> list[str]:
    return sorted(p.stem[len(recipe) + 1:] for p in CONFIG_DIR.glob(f"{recipe}_*.yaml"))


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def parse_value(text: str) -> Any:
    """YAML scalar/list parsing, plus plain float syntax YAML 1.1 leaves as text ("1e-4")."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(key: str, old: Any, new: Any, where: str) -> Any:
    """Check an override's type against the preset's value (None in the preset accepts anything)."""
    if isinstance(new, str) and not isinstance(old, str) and old is not None:
        new = parse_value(new)
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        ok = isinstance(new, bool)
    elif isinstance(old, int):
        ok = isinstance(new, int) and not isinstance(new, bool)
    elif isinstance(old, float):
        ok = isinstance(new, (int, float)) and not isinstance(new, bool)
        new = float(new) if ok else new
    elif isinstance(old, (list, tuple)):
        ok = isinstance(new, (list, tuple))
        new = list(new) if ok else new
    elif isinstance(old, Mapping):
        ok = isinstance(new, Mapping)
    else:
        ok = isinstance(new, type(old))
    if not ok:
        raise UserError(f"{where}: override {key}={new!r} has the wrong type (expected "
                        f"{type(old).__name__}, like the preset's {old!r})")
    return new


def load_config(recipe: str, preset: str | os.PathLike = "mini",
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A recipe's config: a named preset (configs/<recipe>_<preset>.yaml) or a YAML file, plus overrides.

    Overrides use dotted keys for nested fields ({"train.lr": 1e-4}); every key must exist in the preset.
    """
    candidate = Path(preset)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise UserError(f"{candidate}: preset file not found")
        path = candidate
    else:
        path = CONFIG_DIR / f"{recipe}_{preset}.yaml"
        if not path.is_file():
            raise did_you_mean(str(preset), preset_names(recipe), f"{recipe} preset")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    if config.get("recipe") != recipe:
        raise UserError(f"{path}: field 'recipe' is {config.get('recipe')!r}, expected {recipe!r}")
    flat = _flatten(config)
    if path.parent != CONFIG_DIR:
        _check_fields_like_shipped_presets(recipe, flat, path)
    for key, value in (overrides or {}).items():
        if key not in flat:
            raise did_you_mean(key, flat, f"config key of {path.name}")
        flat[key] = _coerce(key, flat[key], value, str(path))
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = flat[key]
    for key, least in MINIMUM_VALUES.items():
        value = flat.get(key, least)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
            raise UserError(f"{path}: {key} must be >= {least}, got {value!r}")
    if "train.ema_decay" in flat and not flat["train.ema_decay"] < 1:
        raise UserError(f"{path}: train.ema_decay must be < 1 (0 = no EMA), got {flat['train.ema_decay']!r}")
    betas = flat.get("train.betas", [0.0, 0.0])
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise UserError(f"{path}: train.betas must be two numbers in [0, 1), got {betas!r}")
    config["preset"] = str(preset)
    return config


def _check_fields_like_shipped_presets(recipe: str, flat: Mapping[str, Any], path: Path) -> None:
    """A preset file of the user's has the fields of the recipe's shipped presets: none unknown (a typo would
    be ignored), none missing (it would fail mid-training)."""
    shipped = [_flatten(yaml.safe_load((CONFIG_DIR / f"{recipe}_{name}.yaml").read_text()))
               for name in preset_names(recipe)]
    known = set().union(*shipped)
    required = set.intersection(*(set(keys) for keys in shipped))
    for key in flat:
        if key not in known and key != "preset":
            raise did_you_mean(key, known, f"field of {path.name} (fields of the shipped {recipe} presets)")
    missing = sorted(required - set(flat))
    if missing:
        raise UserError(f"{path}: missing field {missing[0]!r} (start from a shipped preset: "
                        f"{CONFIG_DIR / f'{recipe}_mini.yaml'})")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """CLI "key=value" items -> overrides (values parsed as YAML: 3, 1e-4, true, [1, 2], text)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r}: expected key=value")
        overrides[key.strip()] = parse_value(value)
    return overrides


def resolve_path(value: str | os.PathLike) -> Path:
    """A config path: "package:<rel>" is inside the installed fypbench package, anything else as given."""
    text = str(value)
    if text.startswith(PACKAGE_PREFIX):
        return PACKAGE_ROOT / text[len(PACKAGE_PREFIX):]
    return Path(text).expanduser()


def import_object(target: str) -> Any:
    """"package.module:object" -> the object (how configs name datasets)."""
    import importlib

    module_name, sep, attr = target.partition(":")
    if not sep:
        raise UserError(f"data target {target!r}: expected 'package.module:object'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"data target {target!r}: cannot import ({exc})") from None


# ------------------------------------------------------------------------------------------------- accelerate
def make_accelerator(mixed_precision: str = "no"):
    """An Accelerator on CUDA when present, else on the CPU (gloo when launched with several processes).

    Mixed precision is not accelerate's (its process-wide state could not differ between two recipes run in
    one process): `mixed_precision` is only validated here, and TrainingLoop applies train.mixed_precision
    itself (`autocast`). Also flushes denormal floats to
    zero: on this CPU, bf16 autocast steps on real (flat-shaded) images ran 5-8x slower with denormals than
    without (measured: 6-8 s vs 1.1 s per VAE step).
    """
    from accelerate import Accelerator

    autocast(torch.device("cpu"), mixed_precision)  # validates the value
    torch.set_flush_denormal(True)
    return Accelerator(cpu=not torch.cuda.is_available())


def autocast(device: torch.device, mixed_precision: str):
    """bf16 autocast when asked for ("no" or "bf16"; fp16 would need loss scaling, which no recipe uses)."""
    if mixed_precision not in ("no", "bf16"):
        raise UserError(f"train.mixed_precision {mixed_precision!r}: expected no or bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16")


# -------------------------------------------------------------------------------------------------- data order
def global_batch(step: int, batch_size: int, dataset_size: int, seed: int) -> np.ndarray:
    """Dataset indices of step `step`'s global batch: epochs of seeded permutations, read in stream order."""
    if dataset_size < 1:
        raise ValueError("empty dataset")
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(positions, dataset_size)
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        permutation = numpy_rng("data-order", seed, int(epoch)).permutation(dataset_size)
        mask = epochs == epoch
        out[mask] = permutation[offsets[mask]]
    return out


@dataclass(frozen=True)
class BatchSlice:
    """This process's part of a global batch: dataset indices and their stream positions."""

    indices: np.ndarray
    positions: np.ndarray


def process_batch(step: int, batch_size: int, dataset_size: int, seed: int, rank: int,
                  world_size: int) -> BatchSlice:
    if batch_size % world_size:
        raise UserError(f"train.batch_size {batch_size} is not divisible by the {world_size} processes")
    per_process = batch_size // world_size
    indices = global_batch(step, batch_size, dataset_size, seed)
    lo, hi = rank * per_process, (rank + 1) * per_process
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    return BatchSlice(indices=indices[lo:hi], positions=positions[lo:hi])


def per_sample_randn(seed: int, purpose: str, positions: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """(N, *shape) standard normal noise, sample n drawn from (seed, purpose, stream position n)."""
    out = []
    for position in positions:
        generator = torch.Generator().manual_seed(derive_seed(purpose, seed, int(position)))
        out.append(torch.randn(tuple(shape), generator=generator))
    return torch.stack(out)


def per_sample_randint(seed: int, purpose: str, positions: Sequence[int], high: int) -> torch.Tensor:
    """(N,) integers in [0, high), one per stream position."""
    values = [int(numpy_rng(purpose, seed, int(p)).integers(0, high)) for p in positions]
    return torch.tensor(values, dtype=torch.long)


def per_sample_uniform(seed: int, purpose: str, positions: Sequence[int]) -> np.ndarray:
    return np.array([numpy_rng(purpose, seed, int(p)).random() for p in positions])


# -------------------------------------------------------------------------------------------------- data cache
def _render_range(args: tuple[str, dict[str, Any], int, int]) -> tuple[np.ndarray, list[str]]:
    target, kwargs, start, stop = args
    dataset = import_object(target)(**kwargs)
    images, captions = [], []
    for i in range(start, stop):
        image, caption = dataset[i]
        images.append(np.asarray(image, dtype=np.uint8))
        captions.append(str(caption))
    return np.stack(images), captions


def cached_dataset(target: str, kwargs: Mapping[str, Any], count: int, cache_dir: Path, workers: int = 1,
                   log: Callable[[str], None] = print) -> tuple[np.ndarray, list[str]]:
    """Items 0..count-1 of a captioned-image dataset (`ds[i] -> (uint8 HxWx3, caption)`), rendered once.

    Stored as images.npy + captions.json + info.json in `cache_dir` (atomic writes); a cache made from another
    dataset, size or count is rebuilt. Items are rendered in `workers` processes (order does not matter: each
    item depends on its index only).
    """
    info = {"target": target, "kwargs": dict(kwargs), "count": int(count)}
    images_path, captions_path, info_path = (cache_dir / "images.npy", cache_dir / "captions.json",
                                             cache_dir / "info.json")
    if info_path.exists() and images_path.exists() and captions_path.exists():
        if json.loads(info_path.read_text()) == info:
            return np.load(images_path, mmap_mode="r"), json.loads(captions_path.read_text())
    dataset_type = import_object(target)
    probe = dataset_type(**kwargs)
    if hasattr(probe, "__len__") and len(probe) < count:
        raise UserError(f"data.count {count} exceeds the dataset's {len(probe)} items ({target})")
    start = time.perf_counter()
    chunk = max(1, min(512, math.ceil(count / max(1, workers) / 4)))
    jobs = [(target, dict(kwargs), lo, min(count, lo + chunk)) for lo in range(0, count, chunk)]
    parts: list[tuple[np.ndarray, list[str]]] = []
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for i, part in enumerate(pool.imap(_render_range, jobs)):
                parts.append(part)
                if (i + 1) % max(1, len(jobs) // 10) == 0:
                    log(f"rendered {sum(len(p[1]) for p in parts)}/{count} images")
    else:
        parts = [_render_range(job) for job in jobs]
    images = np.concatenate([p[0] for p in parts])
    captions = [c for p in parts for c in p[1]]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(images_path) as tmp:
        np.save(tmp, images)
    write_json_atomic(captions_path, captions)
    write_json_atomic(info_path, info)
    log(f"rendered {count} images in {time.perf_counter() - start:.0f} s -> {cache_dir}")
    return np.load(images_path, mmap_mode="r"), captions


def channels_last_layout(array: np.ndarray) -> np.ndarray:
    """`array` (N, C, ...) with its channel axis last in memory and every other axis in order: the layout the
    VAE's CPU encoder returns latents in. Fresh and cached latents both get it, so a resumed session feeds the UNet
    the memory layout a fresh one did (its convolutions round differently in another layout) and a recipe rerun
    reproduces the shipped weights bitwise on the machine that trained them."""
    order = (0, *range(2, array.ndim), 1)
    return array.transpose(order).copy(order="C").transpose(np.argsort(order))  # a copy: the same strides either way


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# --------------------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of parameters, with the usual warm-up: decay_t = min(decay, (1+t)/(10+t))."""

    def __init__(self, parameters: Sequence[torch.nn.Parameter], decay: float):
        self.decay = float(decay)
        self.shadow = [p.detach().clone().float() for p in parameters]

    @torch.no_grad()
    def update(self, parameters: Sequence[torch.nn.Parameter], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        if self.shadow and self.shadow[0].device != parameters[0].device:  # the modules moved (accelerate)
            self.shadow = [s.to(p.device) for s, p in zip(self.shadow, parameters, strict=True)]
        for shadow, param in zip(self.shadow, parameters, strict=True):
            shadow.lerp_(param.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        for shadow, param in zip(self.shadow, parameters, strict=True):
            param.copy_(shadow.to(param.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("EMA state does not match the parameters")
        self.decay = float(state["decay"])
        self.shadow = [t.clone() for t in state["shadow"]]


# ------------------------------------------------------------------------------------------------- checkpoints
# Config fields added after checkpoints were written, with the value every older run trained with: a checkpoint
# without the field resumes only when the current config keeps that value.
ADDED_FIELDS = {"loss.weighting": "none", "loss.max_weight": None, "loss.hard_negatives": []}
CHECKPOINT_KEYS = ("step", "config", "modules", "optimizer", "schedule", "ema")
RESTART_HINT = "use another output directory or --no-resume"


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The fields that differ and may not change on resume, "recipe" first (another recipe's folder)."""
    a, b = _flatten(saved), _flatten(current)
    a = {**{k: v for k, v in ADDED_FIELDS.items() if k in b}, **a}
    return sorted((k for k in set(a) | set(b)
                   if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES and k != "preset"),
                  key=lambda k: (k != "recipe", k))


def _check_resumable(path: Path, state: Mapping[str, Any], config: Mapping[str, Any], changed: list[str]) -> None:
    if changed:
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise UserError(f"{path}: written with a different config ({', '.join(changed[:4])}{more}); {RESTART_HINT}")
    taken, steps = int(state["step"]), int(config["train"]["steps"])
    if taken > steps:
        raise UserError(f"{path}: train.steps {steps} is below the checkpoint's step {taken}; {RESTART_HINT}")


def recipe_config(recipe: str, preset: str | os.PathLike, overrides: Mapping[str, Any] | None,
                  output_dir: str | os.PathLike | None, resume: bool) -> tuple[dict[str, Any], Path]:
    """A recipe's config and output folder (default runs/train/<recipe>_<preset>), the first thing every recipe
    does: a checkpoint there that this config cannot resume is refused before the recipe's data setup."""
    config = load_config(recipe, preset, overrides)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(recipe, str(preset))
    check_resume_before_setup(output_dir, config, resume)
    return config, output_dir


def check_resume_before_setup(output_dir: Path, config: Mapping[str, Any], resume: bool) -> None:
    """Refuse, before a recipe's data setup (rendering, encoding: minutes), to resume a checkpoint written with
    another config or more steps. Fields a recipe adds during setup (e.g. model.base_version) are compared when
    the loop restores the checkpoint."""
    path = Path(output_dir) / CHECKPOINT_NAME
    state = load_checkpoint(path) if resume else None
    if state is not None:
        known = _flatten(config)
        _check_resumable(path, state, config,
                         [key for key in config_differences(state["config"], config) if key in known])


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises several types
        raise UserError(f"{path}: unreadable checkpoint ({type(exc).__name__}); delete it or train with --no-resume")
    missing = [key for key in CHECKPOINT_KEYS if key not in state] if isinstance(state, dict) else ["step"]
    if missing:
        raise UserError(f"{path}: not a training checkpoint (no {missing[0]!r}); delete it or train with --no-resume")
    return state


# ---------------------------------------------------------------------------------------------- the loop itself
def warmup_constant(warmup_steps: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


def warmup_constant_cosine(warmup_steps: int, decay_start: int | None, total_steps: int,
                           final_ratio: float = 0.0) -> Callable[[int], float]:
    """Linear warm-up, constant, then (from `decay_start`, when given) a cosine down to `final_ratio` at the end."""
    warmup = warmup_constant(warmup_steps)
    if decay_start is None:
        return warmup
    if not 0 <= decay_start < total_steps:
        raise UserError(f"train.lr_decay_start={decay_start} must lie in [0, train.steps={total_steps}); with fewer "
                        "steps than the preset's, set it too (e.g. --set train.lr_decay_start=null: no decay)")

    def factor(step: int) -> float:
        if step < decay_start:
            return warmup(step)
        progress = min(1.0, (step + 1 - decay_start) / (total_steps - decay_start))
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor

def lr_schedule(train: Mapping[str, Any]) -> Callable[[int], float]:
    """The lr factor per step of a config's train section (warm-up, constant, optional cosine tail); a tail that
    does not fit train.steps is a one-line UserError."""
    decay_start = train.get("lr_decay_start")
    return warmup_constant_cosine(int(train["warmup_steps"]), None if decay_start is None else int(decay_start),
                                  int(train["steps"]), float(train.get("lr_final_ratio", 0.0)))


@dataclass
class LoopResult:
    """`losses`: (step, mean loss) as logged this session, after the checkpoint's last one when it resumed."""

    final_step: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps_run: int = 0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps_run if self.steps_run else float("nan")



@dataclass
class TrainingLoop:
    """Runs `loss_fn(step, batch, modules)` for train.steps steps: AdamW, warm-up, clipping, EMA, checkpoints.

    `modules` are the trained modules (their state is checkpointed); `loss_fn` receives them prepared by
    accelerate (wrapped for gradient synchronisation when several processes run) and must call those.
    `parameters` are the optimised parameters; `lr_factors(train section)` gives the lr factor per step.
    `train` is the config's train section. The loop never reads wall time into anything it trains.
    """

    accelerator: Any
    output_dir: Path
    config: dict[str, Any]
    modules: dict[str, torch.nn.Module]
    parameters: list[torch.nn.Parameter]
    dataset_size: int
    loss_fn: Callable[[int, BatchSlice, dict[str, torch.nn.Module]], torch.Tensor]
    log: Callable[[str], None] = print
    lr_factors: Callable[[Mapping[str, Any]], Callable[[int], float]] = lr_schedule

    def __post_init__(self) -> None:
        train = self.config["train"]
        self.train = train
        self.optimizer = torch.optim.AdamW(self.parameters, lr=float(train["lr"]),
                                           betas=tuple(train["betas"]), weight_decay=float(train["weight_decay"]),
                                           eps=1e-8)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factors(train))
        self.ema = EMA(self.parameters, float(train["ema_decay"])) if float(train["ema_decay"]) > 0 else None
        self.checkpoint_path = self.output_dir / CHECKPOINT_NAME
        self.last_loss: tuple[int, float] | None = None  # the latest logged (step, mean loss), checkpointed

    def _payload(self, step: int) -> dict[str, Any]:
        return {"step": step, "config": self.config,
                "modules": {name: self.accelerator.unwrap_model(m).state_dict() for name, m in self.modules.items()},
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None, "last_loss": self.last_loss}

    def _restore(self, resume: bool) -> int:
        path = self.checkpoint_path
        state = load_checkpoint(path) if resume else None
        if state is None:
            return 0
        _check_resumable(path, state, self.config, config_differences(state["config"], self.config))
        taken = int(state["step"])
        # a changed train.steps / lr tail is accepted only when the steps already taken keep their learning rate
        # (then a fresh run with the new values takes the same path)
        before, now = self.lr_factors(state["config"]["train"]), self.lr_factors(self.train)
        moved = next((step for step in range(taken) if before(step) != now(step)), None)
        if moved is not None:
            fields = [key for key in RESUMABLE_CHANGES if key.startswith("train.lr") or key == "train.steps"]
            saved, current = _flatten(state["config"]), _flatten(self.config)
            fields = [key for key in fields if saved.get(key) != current.get(key)]
            raise UserError(f"{path}: changing {', '.join(fields)} would change the learning rate of step {moved + 1} "
                            f"of the {taken} already taken; {RESTART_HINT}")
        try:
            for name, module in self.modules.items():
                self.accelerator.unwrap_model(module).load_state_dict(state["modules"][name])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            # the next step's lr comes from this config's schedule, not the one the checkpoint stored
            for group, base_lr, factor in zip(self.optimizer.param_groups, self.schedule.base_lrs,
                                              self.schedule.lr_lambdas, strict=True):
                group["lr"] = base_lr * factor(self.schedule.last_epoch)
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a state that does not fit these modules
            raise UserError(f"{path}: does not fit this model ({type(exc).__name__}); {RESTART_HINT}") from None
        last = state.get("last_loss")  # absent in checkpoints written before it was recorded
        self.last_loss = (int(last[0]), float(last[1])) if last is not None else None
        self.log(f"resumed from {path} at step {taken}")
        return taken

    def _trim_loss_log(self, start: int) -> None:
        """Keep only losses.jsonl's records of steps <= `start`: a training killed after its last checkpoint
        logged steps it will now take again (and may have left a half-written line)."""
        path = self.output_dir / "losses.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                if int(record["step"]) <= start:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))

    def run(self, resume: bool = True) -> LoopResult:
        """Train to train.steps (resuming from the checkpoint when `resume`); the main process holds the output
        folder's train.lock meanwhile, so a second training into the same folder is refused instead of
        interleaving its checkpoints with this one's."""
        if not self.accelerator.is_main_process:
            return self._run(resume)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.output_dir / TRAIN_LOCK, f"{self.output_dir}: another training is running in this folder "
                       f"({TRAIN_LOCK} is locked); wait for it to finish or give another --out"):
            return self._run(resume)

    def _run(self, resume: bool) -> LoopResult:
        acc = self.accelerator
        steps, every = int(self.train["steps"]), int(self.train["checkpoint_every"])
        log_every, clip = int(self.train["log_every"]), float(self.train["grad_clip"])
        # modules first: prepare moves them to the device, and the optimizer state restored after follows them
        prepared = {name: acc.prepare(module) for name, module in self.modules.items()}
        if acc.is_main_process:
            for stale in temp_files_of(self.checkpoint_path):  # a checkpoint write cut short (killed)
                stale.unlink(missing_ok=True)
                self.log(f"removed {stale}, left by an interrupted checkpoint write")
        start = self._restore(resume)
        if acc.is_main_process:
            self._trim_loss_log(start)
        self.optimizer = acc.prepare(self.optimizer)
        result = LoopResult(final_step=start, losses=[self.last_loss] if self.last_loss else [])
        seed = int(self.config["seed"])
        begin = time.perf_counter()
        running: list[float] = []
        with progress_bar(acc.is_main_process, f"{self.config['recipe']} {self.config['preset']}",
                          steps, start) as advance:
            for step in range(start, steps):
                batch = process_batch(step, int(self.train["batch_size"]), self.dataset_size, seed,
                                      acc.process_index, acc.num_processes)
                for module in prepared.values():
                    module.train()
                with autocast(acc.device, str(self.train["mixed_precision"])):
                    loss = self.loss_fn(step, batch, prepared)
                acc.backward(loss)
                if clip > 0:
                    acc.clip_grad_norm_(self.parameters, clip)
                self.optimizer.step()
                self.schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update(self.parameters, step)
                running.append(float(loss.detach()))
                done = step + 1
                result.steps_run += 1
                if done % log_every == 0 or done == steps:
                    mean = float(acc.reduce(torch.tensor(np.mean(running)), reduction="mean"))
                    result.losses.append((done, mean))
                    self.last_loss = (done, mean)
                    running.clear()
                    elapsed = time.perf_counter() - begin
                    if acc.is_main_process:
                        self.log(f"step {done}/{steps} loss {mean:.5f} "
                                 f"({elapsed / result.steps_run:.2f} s/step, {elapsed / 60:.1f} min)")
                        with open(self.output_dir / "losses.jsonl", "a") as handle:
                            handle.write(json.dumps({"step": done, "loss": mean,
                                                     "seconds": round(elapsed, 2)}) + "\n")
                if done % every == 0 or done == steps:
                    if acc.is_main_process:
                        save_checkpoint(self.checkpoint_path, self._payload(done))
                    acc.wait_for_everyone()
                advance(done, float(loss.detach()))
        result.final_step = max(start, steps)
        result.seconds = time.perf_counter() - begin
        return result

    def export_parameters(self) -> None:
        """Put the EMA weights (when used) into the modules, for export."""
        if self.ema is not None:
            self.ema.copy_to(self.parameters)


class progress_bar:
    """Rich progress when interactive and on the main process; otherwise nothing (the loop logs lines)."""

    def __init__(self, enabled: bool, description: str, total: int, completed: int):
        from rich.console import Console

        self.enabled = enabled and Console(stderr=True).is_terminal
        self.description, self.total, self.completed = description, total, completed

    def __enter__(self) -> Callable[[int, float], None]:
        if not self.enabled:
            return lambda done, loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=False)
        self.progress.__enter__()
        task = self.progress.add_task(self.description, total=self.total, completed=self.completed, loss=float("nan"))
        return lambda done, loss: self.progress.update(task, completed=done, loss=loss)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)


def make_logger(output_dir: Path, is_main: bool) -> Callable[[str], None]:
    """Log lines to stderr (rich) and to <output_dir>/train.log, from the main process only."""
    from fypbench.console import make_console

    console = make_console(log_path=False)

    def log(message: str) -> None:
        if not is_main:
            return
        console.log(message)
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / "train.log", "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    return log


# ------------------------------------------------------------------------------------------------------ export
def command_line(recipe: str, preset: str, overrides: Mapping[str, Any] | None) -> str:
    """The CLI command that reproduces a training run."""
    parts = ["fypbench", "train", recipe, "--world", "mini", "--preset", str(preset)]
    for key, value in (overrides or {}).items():
        parts += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return shlex.join(parts)


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_record(config: Mapping[str, Any], overrides: Mapping[str, Any] | None, result: LoopResult) -> dict[str, Any]:
    """What a manifest records about the training run."""
    return {
        "training": {
            "command": command_line(config["recipe"], config["preset"], overrides),
            "config": copy.deepcopy(dict(config)),
            "final_step": result.final_step,
            "final_loss": result.losses[-1][1] if result.losses else None,
            "seconds_this_session": round(result.seconds, 1),
            "seconds_per_step": round(result.seconds_per_step, 4) if result.steps_run else None,
            "git": git_revision(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        }
    }


def default_output_dir(recipe: str, preset: str) -> Path:
    return Path("runs") / "train" / f"{recipe}_{Path(str(preset)).stem}"


def recipe_main(run: Callable[..., Any], description: str, argv: Sequence[str] | None = None,
                stages: Sequence[int] = ()) -> None:
    """The `python -m <recipe module>` entry point every recipe shares (same options as `fypbench train`; a
    recipe with `stages` also takes a required --stage). A user error is one line on stderr and exit code 2, as
    with `fypbench train`."""
    import argparse

    parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
    if stages:
        parser.add_argument("--stage", type=int, choices=tuple(stages), required=True)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        stage = {"stage": args.stage} if stages else {}
        print(run(args.preset, args.output_dir, not args.no_resume, parse_overrides(args.set), **stage))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(UserError.exit_code) from None
