"""Leaderboard tables built only from a run's results record (RUN_DIR/results.json).

    fypbench leaderboard RUN_DIR --format md,csv,tex,html

Each table is headed by the command and git revision that produced the run. The paper's Table 1 is shown beside
the measured numbers, clearly labelled as another world's numbers (SD 1.4 at 512 px, the paper's own, unknown
PA/FC definitions): they are context, never comparable values.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from fypbench.errors import UserError
from fypbench.io import write_text_atomic

FORMATS = ("md", "csv", "tex", "html", "png")
GALLERY_SAMPLES = 8
COLUMNS = (("clip_score", "CS", 2), ("fc_clip_consecutive", "FC", 2), ("pa", "PA", 2), ("pck_0.1h", "PCK@0.1h", 3))
SLICE_TAGS = ("motion_source", "motion_class", "motion_split", "combination", "camera")
# Follow-Your-Pose paper, Table 1 (followpose.md §11; transcribed, not re-checked against the PDF).
PAPER_TABLE1 = {
    "FOMM": (22.93, 11.7, 81.25), "Everybody Dance Now": (23.04, 13.7, 79.83),
    "Tune-A-Video": (23.57, 27.74, 93.78), "ControlNet": (22.31, 33.23, 54.35), "T2I-Adapter": (22.42, 33.47, 53.86),
    "MasaCtrl": (23.64, 33.19, 87.64), "Follow-Your-Pose": (24.09, 34.92, 93.36),
}


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _cell(entry: dict[str, Any] | None, digits: int) -> tuple[str, str]:
    if not entry:
        return "n/a", ""
    return _fmt(entry["value"], digits), f"[{_fmt(entry['ci_low'], digits)}, {_fmt(entry['ci_high'], digits)}]"


def main_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for method, metrics in results["table"].items():
        row = [method]
        for name, _, digits in COLUMNS:
            value, ci = _cell(metrics.get(name), digits)
            row += [value, ci]
        found = [m.get("n_found", 0) for m in metrics.values()]
        expected = [m.get("n_expected", 0) for m in metrics.values()]
        row.append(f"{min(found)}/{max(expected)}" if found else "0/0")
        rows.append(row)
    return rows


def header_lines(results: dict[str, Any], run_dir: Path) -> list[str]:
    run = results["run"]
    env = run.get("environment") or {}
    preset = run.get("preset") or {}  # absent in records written before run presets existed
    departs = preset.get("name", "default") != "default"
    return [f"Run: `{run_dir}` - world {run.get('world')}, protocol {run.get('protocol')} "
            f"(hash {str(run.get('protocol_hash'))[:16]})"
            + (f", subset {run['subset']}" if run.get("subset") else "") + f", {results['n_samples']} samples",
            f"Produced by: `fypbench run --world {run.get('world')} --protocol {run.get('protocol')}"
            + (f" --preset {preset['name']}" if departs else "")
            + (f" --subset {run['subset']}" if run.get("subset") else "")
            + (f" --limit {run['limit']}" if run.get("limit") else "") + f" --out {run_dir}` then "
            f"`fypbench leaderboard {run_dir}`, git {env.get('git', 'unknown')}",
            f"Run preset: {preset.get('name', 'default')}"
            + (f" (departs from the methods' defaults: {preset.get('description')})"
               if departs else " (every method's default)"),
            f"Method presets: " + "; ".join(f"{m}: {c.get('config', {}).get('preset', 'default')}"
                                            for m, c in (run.get("methods") or {}).items()),
            "95 % percentile bootstrap CIs over sample ids "
            f"({results['bootstrap']['replicates']} replicates; PA {results['bootstrap']['pooled_replicates']}, "
            f"seed {results['bootstrap']['seed']})."]


def to_markdown(results: dict[str, Any], run_dir: Path) -> str:
    lines = ["# Leaderboard", ""] + [f"{h}  " for h in header_lines(results, run_dir)] + [""]
    unavailable = results["run"].get("unavailable") or {}
    head = ["method"] + [x for _, label, _ in COLUMNS for x in (label, "95% CI")] + ["n"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in main_rows(results)]
    for method, reason in unavailable.items():
        lines.append(f"| {method} | not run: {reason} |")
    comparisons = results["paired"].get("comparisons") or {}
    if comparisons:
        lines += ["", f"## Paired differences vs {results['paired']['baseline']} (method - baseline)", "",
                  "| method | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
                  "|---|" + "---|" * len(COLUMNS)]
        for method, metrics in comparisons.items():
            cells = []
            for name, _, digits in COLUMNS:
                e = metrics.get(name)
                cells.append("n/a" if not e else f"{_fmt(e['difference'], digits)} "
                             f"[{_fmt(e['ci_low'], digits)}, {_fmt(e['ci_high'], digits)}]")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for tag in SLICE_TAGS:
        values = results["slices"].get(tag)
        if not values:
            continue
        lines += ["", f"## By {tag}", "", "| method | " + " | ".join(
            f"{label} ({value})" for value in sorted(values) for _, label, _ in COLUMNS) + " |",
            "|---|" + "---|" * (len(values) * len(COLUMNS))]
        for method in results["table"]:
            cells = []
            for value in sorted(values):
                for name, _, digits in COLUMNS:
                    entry = values[value].get(method, {}).get(name)
                    cells.append(_fmt(entry["value"], digits) if entry else "n/a")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## Paper Table 1 (another world: SD 1.4, 512 px, the paper's own CLIP/PA/FC definitions; "
              "NOT comparable with the rows above)", "", "| method | CS | PA % | FC % |", "|---|---|---|---|"]
    lines += [f"| {m} | {cs} | {pa} | {fc} |" for m, (cs, pa, fc) in PAPER_TABLE1.items()]
    return "\n".join(lines) + "\n"


def to_csv(results: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["method", "metric", "value", "ci_low", "ci_high", "n_found", "n_expected"])
    for method, metrics in results["table"].items():
        for name, entry in metrics.items():
            writer.writerow([method, name, entry["value"], entry["ci_low"], entry["ci_high"], entry["n_found"],
                             entry["n_expected"]])
    return out.getvalue()


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(results: dict[str, Any], run_dir: Path) -> str:
    lines = [f"% {_tex_escape(h)}" for h in header_lines(results, run_dir)]
    lines += [r"\begin{tabular}{l" + "r" * len(COLUMNS) + "}", r"\toprule",
              "Method & " + " & ".join(label for _, label, _ in COLUMNS) + r" \\", r"\midrule"]
    for method, metrics in results["table"].items():
        cells = []
        for name, _, digits in COLUMNS:
            e = metrics.get(name)
            cells.append("--" if not e else f"{_fmt(e['value'], digits)}$_{{\\pm{_fmt((e['ci_high'] - e['ci_low']) / 2, digits)}}}$")
        lines.append(_tex_escape(method) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    import html

    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out) + "</tbody></table>"


def gallery_samples(run_dir: Path, methods: list[str], limit: int = GALLERY_SAMPLES) -> list[str]:
    """Sample ids whose GIF preview exists for every method (the same samples in every column)."""
    from fypbench.scoring import load_run_samples

    ids = [s.id for s in load_run_samples(run_dir)]
    chosen = [sid for sid in ids if all((run_dir / "videos" / m / f"{sid}.gif").is_file() for m in methods)]
    return chosen[:limit]


def to_html(results: dict[str, Any], run_dir: Path, folder: Path) -> str:
    """index.html: header, leaderboard, paired differences and a gallery (pose skeleton beside every method)."""
    import html
    import os

    from fypbench.media import upscale, write_gif
    from fypbench.scoring import load_run_samples
    from fypbench.world.mini.skeleton import draw_keypose_video

    methods = list(results["table"])
    head = ["method"] + [x for _, label, _ in COLUMNS for x in (label, "95% CI")] + ["n"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>fypbench report</title><style>",
             "body{font-family:sans-serif;margin:24px} table{border-collapse:collapse;margin:12px 0}",
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child,th:first-child{text-align:left}",
             ".gallery img{width:128px;height:128px;image-rendering:pixelated} .note{color:#555}</style></head><body>",
             "<h1>fypbench leaderboard</h1>"]
    parts += [f"<p class='note'>{html.escape(line)}</p>" for line in header_lines(results, run_dir)]
    parts.append(_html_table(head, main_rows(results)))
    comparisons = results["paired"].get("comparisons") or {}
    if comparisons:
        parts.append(f"<h2>Paired differences vs {html.escape(str(results['paired']['baseline']))}</h2>")
        rows = [[m] + [("n/a" if not metrics.get(n) else f"{_fmt(metrics[n]['difference'], d)} "
                        f"[{_fmt(metrics[n]['ci_low'], d)}, {_fmt(metrics[n]['ci_high'], d)}]")
                       for n, _, d in COLUMNS] for m, metrics in comparisons.items()]
        parts.append(_html_table(["method"] + [label for _, label, _ in COLUMNS], rows))
    samples = {s.id: s for s in load_run_samples(run_dir)}
    chosen = gallery_samples(run_dir, methods)
    if chosen:
        parts.append("<h2>Gallery (same samples, same seeds, every method)</h2><table class='gallery'><tr><th>sample</th>"
                     "<th>pose</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + "</tr>")
        for sid in chosen:
            sample = samples[sid]
            skeleton = folder / "skeletons" / f"{sid}.gif"
            write_gif(skeleton, upscale(draw_keypose_video(sample.keypoints, 64), 2))
            cells = [f"<td><img alt='pose {sid}' src='skeletons/{sid}.gif'></td>"]
            for m in methods:
                rel = os.path.relpath(run_dir / "videos" / m / f"{sid}.gif", folder)
                cells.append(f"<td><img alt='{html.escape(m)} {sid}' src='{html.escape(rel)}'></td>")
            parts.append(f"<tr><td title='{html.escape(sample.prompt)}'>{sid}<br><small>"
                         f"{html.escape(sample.prompt)}</small></td>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Paper Table 1 (another world: SD 1.4, 512 px, the paper's own definitions; NOT comparable)</h2>")
    parts.append(_html_table(["method", "CS", "PA %", "FC %"],
                             [[m, str(cs), str(pa), str(fc)] for m, (cs, pa, fc) in PAPER_TABLE1.items()]))
    # Broken images are flagged in red and counted in the title, for a person and for the headless-browser test.
    parts.append("<script>window.addEventListener('load',()=>{const bad=[...document.images].filter("
                 "i=>!i.complete||i.naturalWidth===0);bad.forEach(i=>i.style.outline='3px solid red');"
                 "document.title='fypbench report ('+bad.length+' missing images)';});</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def contact_sheet(results: dict[str, Any], run_dir: Path, samples: int = 4, scale: int = 2) -> np.ndarray:
    """One image: for each of the first `samples` run samples, the pose skeleton's frames, then every method's
    frames (the stored lossless videos, the same sample and seed in every row), labelled; nearest-upscaled."""
    from PIL import Image, ImageDraw

    from fypbench.media import upscale
    from fypbench.scoring import load_run_samples
    from fypbench.videos import read_video
    from fypbench.world.mini.skeleton import draw_keypose_video

    methods = list(results["table"])
    chosen = [s for s in load_run_samples(run_dir)
              if all((run_dir / "videos" / m / f"{s.id}.npz").is_file() for m in methods)][:samples]
    if not chosen:
        raise UserError(f"{run_dir}: no sample has a stored video for every method ({', '.join(methods)})")
    label_width, rows, labels = 150, [], []
    for sample in chosen:
        videos = [(m, read_video(run_dir, m, sample.id)) for m in methods]
        size = videos[0][1].shape[1]
        for name, video in [("pose", draw_keypose_video(sample.keypoints, size))] + videos:
            rows.append(np.concatenate(list(upscale(np.asarray(video), scale)), axis=1))
            labels.append(f"{sample.id} {name}" if name == "pose" else f"  {name}")
    width = max(r.shape[1] for r in rows)
    sheet = Image.new("RGB", (label_width + width, sum(r.shape[0] for r in rows)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for row, label in zip(rows, labels):
        sheet.paste(Image.fromarray(row), (label_width, y))
        draw.text((4, y + row.shape[0] // 2 - 6), label, fill="black")
        y += row.shape[0]
    return np.asarray(sheet)


def write_leaderboard(run_dir: str | Path, formats: str = "md,csv,tex", out: str | Path | None = None) -> list[Path]:
    from fypbench.results import read_results

    run_dir = Path(run_dir)
    wanted = [f.strip() for f in formats.split(",") if f.strip()]
    for f in wanted:
        if f not in FORMATS:
            from fypbench.errors import did_you_mean

            raise did_you_mean(f, FORMATS, "leaderboard format")
    if not wanted:
        raise UserError("--format is empty")
    results = read_results(run_dir)
    folder = Path(out) if out is not None else run_dir / "report"
    render = {"md": lambda: to_markdown(results, run_dir), "csv": lambda: to_csv(results),
              "tex": lambda: to_latex(results, run_dir), "html": lambda: to_html(results, run_dir, folder)}
    paths = []
    for f in wanted:
        if f == "png":
            from fypbench.media import write_png

            paths.append(write_png(folder / "contact_sheet.png", contact_sheet(results, run_dir)))
            continue
        path = folder / ("index.html" if f == "html" else f"leaderboard.{f}")
        write_text_atomic(path, render[f]())
        paths.append(path)
    return paths
