"""`fypbench ablate`: train and evaluate Follow-Your-Pose variants on the same samples and seeds.

    fypbench ablate --world mini                 (the fyp-1024 subset dev128: 8 pose sequences x 16 prompts)

Variants (config overrides of the followpose stage-1 / stage-2 presets): pose injection residual (default) vs
concat; injection depth 1, 2, 3 (default: all 4 down blocks); temporal attention off; conv_temporal off; stage 2
skipped. Trained weights are cached per (preset, variant overrides, base) in the user's cache directory
(~/.cache/fypbench/ablate, or $FYPBENCH_CACHE), never shipped. Each variant is generated as method
`followpose-<variant>` into one run directory, scored, and summarised in one table with paired bootstrap CIs
against the default variant (same samples, same seeds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fypbench.errors import UserError, did_you_mean
from fypbench.generator import config_hash
from fypbench.io import write_text_atomic

STAGE1 = "followpose-stage1"
STAGE2 = "followpose-stage2"
# name -> (stage-1 overrides, stage-2 overrides or None when stage 2 is skipped)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "default": ({}, {}),
    "concat": ({"model.followpose.injection": "concat"}, {}),
    "depth1": ({"model.followpose.depth": 1}, {}),
    "depth2": ({"model.followpose.depth": 2}, {}),
    "depth3": ({"model.followpose.depth": 3}, {}),
    "no-temporal-attention": ({}, {"model.followpose.temporal_attention": False}),
    "no-conv-temporal": ({}, {"model.followpose.conv_temporal": False}),
    "no-stage2": ({}, None),
}
DEFAULT_OUT = Path("results/mini/ablation.md")


def cache_root() -> Path:
    return Path(os.environ.get("FYPBENCH_CACHE", Path.home() / ".cache" / "fypbench")) / "ablate"


def resolve_variants(text: str) -> list[str]:
    names = list(VARIANTS) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS:
            raise did_you_mean(name, VARIANTS, "ablation variant")
    if "default" not in names:
        names.insert(0, "default")  # the reference every paired comparison is made against
    return list(dict.fromkeys(names))


def train_variant(name: str, preset: str, common: dict[str, Any], root: Path, base_version: str) -> Path:
    """Train (or reuse) one variant; returns its weights folder (stage 2 export, or stage 1 when skipped).
    The cache keys hold `base_version` (the base model's identity): a retrained base never reuses weights
    trained on the previous one."""
    from fypbench.registry import RECIPES

    stage1_overrides, stage2_overrides = VARIANTS[name]
    key = config_hash({"preset": preset, "common": common, "stage1": stage1_overrides, "stage2": stage2_overrides,
                       "base": base_version})
    folder = root / preset / f"{name}-{key}"
    # variants with the same stage-1 settings (default, the stage-2 ablations) share one stage-1 training
    stage1_key = config_hash({"preset": preset, "common": common, "stage1": stage1_overrides, "base": base_version})
    # rendered + encoded training data depend on the data settings only: shared by every variant
    data_key = config_hash({"preset": preset, "data": {k: v for k, v in common.items() if k.startswith("data.")}})
    stage1 = RECIPES.load(STAGE1)(preset, root / preset / f"stage1-{stage1_key}", True, {
        "data.cache_dir": str(root / preset / f"data-stage1-{data_key}"), **common, **stage1_overrides})
    if stage2_overrides is None:
        return stage1
    return RECIPES.load(STAGE2)(preset, folder / "stage2", True, {
        "data.cache_dir": str(root / preset / f"data-stage2-{data_key}"), **common, **stage2_overrides,
        "model.stage1_dir": str(stage1), "export.dir": str(folder / "stage2" / "followpose")})


def _check_training_schedules(preset: str, common: dict[str, Any]) -> None:
    """Both stages' configs with the common overrides, checked before anything trains (unknown keys, an lr tail
    that does not fit train.steps): one-line UserError instead of a failure after the first variant's stage 1."""
    from fypbench.training.common import load_config, lr_schedule

    for recipe in ("followpose_stage1", "followpose_stage2"):
        lr_schedule(load_config(recipe, preset, common)["train"])


def run_ablation(variants: str = "all", world: str = "mini", protocol: str = "fyp-1024", limit: int | None = None,
                 subset: str | None = "dev128",
                 preset: str = "mini", overrides: dict[str, Any] | None = None, out: Path | None = None,
                 run_dir: Path | None = None, generator_options: dict[str, Any] | None = None,
                 run_preset: str | None = None) -> Path:
    from fypbench.console import make_console

    from fypbench.models.followpose.generator import FollowPoseGenerator, base_identity, resolve_base_folder
    from fypbench.protocol import load_protocol, select_samples
    from fypbench.registry import WORLDS
    from fypbench.results import build_results
    from fypbench.runner import check_writable, generate_and_score
    from fypbench.training.common import resolve_path

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    explicit_steps = (generator_options or {}).get("num_inference_steps")  # what the command line said
    preset_record = None
    if run_preset is not None:
        generator_options, preset_record = sampling_preset(run_preset, generator_options)
    console = make_console()
    names = resolve_variants(variants)
    common = dict(overrides or {})
    proto = load_protocol(protocol)
    samples, subset = select_samples(proto, subset, limit)
    world_obj = WORLDS.load(world)()
    _check_training_schedules(preset, common)
    run_dir = Path(run_dir) if run_dir else Path("runs") / (
        f"ablate-{world}-{preset}-" + (f"{subset}-" if subset else "") + str(len(samples)))
    out = Path(out) if out else DEFAULT_OUT
    check_writable(run_dir)
    check_writable(out.parent)
    root = cache_root()
    base = common["model.base"] if "model.base" in common else world_obj.base_model()
    base_version = base_identity(resolve_base_folder(resolve_path(str(base))))
    generators = {}
    for name in names:
        console.print(f"[bold]variant {name}[/bold]: training (cached in {root}, base {base_version})")
        weights = train_variant(name, preset, common, root, base_version)
        generators[f"followpose-{name}"] = FollowPoseGenerator(base, weights, preset="sd" if world == "sd" else "mini",
                                                               **(generator_options or {}))
    generate_and_score(run_dir, generators, samples, world=world, protocol=proto, subset=subset, limit=limit,
                       extra_record={"ablation": {
                           "preset": preset, "overrides": common, "variants": {n: VARIANTS[n] for n in names},
                           "num_inference_steps": explicit_steps, "run_preset": preset_record}},
                       log=console.print)
    record = build_results(run_dir, baseline="followpose-default")
    write_text_atomic(out, ablation_markdown(record, run_dir, names))
    return out


def sampling_preset(name: str, generator_options: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A named run preset's followpose options for every variant (explicit options win) and its record."""
    from fypbench.runner import load_run_preset

    config, record = load_run_preset(name)
    options = (config.get("methods") or {}).get("followpose")
    if not options:
        raise UserError(f"run preset {record['name']!r} sets no followpose option; nothing to apply to the variants")
    return {**options, **(generator_options or {})}, record


def ablation_markdown(record: dict[str, Any], run_dir: Path, names: Sequence[str]) -> str:
    from fypbench.leaderboard import COLUMNS, _fmt, header_lines, method_revisions

    lines = ["# Follow-Your-Pose ablation", ""] + [f"{h}  " for h in header_lines(record, run_dir)]
    run = record["run"]
    ablation = run.get("ablation") or {}
    steps = {c.get("config", {}).get("num_inference_steps") for c in (run.get("methods") or {}).values()}
    # values as `--set` parses them back (YAML scalars: null, true, 2e-4), so the command line reruns as written
    flags = "".join(f" --set {k}={json.dumps(v) if not isinstance(v, str) else v}"
                    for k, v in (ablation.get("overrides") or {}).items())
    preset = ablation.get("preset")
    lines[3] = (f"Produced by: `fypbench ablate --world {run.get('world')}"
                + (f" --preset {preset}" if preset and preset != "mini" else "")
                + (f" --subset {run['subset']}" if run.get("subset") else "")
                + (f" --limit {run['limit']}" if run.get("limit") else "") + flags
                + (f" --run-preset {ablation['run_preset']['name']}" if ablation.get("run_preset") else "")
                + (f" --num-inference-steps {ablation['num_inference_steps']}"
                   if ablation.get("num_inference_steps") else "")
                + f"`, git {(run.get('environment') or {}).get('git')}"
                + method_revisions(run, run.get("environment") or {}) + "  ")
    bases = sorted({str(c.get("config", {}).get("base")) for c in (run.get("methods") or {}).values()})
    overrides = json.dumps(ablation["overrides"]) if ablation.get("overrides") else "none"
    lines.insert(4, f"Training preset {preset}, overrides for every variant: {overrides}; sampling: DDIM "
                    f"{', '.join(map(str, sorted(steps, key=str)))} steps; base model {', '.join(bases)}  ")
    if ablation.get("run_preset"):
        lines.insert(5, f"Sampling preset {ablation['run_preset']['name']} (departs from the followpose preset's "
                        f"sampling): {ablation['run_preset']['description']}  ")
    lines = [line for line in lines if not line.startswith("Run preset:")]  # the line above states the settings
    head = ["variant"] + [label for _, label, _ in COLUMNS] + [f"d{label} vs default [95% CI]" for _, label, _ in COLUMNS]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    comparisons = record["paired"].get("comparisons") or {}
    for name in names:
        method = f"followpose-{name}"
        metrics = record["table"].get(method, {})
        cells = [_fmt(metrics[n]["value"], d) if n in metrics else "n/a" for n, _, d in COLUMNS]
        for n, _, d in COLUMNS:
            e = comparisons.get(method, {}).get(n)
            cells.append("—" if name == "default" else "n/a" if not e else
                         f"{_fmt(e['difference'], d)} [{_fmt(e['ci_low'], d)}, {_fmt(e['ci_high'], d)}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    overrides = json.dumps({n: VARIANTS[n] for n in names}, default=str)
    lines += ["", f"Variants (stage-1 overrides, stage-2 overrides or null = stage 2 skipped): `{overrides}`"]
    return "\n".join(lines) + "\n"
