"""The committed leaderboards under results/ are what `fypbench leaderboard` renders from the results.json beside
them: no hand edits, and a change to the renderer that would alter them fails here until they are re-rendered
(`fypbench leaderboard RUN --format md,csv,tex --out FOLDER` with RUN/results.json = FOLDER/results.json)."""

import re
from pathlib import Path

import pytest

from fypbench.leaderboard import to_csv, to_latex, to_markdown
from fypbench.results import read_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
FOLDERS = sorted(path.parent for path in RESULTS.rglob("results.json") if (path.parent / "leaderboard.md").is_file())


def test_results_has_committed_leaderboards():
    assert len(FOLDERS) >= 3


@pytest.mark.parametrize("folder", FOLDERS, ids=[str(f.relative_to(RESULTS)) for f in FOLDERS])
def test_committed_tables_are_renderings_of_their_record(folder: Path):
    markdown = (folder / "leaderboard.md").read_text()
    run = re.search(r"^Run: `([^`]+)`", markdown, flags=re.MULTILINE)
    assert run, f"{folder}/leaderboard.md names no run"
    results = read_results(folder)
    assert to_markdown(results, Path(run.group(1))) == markdown
    assert to_csv(results) == (folder / "leaderboard.csv").read_bytes().decode()  # csv writes \r\n
    assert to_latex(results, Path(run.group(1))) == (folder / "leaderboard.tex").read_text()
