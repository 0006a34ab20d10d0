"""Named protocol subsets (protocols/<name>/subsets/*.txt) and `fypbench run --subset`."""

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fypbench.errors import UserError
from fypbench.protocol import load_protocol, load_subset, select_samples
from fypbench.world.mini.fyp1024 import dev128_ids

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("fyp-1024")


def test_shipped_dev128_is_its_rule_and_spans_the_protocol(protocol):
    name, ids = load_subset(protocol, "dev128")
    assert name == "dev128" and ids == dev128_ids() and len(ids) == 128
    samples = [protocol.sample(i) for i in ids]
    assert len({json.dumps(s.source["motion"], sort_keys=True) for s in samples}) == 8  # 8 sources (Tune-A-Video)
    assert collections.Counter(s.tags["motion_source"] for s in samples) == {"real": 64, "procedural": 64}
    assert {s.tags["combination"] for s in samples} == {"seen", "unseen"}
    assert "floor" in {s.tags["motion_class"] for s in samples}


def test_subset_then_limit_keeps_the_file_order(protocol, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# a comment\ns08p03\n\ns00p01  # trailing comment\n")
    samples, name = select_samples(protocol, str(path), None)
    assert name == "mine" and [s.id for s in samples] == ["s08p03", "s00p01"]
    samples, _ = select_samples(protocol, str(path), 1)
    assert [s.id for s in samples] == ["s08p03"]


@pytest.mark.parametrize("text, message", [("s00p00\ns99p99\n", r"mine.txt:2: sample id 's99p99' is not in"),
                                           ("s00p00\ns00p00\n", r"mine.txt:2: sample id 's00p00' is listed twice"),
                                           ("# nothing\n", r"mine.txt: the subset lists no sample ids")])
def test_bad_subset_file_is_a_one_line_user_error(protocol, tmp_path, text, message):
    (tmp_path / "mine.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        load_subset(protocol, tmp_path / "mine.txt")


def test_unknown_subset_name_suggests(protocol):
    with pytest.raises(UserError, match="did you mean 'dev128'"):
        load_subset(protocol, "dev12")


def test_run_records_the_subset(tmp_path):
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "fypbench.cli", "run", "--methods", "reference", "--subset",
                             "dev128", "--limit", "2", "--out", str(tmp_path / "run"), "--previews", "0",
                             "--no-score"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["subset"] == "dev128" and record["sample_ids"] == ["s00p00", "s00p01"]
    bad = subprocess.run([sys.executable, "-m", "fypbench.cli", "run", "--methods", "reference", "--subset", "nope",
                          "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert bad.returncode == 2 and "nope" in bad.stderr and not (tmp_path / "bad" / "run.json").exists()
