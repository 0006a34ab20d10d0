"""The stored-video format: round trip, done marker, atomic writes and the integrity check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fypbench import videos
from fypbench.videos import integrity_check, is_done, read_meta, read_video, video_paths, write_video

META = {"config_hash": "abc123", "seed": 7, "timings": {"generate_s": 0.5}}


def _frames(num_frames: int = 4, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)


def test_round_trip_meta_and_previews(tmp_path):
    frames = _frames()
    record = write_video(tmp_path, "fyp", "s0", frames, META)
    np.testing.assert_array_equal(read_video(tmp_path, "fyp", "s0"), frames)
    paths = video_paths(tmp_path, "fyp", "s0")
    assert all(path.is_file() for path in paths.values())
    meta = read_meta(tmp_path, "fyp", "s0")
    assert meta == record
    assert (meta["method"], meta["sample_id"], meta["seed"], meta["config_hash"]) == ("fyp", "s0", 7, "abc123")
    assert (meta["num_frames"], meta["height"], meta["width"]) == (4, 16, 16)
    assert meta["frames_sha256"] == videos.frames_sha256(frames) and meta["timings"] == {"generate_s": 0.5}
    assert is_done(tmp_path, "fyp", "s0") and not is_done(tmp_path, "fyp", "s1")
    assert videos.stored_methods(tmp_path) == ["fyp"] and videos.stored_sample_ids(tmp_path, "fyp") == ["s0"]
    assert not [p for p in paths["frames"].parent.iterdir() if p.name.startswith(".")]


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path, "fyp", "s0", _frames().astype(np.float32), META)
    with pytest.raises(ValueError, match="NaN"):
        write_video(tmp_path, "fyp", "s0", np.full((2, 4, 4, 3), np.nan), META)
    with pytest.raises(ValueError, match="lacks seed"):
        write_video(tmp_path, "fyp", "s0", _frames(), {"config_hash": "x"})
    with pytest.raises(ValueError, match="derived field"):
        write_video(tmp_path, "fyp", "s0", _frames(), {**META, "frames_sha256": "forged"})
    with pytest.raises(ValueError, match="file name"):
        write_video(tmp_path, "fyp", "../escape", _frames(), META)
    assert not (tmp_path / "videos").exists() or not any((tmp_path / "videos").rglob("*.npz"))


def test_integrity_check_reports_each_problem(tmp_path):
    ids = ["ok", "truncated", "short", "missing", "tampered", "small", "interrupted"]
    for sample_id in ids:
        if sample_id == "missing":
            continue
        num_frames = 3 if sample_id == "short" else 4
        size = 8 if sample_id == "small" else 16
        write_video(tmp_path, "fyp", sample_id, _frames(num_frames, size), META, previews=False)
    truncated = video_paths(tmp_path, "fyp", "truncated")["frames"]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    tampered = video_paths(tmp_path, "fyp", "tampered")["frames"]
    with open(tampered, "wb") as handle:
        np.savez_compressed(handle, frames=_frames(seed=9))
    video_paths(tmp_path, "fyp", "interrupted")["meta"].unlink()

    coverage = integrity_check(tmp_path, ["fyp", "other"], ids, num_frames=4, size=(16, 16))
    kinds = {p.sample_id: p.kind for p in coverage.methods["fyp"].problems}
    assert kinds == {"truncated": "corrupt", "short": "wrong_frame_count", "missing": "missing",
                     "tampered": "hash_mismatch", "small": "wrong_size", "interrupted": "incomplete"}
    assert coverage.ok_ids("fyp") == ["ok"]
    counts = coverage.counts()
    assert counts["fyp"]["expected"] == 7 and counts["fyp"]["ok"] == 1 and counts["fyp"]["corrupt"] == 1
    assert counts["other"]["missing"] == 7 and not coverage.complete
    assert "truncated: corrupt" in coverage.summary()
    with pytest.raises(ValueError, match="undecodable"):
        read_video(tmp_path, "fyp", "truncated")
    with pytest.raises(ValueError, match="sha256"):
        read_video(tmp_path, "fyp", "tampered")

    deleted = coverage.delete_bad(tmp_path)
    assert {p.sample_id for p in deleted} == {"truncated", "short", "tampered", "small", "interrupted"}
    assert not any(path.exists() for path in video_paths(tmp_path, "fyp", "truncated").values())
    again = integrity_check(tmp_path, ["fyp"], ids, num_frames=4, size=(16, 16))
    assert {p.kind for p in again.problems} == {"missing"} and again.ok_ids("fyp") == ["ok"]


def test_non_uint8_or_non_finite_stored_frames_are_reported(tmp_path):
    write_video(tmp_path, "fyp", "floaty", _frames(), META, previews=False)
    write_video(tmp_path, "fyp", "nan", _frames(), META, previews=False)
    for sample_id, array in (("floaty", _frames().astype(np.float32)), ("nan", np.full((4, 16, 16, 3), np.nan))):
        path = video_paths(tmp_path, "fyp", sample_id)
        with open(path["frames"], "wb") as handle:
            np.savez_compressed(handle, frames=array)
        meta = json.loads(path["meta"].read_text())
        meta["frames_sha256"] = videos.frames_sha256(array)
        path["meta"].write_text(json.dumps(meta))
    coverage = integrity_check(tmp_path, ["fyp"], ["floaty", "nan"])
    assert {p.sample_id: p.kind for p in coverage.problems} == {"floaty": "wrong_dtype", "nan": "non_finite"}


def test_an_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    write_video(tmp_path, "fyp", "s0", _frames(seed=1), META, previews=False)
    before = video_paths(tmp_path, "fyp", "s0")["frames"].read_bytes()

    def crash_midway(handle, **arrays):
        handle.write(b"PK\x03\x04 partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(videos.np, "savez_compressed", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path, "fyp", "s0", _frames(seed=2), META, previews=False)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path, "fyp", "s1", _frames(seed=2), META, previews=False)
    folder = video_paths(tmp_path, "fyp", "s0")["frames"].parent
    assert sorted(p.name for p in folder.iterdir()) == ["s0.npz"]  # no temp file, no s1, no stale meta
    assert video_paths(tmp_path, "fyp", "s0")["frames"].read_bytes() == before
    assert not is_done(tmp_path, "fyp", "s0")  # a rewrite removes the done marker first
    assert integrity_check(tmp_path, ["fyp"], ["s0", "s1"]).counts()["fyp"]["incomplete"] == 1


def test_a_rewrite_removes_the_temp_files_a_killed_writer_left(tmp_path):
    # SIGKILL skips atomic_path's cleanup: its temp files stay until the sample is written again
    folder = video_paths(tmp_path, "fyp", "s1")["frames"].parent
    folder.mkdir(parents=True)
    left_behind = [folder / ".s1.npz.k1ll3d.npz", folder / ".s1.json.abcd.json", folder / ".s1.gif.x.gif"]
    other_sample = folder / ".s10.npz.k1ll3d.npz"  # another sample's (maybe live) temp file is not touched
    for path in [*left_behind, other_sample]:
        path.write_bytes(b"PK partial")
    write_video(tmp_path, "fyp", "s1", _frames(), META, previews=False)
    assert sorted(p.name for p in folder.iterdir()) == [".s10.npz.k1ll3d.npz", "s1.json", "s1.npz"]
