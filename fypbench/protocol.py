"""Protocols: named, hashed sets of samples stored as data files.

    fypbench protocol validate fyp-1024

A protocol is a folder:

    protocol.json   name, version, description, base_seed, num_frames, fps, stride, tag vocabulary, hash
    samples.jsonl   one JSON object per line: id, prompt, seed, source, tags
    poses.npz       ids (N,) str, keypoints (N, F, 17, 3) float32, openpose (N, F, 18, 3) float32

Keypoints are COCO-17 (x, y, visibility) with x, y normalised to [0, 1] of the frame's width and height;
visibility is 1 (inside the frame) or 0. Visible keypoints must lie inside [0, 1]; invisible ones must be
finite and within [-1, 2]. The OpenPose-18 form must equal `coco17_to_openpose18(keypoints)`. A sample's seed
must equal `fypbench.seeding.sample_seed(base_seed, id)` (it may be omitted and is then derived).
The hash is a sha256 over the decoded data (canonical JSON of the header and every record, then the float32
keypoint bytes), so it does not depend on file formatting or compression. The format is described for users
in protocols/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fypbench.errors import UserError, did_you_mean
from fypbench.io import atomic_path, write_json_atomic
from fypbench.sample import Sample, coco17_to_openpose18
from fypbench.seeding import sample_seed

FORMAT_VERSION = 1
HEADER_FILE = "protocol.json"
SAMPLES_FILE = "samples.jsonl"
POSES_FILE = "poses.npz"
HEADER_FIELDS = ("name", "version", "format_version", "description", "base_seed", "num_frames", "fps", "stride",
                 "tags", "hash", "num_samples", "builder")
REQUIRED_HEADER_FIELDS = ("name", "base_seed", "num_frames", "fps", "stride", "tags")
RECORD_FIELDS = ("id", "prompt", "seed", "source", "tags")
REQUIRED_RECORD_FIELDS = ("id", "prompt", "tags")
INVISIBLE_RANGE = (-1.0, 2.0)
OPENPOSE_TOLERANCE = 1e-5


@dataclass(frozen=True, eq=False)
class Protocol:
    name: str
    base_seed: int
    num_frames: int
    fps: float
    stride: int
    tags: dict[str, list[str]]
    samples: list[Sample]
    description: str = ""
    version: str = "1"
    builder: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def hash(self) -> str:
        return content_hash(self)

    def header(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "format_version": FORMAT_VERSION,
                "description": self.description, "base_seed": self.base_seed, "num_frames": self.num_frames,
                "fps": self.fps, "stride": self.stride, "tags": self.tags, "num_samples": len(self.samples),
                "builder": self.builder, "hash": self.hash}

    def sample(self, sample_id: str) -> Sample:
        for s in self.samples:
            if s.id == sample_id:
                return s
        raise did_you_mean(sample_id, [s.id for s in self.samples], f"sample of protocol {self.name!r}")

    def __len__(self) -> int:
        return len(self.samples)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def content_hash(protocol: Protocol) -> str:
    digest = hashlib.sha256()
    digest.update(_canonical({"format_version": FORMAT_VERSION, "name": protocol.name,
                              "base_seed": protocol.base_seed, "num_frames": protocol.num_frames,
                              "fps": protocol.fps, "stride": protocol.stride, "tags": protocol.tags}))
    for s in protocol.samples:
        digest.update(_canonical(s.to_record()))
        digest.update(np.ascontiguousarray(s.keypoints, dtype="<f4").tobytes())
        digest.update(np.ascontiguousarray(s.openpose, dtype="<f4").tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- writing


def save_protocol(protocol: Protocol, folder: str | os.PathLike) -> Path:
    """Write the three files atomically (each via a temp file + rename). Validates first."""
    validate_protocol(protocol, where=str(folder))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / SAMPLES_FILE) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for s in protocol.samples:
                fh.write(json.dumps(s.to_record(), sort_keys=True) + "\n")
    with atomic_path(folder / POSES_FILE) as tmp:
        np.savez_compressed(tmp, ids=np.array([s.id for s in protocol.samples]),
                            keypoints=np.stack([s.keypoints for s in protocol.samples]).astype(np.float32),
                            openpose=np.stack([s.openpose for s in protocol.samples]).astype(np.float32))
    write_json_atomic(folder / HEADER_FILE, protocol.header())
    return folder


# ---------------------------------------------------------------------------------------------- reading


def builtin_names() -> list[str]:
    from fypbench.protocols import DATA_DIR

    return sorted(p.name for p in DATA_DIR.iterdir() if (p / HEADER_FILE).is_file())


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A built-in protocol name or a folder holding protocol.json."""
    from fypbench.protocols import DATA_DIR

    path = Path(name_or_path)
    if (path / HEADER_FILE).is_file():
        return path
    if path.is_file() and path.name == HEADER_FILE:
        return path.parent
    if (DATA_DIR / str(name_or_path) / HEADER_FILE).is_file():
        return DATA_DIR / str(name_or_path)
    if path.exists():
        raise UserError(f"{path}: not a protocol folder (no {HEADER_FILE})")
    if len(path.parts) > 1:  # a path, not a name
        raise UserError(f"{path}: protocol folder not found")
    raise did_you_mean(str(name_or_path), builtin_names(), "protocol")


def load_protocol(name_or_path: str | os.PathLike, check_hash: bool = True) -> Protocol:
    """Load and fully validate a protocol; any problem raises a one-line UserError naming file, line, field."""
    folder = resolve(name_or_path)
    header_path = folder / HEADER_FILE
    header = _read_json(header_path)
    _check_header(header, header_path)
    records = _read_records(folder / SAMPLES_FILE)
    poses_path = folder / POSES_FILE
    try:
        with np.load(poses_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise UserError(f"{poses_path}: file is missing") from None
    except Exception as exc:  # zip/npy decoding errors come in many types
        raise UserError(f"{poses_path}: cannot be read ({type(exc).__name__}: {exc})") from None
    for key in ("ids", "keypoints", "openpose"):
        if key not in arrays:
            raise UserError(f"{poses_path}: array {key!r} is missing")
    ids = [str(i) for i in arrays["ids"]]
    if len(ids) != len(records):
        raise UserError(f"{poses_path}: {len(ids)} pose sequences for {len(records)} samples in {SAMPLES_FILE}")
    samples = []
    for index, (line_no, record) in enumerate(records):
        where = f"{folder / SAMPLES_FILE}:{line_no}"
        if ids[index] != record.get("id"):
            raise UserError(f"{poses_path}: ids[{index}] is {ids[index]!r} but {where} has id {record.get('id')!r}")
        samples.append(_sample_from_record(record, arrays["keypoints"][index], arrays["openpose"][index],
                                           header, where))
    protocol = Protocol(name=header["name"], base_seed=int(header["base_seed"]),
                        num_frames=int(header["num_frames"]), fps=float(header["fps"]),
                        stride=int(header["stride"]), tags={k: list(v) for k, v in header["tags"].items()},
                        samples=samples, description=header.get("description", ""),
                        version=str(header.get("version", "1")), builder=header.get("builder", {}),
                        path=folder)
    validate_protocol(protocol, where=str(folder / SAMPLES_FILE))
    if check_hash and "hash" in header and header["hash"] != protocol.hash:
        raise UserError(f"{header_path}: field 'hash' is {header['hash']} but the data hash to "
                        f"{protocol.hash} (the files were changed; rebuild or fix them)")
    if "num_samples" in header and header["num_samples"] != len(samples):
        raise UserError(f"{header_path}: field 'num_samples' is {header['num_samples']} but "
                        f"{SAMPLES_FILE} has {len(samples)} samples")
    return protocol


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file is missing") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object")
    return obj


def _check_header(header: dict[str, Any], path: Path) -> None:
    for key in REQUIRED_HEADER_FIELDS:
        if key not in header:
            raise UserError(f"{path}: field {key!r} is missing")
    unknown = set(header) - set(HEADER_FIELDS)
    if unknown:
        raise UserError(f"{path}: unknown field {sorted(unknown)[0]!r} (known: {', '.join(HEADER_FIELDS)})")
    if not isinstance(header["name"], str) or not header["name"]:
        raise UserError(f"{path}: field 'name' must be a non-empty string")
    for key in ("base_seed", "num_frames", "stride"):
        if not isinstance(header[key], int) or isinstance(header[key], bool) or header[key] < 0:
            raise UserError(f"{path}: field {key!r} must be a non-negative integer, got {header[key]!r}")
    if header["num_frames"] < 1 or header["stride"] < 1:
        raise UserError(f"{path}: fields 'num_frames' and 'stride' must be >= 1")
    if not isinstance(header["fps"], (int, float)) or not math.isfinite(header["fps"]) or header["fps"] <= 0:
        raise UserError(f"{path}: field 'fps' must be a positive number, got {header['fps']!r}")
    tags = header["tags"]
    if not isinstance(tags, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                             for v in tags.values()):
        raise UserError(f"{path}: field 'tags' must map each tag name to a list of allowed values")


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: file is missing") from None
    records = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{line_no}: expected a JSON object")
        for key in REQUIRED_RECORD_FIELDS:
            if key not in obj:
                raise UserError(f"{path}:{line_no}: field {key!r} is missing")
        unknown = set(obj) - set(RECORD_FIELDS)
        if unknown:
            raise UserError(f"{path}:{line_no}: unknown field {sorted(unknown)[0]!r}")
        records.append((line_no, obj))
    if not records:
        raise UserError(f"{path}: no samples")
    return records


def _sample_from_record(record: dict[str, Any], keypoints: np.ndarray, openpose: np.ndarray,
                        header: dict[str, Any], where: str) -> Sample:
    sample_id = record["id"]
    if not isinstance(sample_id, str) or not sample_id or sample_id != sample_id.strip() or "/" in sample_id:
        raise UserError(f"{where}: field 'id' must be a non-empty string without '/' or surrounding spaces")
    seed = record.get("seed")
    if seed is None:
        seed = sample_seed(int(header["base_seed"]), sample_id)
    return Sample(id=sample_id, prompt=record["prompt"], keypoints=np.asarray(keypoints),
                  openpose=np.asarray(openpose), seed=seed, source=record.get("source"),
                  tags=record.get("tags") if isinstance(record.get("tags"), dict) else record.get("tags"))


# ---------------------------------------------------------------------------------------------- validation

SourceValidator = Callable[[dict[str, Any]], None]


def _source_validators() -> dict[str, SourceValidator]:
    from fypbench.world.mini.world import validate_source as mini

    return {"mini": mini}


def validate_protocol(protocol: Protocol, where: str = "") -> None:
    """Counts, shapes, ranges, ids, seeds, tags and sources; raises a one-line UserError."""
    prefix = f"{where}: " if where else ""
    seen: set[str] = set()
    validators: dict[str, SourceValidator] | None = None
    for index, s in enumerate(protocol.samples):
        at = f"{prefix}sample {index} ({s.id!r})"
        if s.id in seen:
            raise UserError(f"{at}: duplicate id {s.id!r}")
        seen.add(s.id)
        if not isinstance(s.prompt, str) or not s.prompt.strip():
            raise UserError(f"{at}: field 'prompt' must be a non-empty string")
        if not isinstance(s.seed, int) or isinstance(s.seed, bool):
            raise UserError(f"{at}: field 'seed' must be an integer")
        expected_seed = sample_seed(protocol.base_seed, s.id)
        if s.seed != expected_seed:
            raise UserError(f"{at}: field 'seed' is {s.seed} but sample_seed(base_seed={protocol.base_seed}, id) "
                            f"is {expected_seed} (omit it to derive it)")
        _check_keypoints(s.keypoints, (protocol.num_frames, 17, 3), "keypoints", at)
        _check_keypoints(s.openpose, (protocol.num_frames, 18, 3), "openpose", at)
        derived = coco17_to_openpose18(s.keypoints.astype(np.float64))
        if np.abs(derived - s.openpose).max() > OPENPOSE_TOLERANCE:
            raise UserError(f"{at}: field 'openpose' does not match coco17_to_openpose18(keypoints)")
        if not isinstance(s.tags, dict):
            raise UserError(f"{at}: field 'tags' must be an object")
        for key, value in s.tags.items():
            if key not in protocol.tags:
                raise UserError(f"{at}: unknown tag {key!r} (declared in protocol.json: "
                                f"{', '.join(sorted(protocol.tags))})")
            if value not in protocol.tags[key]:
                raise UserError(f"{at}: tag {key}={value!r} is not among its declared values")
        if s.source is not None:
            if not isinstance(s.source, dict) or "world" not in s.source:
                raise UserError(f"{at}: field 'source' must be null or an object with a 'world' field")
            validators = validators if validators is not None else _source_validators()
            world = s.source["world"]
            if world not in validators:
                raise UserError(f"{at}: field 'source.world' is {world!r}; known: {', '.join(validators)}")
            try:
                validators[world](s.source)
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{at}: field 'source': {exc}") from None


def _check_keypoints(array: np.ndarray, shape: tuple[int, ...], name: str, at: str) -> None:
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise UserError(f"{at}: field {name!r} must be a float array")
    if array.shape != shape:
        problem = ("wrong frame count" if array.ndim == 3 and array.shape[1:] == shape[1:] else
                   "wrong keypoint count" if array.ndim == 3 and array.shape[0] == shape[0] else "wrong shape")
        raise UserError(f"{at}: field {name!r} has shape {array.shape}, expected {shape} ({problem})")
    if not np.isfinite(array).all():
        frame = int(np.argwhere(~np.isfinite(array))[0][0])
        raise UserError(f"{at}: field {name!r} has NaN/inf values (frame {frame})")
    visibility = array[..., 2]
    if not np.isin(visibility, (0.0, 1.0)).all():
        raise UserError(f"{at}: field {name!r} visibility must be 0 or 1")
    xy = array[..., :2]
    visible = visibility > 0
    outside = visible[..., None] & ((xy < 0.0) | (xy > 1.0))
    if outside.any():
        frame, joint, _ = (int(i) for i in np.argwhere(outside)[0])
        raise UserError(f"{at}: field {name!r} frame {frame} keypoint {joint} is visible but outside [0, 1] "
                        f"({xy[frame, joint].tolist()}); coordinates must be normalised")
    low, high = INVISIBLE_RANGE
    if ((xy < low) | (xy > high)).any():
        frame, joint, _ = (int(i) for i in np.argwhere((xy < low) | (xy > high))[0])
        raise UserError(f"{at}: field {name!r} frame {frame} keypoint {joint} is out of range "
                        f"({xy[frame, joint].tolist()}, allowed [{low}, {high}] for invisible keypoints)")


# ---------------------------------------------------------------------------------------------- builders

BUILDERS: dict[str, str] = {"fyp-1024": "fypbench.world.mini.fyp1024:build"}


def _builder(name: str) -> tuple[Any, str]:
    """The builder module of a built-in protocol and the name of its build function."""
    import importlib

    if name not in BUILDERS:
        raise did_you_mean(name, BUILDERS, "protocol builder")
    module_name, _, attr = BUILDERS[name].partition(":")
    return importlib.import_module(module_name), attr


def write_subsets(name: str, folder: str | os.PathLike) -> None:
    """Write the named subsets a builder defines (its module's `write_subsets`, if any) into folder/subsets/."""
    module, _ = _builder(name)
    if hasattr(module, "write_subsets"):
        module.write_subsets(folder)


def build_protocol(name: str) -> Protocol:
    module, attr = _builder(name)
    return getattr(module, attr)()


SUBSETS_DIR = "subsets"


def subset_names(protocol: Protocol) -> list[str]:
    folder = Path(protocol.path or ".") / SUBSETS_DIR
    return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []


def load_subset(protocol: Protocol, name_or_path: str | os.PathLike) -> tuple[str, list[str]]:
    """A named subset of a protocol: `<protocol folder>/subsets/<name>.txt` (or any such file): one sample id per
    line, `#` comments. Returns (name, ids in file order); unknown or repeated ids are a UserError naming the line."""
    path = Path(name_or_path)
    if not path.is_file():
        candidate = Path(protocol.path or ".") / SUBSETS_DIR / f"{name_or_path}.txt"
        if not candidate.is_file():
            raise did_you_mean(str(name_or_path), subset_names(protocol), f"subset of protocol {protocol.name}")
        path = candidate
    known = {s.id for s in protocol.samples}
    ids: list[str] = []
    seen: set[str] = set()
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text not in known:
            raise UserError(f"{path}:{line_no}: sample id {text!r} is not in protocol {protocol.name}")
        if text in seen:
            raise UserError(f"{path}:{line_no}: sample id {text!r} is listed twice")
        seen.add(text)
        ids.append(text)
    if not ids:
        raise UserError(f"{path}: the subset lists no sample ids")
    return path.stem, ids


def samples_subset(protocol: Protocol, ids: Sequence[str] | None = None, limit: int | None = None) -> list[Sample]:
    samples = protocol.samples if ids is None else [protocol.sample(i) for i in ids]
    return list(samples if limit is None else samples[:limit])


def select_samples(protocol: Protocol, subset: str | os.PathLike | None,
                   limit: int | None) -> tuple[list[Sample], str | None]:
    """The samples a run uses: the protocol's, or a named subset's (`load_subset`), then the first `limit`;
    returns them with the subset's name (None without a subset)."""
    name, ids = load_subset(protocol, subset) if subset else (None, None)
    available = len(ids) if ids is not None else len(protocol.samples)
    if limit is not None and limit > available:
        raise UserError(f"--limit {limit} is more than the {available} samples of "
                        f"{protocol.name}{f' subset {name}' if name else ''}")
    return samples_subset(protocol, ids, limit or None), name
