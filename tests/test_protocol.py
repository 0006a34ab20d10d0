import json
import shutil

import numpy as np
import pytest

from fypbench.cli import main
from fypbench.errors import UserError
from fypbench.protocol import Protocol, load_protocol, save_protocol
from fypbench.sample import Sample, coco17_to_openpose18
from fypbench.seeding import sample_seed

FRAMES = 3


def _keypoints(rng):
    kp = rng.uniform(0.1, 0.9, size=(FRAMES, 17, 3)).astype(np.float32)
    kp[..., 2] = 1.0
    return kp


def tiny_protocol(n=4) -> Protocol:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        kp = _keypoints(rng)
        samples.append(Sample(id=f"x{i}", prompt=f"prompt {i}", keypoints=kp,
                              openpose=coco17_to_openpose18(kp).astype(np.float32),
                              seed=sample_seed(7, f"x{i}"), tags={"kind": "a" if i % 2 else "b"}))
    return Protocol(name="tiny", base_seed=7, num_frames=FRAMES, fps=7.5, stride=4, tags={"kind": ["a", "b"]},
                    samples=samples)


@pytest.fixture
def saved(tmp_path):
    return save_protocol(tiny_protocol(), tmp_path / "tiny")


def test_round_trip_keeps_hash(saved):
    loaded = load_protocol(saved)
    assert loaded.hash == tiny_protocol().hash
    assert [s.id for s in loaded.samples] == ["x0", "x1", "x2", "x3"]
    np.testing.assert_array_equal(loaded.samples[2].keypoints, tiny_protocol().samples[2].keypoints)


def test_hash_depends_on_data():
    a, b = tiny_protocol(), tiny_protocol()
    b.samples[1].keypoints[0, 0, 0] += 1e-3
    assert a.hash != b.hash


def _rewrite_records(folder, edit):
    path = folder / "samples.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    edit(records)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _rewrite_poses(folder, edit):
    with np.load(folder / "poses.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    np.savez_compressed(folder / "poses.npz", **arrays)


BAD_RECORDS = {
    "missing field": (lambda r: r[1].pop("prompt"), "samples.jsonl:2: field 'prompt' is missing"),
    "duplicate id": (lambda r: r[2].update(id="x1"), "ids[2] is 'x2'"),
    "unknown tag": (lambda r: r[0].update(tags={"colour": "red"}), "unknown tag 'colour'"),
    "unknown tag value": (lambda r: r[0].update(tags={"kind": "zzz"}), "tag kind='zzz'"),
    "wrong seed": (lambda r: r[0].update(seed=5), "field 'seed' is 5"),
    "unknown field": (lambda r: r[3].update(extra=1), "samples.jsonl:4: unknown field 'extra'"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_records_are_one_line_errors(saved, case, capsys):
    edit, message = BAD_RECORDS[case]
    _rewrite_records(saved, edit)
    with pytest.raises(UserError, match=None) as info:
        load_protocol(saved, check_hash=False)
    assert message in str(info.value)
    assert main(["protocol", "validate", str(saved)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_duplicate_ids_in_both_files(saved):
    _rewrite_records(saved, lambda r: r[2].update(id="x1", seed=sample_seed(7, "x1")))
    _rewrite_poses(saved, lambda a: a.update(ids=np.array(["x0", "x1", "x1", "x3"])))
    with pytest.raises(UserError, match="duplicate id 'x1'"):
        load_protocol(saved, check_hash=False)


def _set(key, fn):
    def edit(arrays):
        arrays[key] = fn(arrays[key].copy())
    return edit


def _nan(a):
    a[1, 0, 2, 0] = np.nan
    return a


def _pixels(a):
    a[0, 0, 3, :2] = [312.0, 40.0]
    return a


BAD_POSES = {
    "wrong keypoint count": (_set("keypoints", lambda a: a[:, :, :16]), "wrong keypoint count"),
    "wrong frame count": (_set("keypoints", lambda a: a[:, :2]), "wrong frame count"),
    "nan": (_set("keypoints", _nan), "NaN/inf"),
    "out of range": (_set("keypoints", _pixels), "outside [0, 1]"),
    "missing array": (lambda a: a.pop("openpose"), "array 'openpose' is missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_POSES))
def test_bad_poses_are_one_line_errors(saved, case):
    edit, message = BAD_POSES[case]
    _rewrite_poses(saved, edit)
    with pytest.raises(UserError) as info:
        load_protocol(saved, check_hash=False)
    assert message in str(info.value)


def test_edited_data_fails_the_hash(saved):
    _rewrite_records(saved, lambda r: r[0].update(prompt="something else"))
    with pytest.raises(UserError, match="field 'hash'"):
        load_protocol(saved)


def test_save_refuses_invalid_protocol_and_writes_nothing(tmp_path):
    bad = tiny_protocol()
    bad.samples[0].keypoints[0, 0, 0] = np.inf
    with pytest.raises(UserError):
        save_protocol(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_unknown_protocol_name_suggests(capsys):
    assert main(["protocol", "validate", "fyp-1204"]) == 2
    assert "did you mean 'fyp-1024'" in capsys.readouterr().err


def test_seed_is_derived_when_omitted(saved):
    _rewrite_records(saved, lambda r: [x.pop("seed") for x in r])
    loaded = load_protocol(saved)
    assert loaded.samples[3].seed == sample_seed(7, "x3")
