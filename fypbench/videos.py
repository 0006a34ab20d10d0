"""Stored videos: the artefact shared by the runner (writes) and the scoring stage (reads).

    python -c "import numpy as np; from fypbench.videos import write_video, read_video; write_video('/tmp/run', 'm', 's0', np.zeros((8, 64, 64, 3), np.uint8), {'config_hash': 'x', 'seed': 0}); print(read_video('/tmp/run', 'm', 's0').shape)"

Layout, per (method, sample) under RUN_DIR/videos/<method>/:
  <sample>.npz   lossless uint8 frames (F, H, W, 3), key "frames", zip-compressed; metrics read only these
  <sample>.mp4   preview (H.264, lossy; never scored)
  <sample>.gif   preview (never scored)
  <sample>.json  meta: method, sample id, config hash, seed, timings, frame count and size, sha256 of the
                 frames; written LAST, so its presence is the "done" marker.
Every file is written atomically (temporary file + rename), so an interrupted write leaves either the old
state or nothing, never a partial file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fypbench.io import atomic_path, is_temp_file, temp_files_of, write_json_atomic

VIDEO_FORMAT_VERSION = 1
VIDEOS_DIR = "videos"
REQUIRED_META_KEYS = ("config_hash", "seed")
# meta fields filled by write_video; a caller's meta may not set them
DERIVED_META_KEYS = ("format_version", "method", "sample_id", "num_frames", "height", "width", "frames_sha256",
                     "previews")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

PROBLEM_KINDS = ("missing", "incomplete", "corrupt", "hash_mismatch", "wrong_dtype", "non_finite",
                 "wrong_frame_count", "wrong_size")


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or value.endswith(".tmp"):
        raise ValueError(f"{what} {value!r} cannot be used as a file name (letters, digits, '.', '_', '+', '-')")
    return value


def video_paths(run_dir: str | os.PathLike, method: str, sample_id: str) -> dict[str, Path]:
    """The four files of one stored video: frames (npz), meta (json), mp4 and gif previews."""
    folder = Path(run_dir) / VIDEOS_DIR / _check_name(method, "method name")
    stem = _check_name(sample_id, "sample id")
    return {"frames": folder / f"{stem}.npz", "meta": folder / f"{stem}.json",
            "mp4": folder / f"{stem}.mp4", "gif": folder / f"{stem}.gif"}


def frames_sha256(frames: np.ndarray) -> str:
    """sha256 over the shape, the dtype and the C-order bytes of the frames."""
    frames = np.ascontiguousarray(frames)
    digest = hashlib.sha256(f"{tuple(frames.shape)}|{frames.dtype.str}|".encode("ascii"))
    digest.update(frames.tobytes())
    return digest.hexdigest()


def validate_frames(frames: Any, what: str = "frames") -> np.ndarray:
    """A video must be a uint8 (F, H, W, 3) array with F >= 1; raises ValueError (one line) otherwise."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"{what}: expected a numpy uint8 array (F, H, W, 3), got {type(frames).__name__}")
    if frames.dtype.kind == "f" and not np.isfinite(frames).all():
        raise ValueError(f"{what}: contains NaN/inf pixels ({frames.dtype}); a video must be finite uint8")
    if frames.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8 (0-255), got {frames.dtype}; convert explicitly, "
                         "e.g. (x * 255).round().clip(0, 255).astype(np.uint8) for [0, 1] floats")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: expected shape (F, H, W, 3), got {frames.shape}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"{what}: empty video, shape {frames.shape}")
    return frames


def write_video(run_dir: str | os.PathLike, method: str, sample_id: str, frames: np.ndarray,
                meta: Mapping[str, Any], previews: bool = True, fps: float = 8.0) -> dict[str, Any]:
    """Store one generated video; returns the meta record written.

    `meta` must hold `config_hash` and `seed` and may add anything JSON-serialisable (timings, hardware...).
    Frames first, then the previews, then the meta record (the done marker).
    """
    frames = validate_frames(frames, f"video {method}/{sample_id}")
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"video meta for {method}/{sample_id} lacks {', '.join(missing)}")
    clashing = [k for k in DERIVED_META_KEYS if k in meta]
    if clashing:
        raise ValueError(f"video meta for {method}/{sample_id} sets derived field(s) {', '.join(clashing)}")
    paths = video_paths(run_dir, method, sample_id)
    # a rewrite first removes the done marker, so a crash mid-rewrite never pairs new frames with old meta
    paths["meta"].unlink(missing_ok=True)
    remove_stale_temp_files(paths)
    with atomic_path(paths["frames"]) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, frames=frames)
    written_previews: list[str] = []
    if previews:
        from fypbench.media import write_gif, write_mp4

        write_mp4(paths["mp4"], frames, fps=fps)
        write_gif(paths["gif"], frames, fps=fps)
        written_previews = [paths["mp4"].name, paths["gif"].name]
    record = {**dict(meta), "format_version": VIDEO_FORMAT_VERSION, "method": method, "sample_id": sample_id,
              "num_frames": int(frames.shape[0]), "height": int(frames.shape[1]), "width": int(frames.shape[2]),
              "frames_sha256": frames_sha256(frames), "previews": written_previews}
    write_json_atomic(paths["meta"], record)
    return record


def remove_stale_temp_files(paths: Mapping[str, Path]) -> None:
    """Delete the temp files a killed writer left beside this video's files (see atomic_path).

    Done here, by the sample's owner, not inside atomic_path: only the process that owns a sample writes it (shards
    split by sample), so this never races a live writer, while shared files (metrics.json) have several writers.
    """
    for path in paths.values():
        for stale in temp_files_of(path):
            stale.unlink(missing_ok=True)


def is_done(run_dir: str | os.PathLike, method: str, sample_id: str) -> bool:
    """The runner's resume test: the meta record (written last) exists."""
    return video_paths(run_dir, method, sample_id)["meta"].is_file()


def read_meta(run_dir: str | os.PathLike, method: str, sample_id: str) -> dict[str, Any]:
    path = video_paths(run_dir, method, sample_id)["meta"]
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no stored video (meta record missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: unreadable meta record ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: meta record is not a JSON object")
    return record


def _load_frames(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            frames = archive["frames"] if "frames" in names else None
    except FileNotFoundError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, ValueError) as error:
        raise ValueError(f"{path}: undecodable frames ({type(error).__name__}: {error})") from None
    if frames is None:
        raise ValueError(f"{path}: no 'frames' array (has {', '.join(names) or 'nothing'})")
    return frames


def read_video(run_dir: str | os.PathLike, method: str, sample_id: str, verify: bool = True) -> np.ndarray:
    """The stored uint8 (F, H, W, 3) frames; with `verify`, checked against the meta record's sha256."""
    paths = video_paths(run_dir, method, sample_id)
    meta = read_meta(run_dir, method, sample_id)
    frames = _load_frames(paths["frames"])
    validate_frames(frames, str(paths["frames"]))
    if verify and frames_sha256(frames) != meta.get("frames_sha256"):
        raise ValueError(f"{paths['frames']}: frames do not match the sha256 in {paths['meta'].name}")
    return frames


def stored_methods(run_dir: str | os.PathLike) -> list[str]:
    folder = Path(run_dir) / VIDEOS_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def stored_sample_ids(run_dir: str | os.PathLike, method: str) -> list[str]:
    """Sample ids with a done marker (meta record) for `method`."""
    folder = Path(run_dir) / VIDEOS_DIR / _check_name(method, "method name")
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not is_temp_file(p))


@dataclass(frozen=True)
class VideoProblem:
    method: str
    sample_id: str
    kind: str  # one of PROBLEM_KINDS
    detail: str


@dataclass
class MethodCoverage:
    expected: int
    ok: list[str] = field(default_factory=list)
    problems: list[VideoProblem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {"expected": self.expected, "ok": len(self.ok)}
        for kind in PROBLEM_KINDS:
            counts[kind] = sum(1 for p in self.problems if p.kind == kind)
        return counts


@dataclass
class Coverage:
    """The integrity report of a run: per method, which expected videos are usable and what is wrong."""

    methods: dict[str, MethodCoverage]

    @property
    def problems(self) -> list[VideoProblem]:
        return [p for cov in self.methods.values() for p in cov.problems]

    @property
    def complete(self) -> bool:
        return not self.problems

    def ok_ids(self, method: str) -> list[str]:
        return list(self.methods[method].ok)

    def counts(self) -> dict[str, dict[str, int]]:
        return {method: cov.counts() for method, cov in self.methods.items()}

    def summary(self) -> str:
        """A plain-text table: one line per method, then one line per problem (at most 20 per method)."""
        header = ["method", "expected", "ok", *PROBLEM_KINDS]
        lines = ["  ".join(header)]
        for method, cov in self.methods.items():
            counts = cov.counts()
            lines.append("  ".join([method, *(str(counts[k]) for k in header[1:])]))
        for method, cov in self.methods.items():
            for problem in cov.problems[:20]:
                lines.append(f"{method}/{problem.sample_id}: {problem.kind}: {problem.detail}")
            if len(cov.problems) > 20:
                lines.append(f"{method}: ... {len(cov.problems) - 20} more problems")
        return "\n".join(lines)

    def delete_bad(self, run_dir: str | os.PathLike, kinds: Sequence[str] | None = None) -> list[VideoProblem]:
        """Remove every file of the broken entries (not the missing ones) so the runner regenerates them."""
        kinds = tuple(kinds) if kinds is not None else tuple(k for k in PROBLEM_KINDS if k != "missing")
        deleted = []
        for problem in self.problems:
            if problem.kind in kinds and problem.kind != "missing":
                for path in video_paths(run_dir, problem.method, problem.sample_id).values():
                    path.unlink(missing_ok=True)
                deleted.append(problem)
        return deleted


def check_stored_video(run_dir: str | os.PathLike, method: str, sample_id: str, num_frames: int | None = None,
                       size: tuple[int, int] | None = None) -> VideoProblem | None:
    """The first problem found with one stored video, or None if it is usable."""
    paths = video_paths(run_dir, method, sample_id)

    def problem(kind: str, detail: str) -> VideoProblem:
        return VideoProblem(method, sample_id, kind, detail)

    if not paths["meta"].is_file():
        if paths["frames"].is_file():
            return problem("incomplete", "frames without meta record (interrupted write)")
        return problem("missing", "no stored video")
    try:
        meta = read_meta(run_dir, method, sample_id)
    except ValueError as error:
        return problem("corrupt", str(error))
    if not paths["frames"].is_file():
        return problem("corrupt", f"meta record without {paths['frames'].name}")
    try:
        frames = _load_frames(paths["frames"])
    except ValueError as error:
        return problem("corrupt", str(error))
    if frames.dtype.kind == "f" and not np.isfinite(frames).all():
        return problem("non_finite", f"NaN/inf pixels ({frames.dtype})")
    if frames.dtype != np.uint8:
        return problem("wrong_dtype", f"dtype {frames.dtype}, expected uint8")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        return problem("corrupt", f"shape {frames.shape}, expected (F, H, W, 3)")
    if frames_sha256(frames) != meta.get("frames_sha256"):
        return problem("hash_mismatch", "frames differ from the sha256 in the meta record")
    if num_frames is not None and frames.shape[0] != num_frames:
        return problem("wrong_frame_count", f"{frames.shape[0]} frames, expected {num_frames}")
    if size is not None and tuple(frames.shape[1:3]) != tuple(size):
        return problem("wrong_size", f"{frames.shape[1]}x{frames.shape[2]}, expected {size[0]}x{size[1]}")
    return None


def integrity_check(run_dir: str | os.PathLike, methods: Sequence[str], samples: Sequence[Any],
                    num_frames: int | Mapping[str, int] | None = None,
                    size: tuple[int, int] | None = None) -> Coverage:
    """Check every expected (method, sample) video before scoring.

    samples: sample ids or objects with `.id` (and `.num_frames`, used when `num_frames` is None).
    num_frames: one count for all samples, a mapping sample id -> count, or None (from the samples if they
    carry it, else not checked). size: (height, width) or None (not checked).
    """
    coverage: dict[str, MethodCoverage] = {}
    ids = [s if isinstance(s, str) else s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError("integrity_check: duplicate sample ids")

    def expected_frames(index: int) -> int | None:
        if isinstance(num_frames, Mapping):
            return int(num_frames[ids[index]])
        if num_frames is not None:
            return int(num_frames)
        return getattr(samples[index], "num_frames", None)

    for method in methods:
        cov = MethodCoverage(expected=len(ids))
        for index, sample_id in enumerate(ids):
            found = check_stored_video(run_dir, method, sample_id, expected_frames(index), size)
            if found is None:
                cov.ok.append(sample_id)
            else:
                cov.problems.append(found)
        coverage[method] = cov
    return Coverage(coverage)


def remove_video(run_dir: str | os.PathLike, method: str, sample_id: str) -> None:
    for path in video_paths(run_dir, method, sample_id).values():
        path.unlink(missing_ok=True)
