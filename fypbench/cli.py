"""The `fypbench` command line.

    fypbench --help

Every command imports its heavy modules lazily, so `fypbench ls ...` is instant. User errors print one line
on stderr and exit with code 2.
"""

from __future__ import annotations

import difflib
import math
import shlex
import sys
from pathlib import Path
from typing import Annotated

import click
import numpy as np
import typer
from typer.core import TyperGroup

from fypbench.errors import UserError
from fypbench.generator import MethodUnavailable
from fypbench.io import check_output_dir, check_output_file

# typer 0.29 runs on its own vendored copy of click: its parsing errors (unknown option, bad value, missing
# argument) are not click's classes, so both families are caught.
try:
    from typer._click import exceptions as _typer_click
except ImportError:  # a typer that uses click itself
    _typer_click = click.exceptions
# The command line as typed (main() sets it), recorded by `fypbench run` so that tables name the exact command.
_INVOCATION: list[str] = []
NO_ARGS_ERRORS = tuple({click.exceptions.NoArgsIsHelpError, _typer_click.NoArgsIsHelpError})
USAGE_ERRORS = tuple({click.UsageError, _typer_click.UsageError})
CLICK_ERRORS = tuple({click.ClickException, _typer_click.ClickException})
EXITS = tuple({click.exceptions.Exit, typer.Exit})
ABORTS = tuple({click.exceptions.Abort, typer.Abort})


class SuggestingGroup(TyperGroup):
    """Unknown sub-commands get a 'did you mean' suggestion."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)


def _app(help_text: str) -> typer.Typer:
    return typer.Typer(cls=SuggestingGroup, help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})


app = _app("fypbench: train, run and compare pose-guided text-to-video generators.")
protocol_app = _app("Build, inspect and validate protocols (named, hashed sets of pose-prompt samples).")
world_app = _app("Look at a world: render samples as videos.")
app.add_typer(protocol_app, name="protocol")
app.add_typer(world_app, name="world")

LS_KINDS = ("methods", "protocols", "worlds", "presets", "recipes", "metrics")


@app.command("ls")
def ls(kind: Annotated[str, typer.Argument(help="methods | protocols | worlds | presets | recipes | metrics")]) -> None:
    """List registered methods, built-in protocols, worlds, run presets, training recipes or metrics."""
    from rich.console import Console
    from rich.table import Table

    from fypbench.errors import did_you_mean
    from fypbench.registry import METHODS, WORLDS

    table = Table(box=None)
    table.add_column(kind[:-1] if kind.endswith("s") else kind, style="bold")
    table.add_column("description")
    if kind == "methods":
        for entry in METHODS.entries():
            table.add_row(entry.name, entry.summary)
    elif kind in ("worlds", "recipes", "metrics"):
        from fypbench.metrics import METRICS
        from fypbench.registry import RECIPES

        for entry in {"worlds": WORLDS, "recipes": RECIPES, "metrics": METRICS}[kind].entries():
            table.add_row(entry.name, entry.summary)
    elif kind == "protocols":
        import json

        from fypbench.protocol import HEADER_FILE, builtin_names
        from fypbench.protocols import DATA_DIR

        for name in builtin_names():
            header = json.loads((DATA_DIR / name / HEADER_FILE).read_text())
            table.add_row(name, header.get("description", ""))
    elif kind == "presets":
        from fypbench.runner import load_run_preset, run_preset_names

        for name in run_preset_names():
            table.add_row(name, load_run_preset(name)[1]["description"])
    else:
        raise did_you_mean(kind, LS_KINDS, "listing")
    Console().print(table)


@protocol_app.command("build")
def protocol_build(
    name: Annotated[str, typer.Argument(help="built-in protocol to build, e.g. fyp-1024")],
    out: Annotated[Path | None, typer.Option(help="output folder (default: the built-in protocols/NAME)")] = None,
) -> None:
    """Build a protocol deterministically (a rebuild gives the same hash)."""
    import time

    from fypbench.protocol import HEADER_FILE, build_protocol, save_protocol, write_subsets
    from fypbench.protocols import DATA_DIR

    if out is not None:
        check_output_dir(out)
        if out.is_dir() and any(out.iterdir()) and not (out / HEADER_FILE).is_file():
            raise UserError(f"--out {out}: a non-empty folder that holds no protocol; give an empty or new folder")
    started = time.perf_counter()
    protocol = build_protocol(name)
    folder = save_protocol(protocol, out if out is not None else DATA_DIR / name)
    write_subsets(name, folder)
    typer.echo(f"built {protocol.name}: {len(protocol)} samples, hash {protocol.hash} -> {folder} "
               f"({time.perf_counter() - started:.1f} s)")


@protocol_app.command("validate")
def protocol_validate(name: Annotated[str, typer.Argument(help="protocol name or folder")]) -> None:
    """Check a protocol's files: hash, counts, shapes, value ranges, ids, seeds, tags, sources."""
    from fypbench.protocol import load_protocol

    protocol = load_protocol(name)
    typer.echo(f"{protocol.name}: {len(protocol)} samples, {protocol.num_frames} frames at {protocol.fps:g} fps "
               f"(stride {protocol.stride}), hash {protocol.hash} OK")


@protocol_app.command("show")
def protocol_show(
    name: Annotated[str, typer.Argument(help="protocol name or folder")],
    sample: Annotated[str | None, typer.Option(help="show one sample in full")] = None,
    limit: Annotated[int, typer.Option(min=0, help="samples to list")] = 10,
) -> None:
    """Summarise a protocol (counts per tag) or show one sample."""
    import json
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from fypbench.protocol import load_protocol

    protocol = load_protocol(name)
    console = Console()
    if sample is not None:
        s = protocol.sample(sample)
        console.print_json(json.dumps({**s.to_record(), "num_frames": s.num_frames,
                                       "keypoints_frame0": s.keypoints[0].round(4).tolist()}))
        return
    console.print(f"[bold]{protocol.name}[/bold]: {len(protocol)} samples, {protocol.num_frames} frames at "
                  f"{protocol.fps:g} fps (stride {protocol.stride}), base seed {protocol.base_seed}, "
                  f"hash {protocol.hash}\n{protocol.description}")
    tags = Table(title="samples per tag value", box=None)
    tags.add_column("tag", style="bold")
    tags.add_column("values")
    for key in protocol.tags:
        counts = Counter(s.tags.get(key) for s in protocol.samples)
        tags.add_row(key, ", ".join(f"{v}={n}" for v, n in sorted(counts.items(), key=lambda kv: str(kv[0]))))
    console.print(tags)
    listing = Table(box=None)
    for column in ("id", "prompt", "motion", "camera"):
        listing.add_column(column)
    for s in protocol.samples[:limit]:
        listing.add_row(s.id, s.prompt, s.tags.get("motion", ""), s.tags.get("camera", ""))
    console.print(listing)


@world_app.command("render")
def world_render(
    protocol: Annotated[str, typer.Option(help="protocol name or folder")] = "fyp-1024",
    sample: Annotated[str, typer.Option(help="sample id")] = ...,
    out: Annotated[Path, typer.Option(help="output folder")] = ...,
    size: Annotated[int, typer.Option(min=16, max=1024, help="frame side in pixels")] = 64,
    world: Annotated[str, typer.Option(help="world that renders the sample")] = "mini",
) -> None:
    """Render one sample: ground truth, neutral source and pose skeletons -> mp4, gif, contact-sheet PNG."""
    from fypbench.protocol import load_protocol
    from fypbench.registry import WORLDS
    from fypbench.world.mini.preview import write_sample_previews

    check_output_dir(out)
    world_obj = WORLDS.load(world)()
    if not hasattr(world_obj, "render_reference"):
        raise UserError(f"world {world!r} cannot render samples "
                        f"({getattr(world_obj, 'no_renderer_reason', 'it has no renderer')})")
    s = load_protocol(protocol).sample(sample)
    paths = write_sample_previews(world_obj, s, out, size=size)
    for path in paths:
        typer.echo(str(path))


# The config key naming where each recipe exports (null = inside its output folder); the vae recipe always exports
# inside it. With --out, the export goes there too, never over the shipped weights a mini preset names.
RECIPE_EXPORT_KEYS = {"base": "export.dir", "evaluator-clip": "export_dir", "followpose-stage1": "export.dir",
                      "followpose-stage2": "export.dir", "controlnet": "export.dir", "t2i-adapter": "export.dir"}


@app.command("train")
def train(
    recipe: Annotated[str, typer.Argument(help="vae | base | evaluator-clip | followpose-stage1 | followpose-stage2 "
                                               "| controlnet | t2i-adapter (fypbench ls recipes)")],
    world: Annotated[str, typer.Option(help="world whose preset to use (mini | sd)")] = "mini",
    preset: Annotated[str | None, typer.Option(help="preset name or YAML path (default: the world's name; "
                                                    "debug = tiny, seconds)")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder of checkpoints, logs and the exported weights "
                                                  "(default: runs/train/<recipe>_<preset>, exporting where the "
                                                  "preset says: the mini presets replace the shipped weights)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the output folder's last checkpoint")] = True,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="config override key=value (repeatable)")] = None,
) -> None:
    """Train a model with one recipe (config-driven, resumable; `accelerate launch -m fypbench.cli train ...`)."""
    from fypbench.registry import RECIPES
    from fypbench.training.common import parse_overrides

    if out is not None:
        check_output_dir(out)
    run_recipe = RECIPES.load(recipe)
    parsed = parse_overrides(overrides or [])
    export_key = RECIPE_EXPORT_KEYS.get(recipe)
    if out is not None and export_key is not None:
        parsed.setdefault(export_key, None)  # null = inside --out; a --set of the key still wins
    folder = run_recipe(preset or world, out, resume, parsed)
    typer.echo(f"exported: {folder}")


@app.command("sample")
def sample(
    prompt: Annotated[str, typer.Option(help="text prompt")] = ...,
    out: Annotated[Path, typer.Option(help="output PNG (a grid of seeds)")] = ...,
    world: Annotated[str, typer.Option(help="world whose base model to use (sd: $FYPBENCH_SD_BASE, else SD 1.5 "
                                             "in the local Hugging Face cache)")] = "mini",
    base: Annotated[str | None, typer.Option(help="base pipeline folder or hub id (default: the world's)")] = None,
    seeds: Annotated[int, typer.Option(min=1, max=64, help="number of seeds (0..N-1) in the grid")] = 8,
    steps: Annotated[int, typer.Option(min=1, help="DDIM steps")] = 25,
    guidance: Annotated[float, typer.Option(help="classifier-free guidance scale")] = 5.0,
) -> None:
    """Quick look at the base text-to-image model: one prompt, a grid of seeds."""
    from fypbench.base.components import load_base
    from fypbench.base.sample import image_grid, sample_images
    from fypbench.media import write_png
    from fypbench.registry import WORLDS

    check_output_file(out, (".png",))
    if not prompt.strip():
        raise UserError("--prompt is empty")
    if not math.isfinite(guidance) or guidance < 0:
        raise UserError(f"--guidance must be a finite number >= 0, got {guidance}")
    folder = base or WORLDS.load(world)().base_model()
    components = load_base(folder)
    images = sample_images(components, [prompt] * seeds, list(range(seeds)), steps=steps, guidance=guidance)
    typer.echo(f"written: {write_png(out, np.asarray(image_grid(images)))}")


@app.command("run")
def run(
    methods: Annotated[str, typer.Option(help="'all' or a comma-separated list (fypbench ls methods)")] = "all",
    world: Annotated[str, typer.Option(help="mini | sd (sd: models from local folders or the local Hugging Face "
                                             "cache, FYPBENCH_SD_* variables: fypbench/world/sd.py)")] = "mini",
    protocol: Annotated[str, typer.Option(help="protocol name or folder")] = "fyp-1024",
    limit: Annotated[int | None, typer.Option(help="first N samples of the protocol (or of --subset)")] = None,
    subset: Annotated[str | None, typer.Option(help="a named subset of the protocol (protocols/<name>/subsets/, "
                                                    "e.g. dev128) or a file of sample ids")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<world>-<protocol>[-subset][-N])")] = None,
    shard: Annotated[str | None, typer.Option(help="I/N: this process's share (Slurm arrays) of the jobs, each a "
                                                   "batch of --batch-size samples of one method; default from "
                                                   "RANK/WORLD_SIZE")] = None,
    batch_size: Annotated[int | None, typer.Option(help="samples per generate() call")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML: methods options, batch_size, previews, metrics")] = None,
    previews: Annotated[int | None, typer.Option(help="samples per method that get mp4/gif previews")] = None,
    score: Annotated[bool, typer.Option(help="score the videos after generating them")] = True,
    preset: Annotated[str, typer.Option(help="named run preset (fypbench/run_presets/): default | fast | "
                                             "pose-guidance, or composed: fast+pose-guidance; a non-default one "
                                             "is recorded and named in every table")] = "default",
) -> None:
    """Generate every (method, sample) video, then score them: resumable, shardable, locked."""
    from fypbench.run_job import RunOptions, run_benchmark

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    options = RunOptions(methods=methods, world=world, protocol=protocol, limit=limit, subset=subset, out=out,
                         shard=shard, batch_size=batch_size, config=config, previews=previews, score=score,
                         preset=preset, command=shlex.join(["fypbench", *_INVOCATION]))
    run_dir = run_benchmark(options)
    typer.echo(f"run directory: {run_dir}")


@app.command("forget")
def forget(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `fypbench run`")],
    methods: Annotated[str, typer.Option(help="comma-separated methods to remove from the run")],
) -> None:
    """Remove methods' videos, scores and settings from a run, so the next `run --out RUN_DIR` redoes them."""
    from fypbench.run_job import forget_methods

    names = forget_methods(run_dir, methods, log=typer.echo)
    typer.echo(f"forgot {', '.join(names)} in {run_dir}; `fypbench run --out {run_dir} ...` regenerates them")


@app.command("score")
def score(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `fypbench run`")],
    metrics: Annotated[str | None, typer.Option(help="comma-separated metric names (default: CS, FC, pose)")] = None,
    pose_processes: Annotated[int, typer.Option(min=1, help="MediaPipe detector processes")] = 1,
    clip_weights: Annotated[Path | None, typer.Option(help="CLIP weights: sd world, the ViT-L-14 openai file; mini "
                                                           "world, an evaluator folder (default: the shipped one)")]
    = None,
    rescore: Annotated[bool, typer.Option(help="recompute rows of the requested metrics' current configs")] = False,
    world: Annotated[str | None, typer.Option(help="override the run's world")] = None,
) -> None:
    """Score every stored video of a run into scores/scores.parquet (resumable; never regenerates videos)."""
    from fypbench.scoring import score_command

    path = score_command(str(run_dir), metrics=metrics, pose_processes=pose_processes,
                         clip_weights=str(clip_weights) if clip_weights else None, rescore=rescore, world=world)
    typer.echo(f"scores: {path}")


@app.command("validate-metrics")
def validate_metrics(
    world: Annotated[str, typer.Option(help="world whose metrics to validate")] = "mini",
    samples: Annotated[int, typer.Option(min=16, help="fyp-1024 samples rendered as ground truth")] = 256,
    out: Annotated[Path, typer.Option(help="markdown report")] = Path("results/mini/metric_validity.md"),
    pose_processes: Annotated[int, typer.Option(min=1, help="MediaPipe detector processes")] = 1,
    clip_weights: Annotated[Path | None, typer.Option(help="evaluator CLIP folder to validate (default: the "
                                                           "shipped one)")] = None,
) -> None:
    """Show that each metric separates right from wrong (AUC of true vs control videos/prompts/poses)."""
    from fypbench.metrics.validity import validate_metrics as run_validation

    check_output_file(out, (".md",))
    run_validation(world=world, num_samples=samples, out=out, pose_processes=pose_processes,
                   clip_weights=str(clip_weights) if clip_weights else None)


@app.command("ablate")
def ablate(
    world: Annotated[str, typer.Option(help="world to train and evaluate in")] = "mini",
    variants: Annotated[str, typer.Option(help="'all' or a comma list (default always included)")] = "all",
    limit: Annotated[int | None, typer.Option(help="first N samples of the protocol (or of --subset)")] = None,
    subset: Annotated[str | None, typer.Option(help="a named subset of the protocol, or a file of sample ids")]
    = "dev128",
    protocol: Annotated[str, typer.Option(help="protocol name or folder")] = "fyp-1024",
    preset: Annotated[str, typer.Option(help="followpose training preset the variants override")] = "mini",
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override for every variant, key=value")] = None,
    out: Annotated[Path | None, typer.Option(help="markdown table (default results/mini/ablation.md)")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="run directory of the variants' videos and scores")] = None,
    num_inference_steps: Annotated[int | None, typer.Option(
        min=1, help="DDIM steps of every variant (default: the followpose preset's); shown in the table")] = None,
    run_preset: Annotated[str | None, typer.Option(
        help="sample every variant with a run preset's followpose options (e.g. pose-guidance, fast+pose-guidance); "
             "named in the table")] = None,
) -> None:
    """Train (cached) and evaluate Follow-Your-Pose variants: injection, depth, temporal modules, stage 2."""
    from fypbench.ablate import run_ablation
    from fypbench.training.common import parse_overrides

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    if out is not None:
        check_output_file(out, (".md",))
    if run_dir is not None:
        check_output_dir(run_dir, "--run-dir")
    path = run_ablation(variants=variants, world=world, protocol=protocol, limit=limit, subset=subset, preset=preset,
                        overrides=parse_overrides(overrides or []), out=out, run_dir=run_dir,
                        generator_options={"num_inference_steps": num_inference_steps} if num_inference_steps else None,
                        run_preset=run_preset)
    typer.echo(f"written: {path}")


@app.command("results")
def results(
    run_dir: Annotated[Path, typer.Argument(help="a scored run directory")],
    baseline: Annotated[str, typer.Option(help="method the paired comparisons are made against")] = "followpose",
    replicates: Annotated[int, typer.Option(min=100, help="bootstrap replicates (mean-type metrics)")] = 2000,
    pooled_replicates: Annotated[int, typer.Option(min=20, help="bootstrap replicates of pooled PA")] = 1000,
) -> None:
    """Write RUN_DIR/results.json: means, bootstrap CIs, n expected/found, paired comparisons, slices."""
    from fypbench.results import write_results

    typer.echo(f"written: {write_results(run_dir, baseline=baseline, replicates=replicates, pooled_replicates=pooled_replicates)}")


@app.command("leaderboard")
def leaderboard(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with results.json")],
    format: Annotated[str, typer.Option("--format", help="comma-separated: md, csv, tex, html, png (contact sheet)")] = "md,csv,tex,html,png",
    out: Annotated[Path | None, typer.Option(help="output folder (default RUN_DIR/report)")] = None,
) -> None:
    """Leaderboard tables built only from the run's results record."""
    from fypbench.leaderboard import write_leaderboard

    if out is not None:
        check_output_dir(out)
    for path in write_leaderboard(run_dir, format, out):
        typer.echo(f"written: {path}")


def _usage_error_line(exc: Exception) -> str:
    """One line for a command-line usage error: the message and where to look."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(exc.format_message().split())
    return f"error: {message}{where}"


# Path options: the parser turns an empty value into Path("."), i.e. the current directory, so it is refused here
PATH_OPTIONS = ("--out", "--config", "--run-dir", "--clip-weights")


def _empty_path_option(args: list[str]) -> str | None:
    for i, token in enumerate(args):
        if token == "--":
            break
        name, equals, value = token.partition("=")
        if name in PATH_OPTIONS and ((equals and not value.strip()) or
                                     (not equals and i + 1 < len(args) and not args[i + 1].strip())):
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    _INVOCATION[:] = list(argv) if argv is not None else sys.argv[1:]
    empty = _empty_path_option(_INVOCATION)
    if empty is not None:
        typer.echo(f"error: {empty} is empty (give a path; '.' for the current directory)", err=True)
        return UserError.exit_code
    try:
        app(args=argv, standalone_mode=False, prog_name="fypbench")
    except (UserError, MethodUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        return UserError.exit_code
    except NO_ARGS_ERRORS as exc:
        exc.show()  # the command's help
        return UserError.exit_code
    except USAGE_ERRORS as exc:
        typer.echo(_usage_error_line(exc), err=True)
        return UserError.exit_code
    except EXITS as exc:
        return exc.exit_code
    except CLICK_ERRORS as exc:
        exc.show()
        return exc.exit_code
    except ABORTS:
        typer.echo("aborted", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
