"""Atomic file writes: write to a temporary file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error removed.

    `suffix` defaults to the target's suffix so writers that choose a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the final file the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def is_temp_file(path: str | os.PathLike) -> bool:
    """True for atomic_path's temporary names (`.{target}.<random>{suffix}`): a killed writer leaves them behind."""
    return Path(path).name.startswith(".")


def temp_files_of(path: str | os.PathLike) -> list[Path]:
    """Temporary files atomic_path made for `path` and a killed writer left behind."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(folder: str | os.PathLike, option: str = "--out") -> Path:
    """A folder that can be created (or written) later, checked before any work: not a file, under a writable
    directory. Creates nothing."""
    from fypbench.errors import UserError

    if not str(folder).strip():
        raise UserError(f"{option} is empty")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder}: exists and is not a directory")
    base = _nearest_existing(folder.absolute())
    if not base.is_dir():
        raise UserError(f"{option} {folder}: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{option} {folder}: {base} is not writable")
    return folder


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] = (), option: str = "--out") -> Path:
    """A file that can be written later, checked before any work: the expected suffix, not a directory, its
    folder creatable under a writable directory. Creates nothing."""
    from fypbench.errors import UserError

    if not str(path).strip():
        raise UserError(f"{option} is empty")
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: expected a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory, expected a file")
    check_output_dir(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path}: is not writable")
    return path


def read_json_object(path: str | os.PathLike, hint: str = "") -> dict[str, Any]:
    """A JSON file holding an object (a record fypbench wrote); a corrupt one is a one-line UserError naming the
    file, followed by `hint` (e.g. how to rebuild it). The caller handles a missing file."""
    from fypbench.errors import UserError

    path = Path(path)
    suffix = f"; {hint}" if hint else ""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: invalid JSON ({error}){suffix}") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: expected a JSON object{suffix}")
    return record


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, busy: str = "", shared: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold an flock on `path` (a file, created if needed, or a folder) for the block, exclusive or shared; when
    another process holds it in a conflicting mode, a one-line UserError `busy` at once, or with `wait`, wait for
    it. Released when the block ends or the process dies."""
    from fypbench.errors import UserError

    flags = os.O_RDONLY if Path(path).is_dir() else os.O_RDWR | os.O_CREAT
    descriptor = os.open(path, flags, 0o666)
    try:
        try:
            fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UserError(busy) from None
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
