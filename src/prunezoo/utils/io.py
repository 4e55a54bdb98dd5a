"""Safe files: atomic writes, recorded checksums, verified reads, quarantine, stale-file cleanup, locks.

Every atomic write (``atomic_path``, ``write_json``, ``write_text``) renames a complete, fsynced
temporary file over its target and then records the file's sha256 in its directory's
``.checksums.json``. Readers (``read_json``, ``verify_file``, ``verify_tree``) compare against it, so a
file truncated or altered after it was written is detected and named instead of being trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("prunezoo")

CHECKSUMS = ".checksums.json"
TMP_SUFFIX = ".tmp"
STAGING_SUFFIX = ".staging"
QUARANTINE = "quarantine"
# Leftovers of an interrupted write: mkstemp files ``.<name>.<random>.tmp`` and mkdtemp directories
# ``.<name>.<random>[.staging]`` (the suffix-less form is what older versions left behind).
_TMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_STAGING_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.staging)?$")


class CorruptFileError(RuntimeError):
    """A file prunezoo wrote earlier is unreadable or differs from its recorded checksum."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"corrupt file {self.path}: {reason}")


# -- writing --------------------------------------------------------------------------------------
def current_umask() -> int:
    # /proc avoids os.umask's set-and-restore, which races with threads creating files meanwhile.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, *, checksum: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the same directory; on success rename it over ``path``.

    The file gets the mode a plain ``open(path, "w")`` would (0666 minus the umask; mkstemp alone
    would make it 0600). ``checksum`` records its sha256 in the directory's ``.checksums.json``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            # After the writer: some (safetensors) replace the file, so an early chmod would be lost.
            if hasattr(os, "fchmod"):  # POSIX; elsewhere files get the platform's default
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            os.fsync(fh.fileno())
        digest = sha256_file(tmp_path) if checksum else None
        os.replace(tmp_path, path)
        # Recorded after the rename: a kill in between leaves a complete file that is merely unrecorded.
        if digest is not None:
            _update_checksums(path.parent, {path.name: digest})
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | Path, obj: Any, *, checksum: bool = True) -> None:
    with atomic_path(path, checksum=checksum) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable))


def write_text(path: str | Path, text: str, *, checksum: bool = True) -> None:
    with atomic_path(path, checksum=checksum) as tmp:
        tmp.write_text(text)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# -- checksums and verified reads -----------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recorded_checksums(directory: str | Path) -> dict[str, str]:
    """``{file name: sha256}`` recorded for ``directory`` (empty if none or unreadable)."""
    try:
        data = json.loads((Path(directory) / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _update_checksums(directory: Path, entries: dict[str, str]) -> None:
    with file_lock(directory):  # read-modify-write: concurrent writers in one directory must not lose entries
        sums = recorded_checksums(directory) | entries
        with atomic_path(directory / CHECKSUMS, checksum=False) as tmp:
            tmp.write_text(json.dumps(sums, indent=1, sort_keys=True))


def verify_file(path: str | Path) -> None:
    """Raise :class:`CorruptFileError` if ``path`` differs from its recorded checksum (unrecorded
    files pass; a missing file raises FileNotFoundError as usual)."""
    path = Path(path)
    expected = recorded_checksums(path.parent).get(path.name)
    if expected is None:
        path.stat()  # FileNotFoundError for a missing file, like any reader
        return
    check_sha256(path, expected)


def check_sha256(path: Path, expected: str) -> None:
    found = sha256_file(path)
    if found != expected:
        raise CorruptFileError(
            path, f"sha256 {found[:12]}… ({path.stat().st_size} bytes) differs from the recorded {expected[:12]}…"
        )


def read_json(path: str | Path) -> Any:
    """Parse a JSON file after checking its recorded checksum; damage raises CorruptFileError."""
    verify_file(path)
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptFileError(path, f"not valid JSON ({err})") from None


def check_readable(path: Path) -> None:
    """Checksum, then (for unrecorded files) a full parse of the formats prunezoo writes."""
    verify_file(path)
    if path.name in recorded_checksums(path.parent):
        return
    if path.suffix == ".json":
        try:
            read_json(path)
        except CorruptFileError:
            lines = path.read_text(errors="replace").splitlines()
            try:  # JSON lines (a zoo's result.json)
                for line in filter(str.strip, lines):
                    json.loads(line)
            except ValueError:
                raise CorruptFileError(path, "not valid JSON") from None
            if not lines:
                raise
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            load_file(str(path))
        except Exception as err:  # safetensors raises its own error type for torn files
            raise CorruptFileError(path, f"unreadable safetensors ({err})") from None


def verify_tree(root: str | Path, skip: Callable[[Path], bool] = lambda _d: False) -> list[CorruptFileError]:
    """Check every JSON/safetensors file under ``root`` (and every file with a recorded checksum);
    returns the problems found. Directories for which ``skip`` is true, quarantine folders and
    staging leftovers are not entered."""
    problems = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if n != QUARANTINE and not n.startswith(".") and not skip(d / n))
        recorded = recorded_checksums(d)
        for name in sorted(filenames):
            if name.startswith(".") or not (name in recorded or name.endswith((".json", ".safetensors"))):
                continue
            try:
                check_readable(d / name)
            except CorruptFileError as err:
                problems.append(err)
            except FileNotFoundError:
                pass  # removed meanwhile
    return problems


def quarantine(path: str | Path, reason: str = "", into: str | Path | None = None) -> Path:
    """Move a bad file or directory to ``<into or its directory>/quarantine/`` (kept for inspection,
    out of every reader's way); logs a warning naming it. Returns the new location."""
    path = Path(path)
    base = Path(into) if into is not None else path.parent
    folder = base / QUARANTINE
    folder.mkdir(parents=True, exist_ok=True)
    rel = path.relative_to(base) if path.is_relative_to(base) else Path(path.name)
    stem = "__".join(rel.parts)
    dest = folder / f"{stem}.{time.strftime('%Y%m%dT%H%M%S')}"
    n = 0
    while dest.exists():
        n += 1
        dest = folder / f"{stem}.{time.strftime('%Y%m%dT%H%M%S')}.{n}"
    os.replace(path, dest)
    log.warning("quarantined %s -> %s%s", path, dest, f": {reason}" if reason else "")
    return dest


def clean_staging(root: str | Path) -> list[Path]:
    """Remove what interrupted writes left under ``root``: ``.*.tmp`` files and staging directories.
    Only call it while no other process writes there (under the job or study lock)."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in list(dirnames):
            if _STAGING_RE.match(name):
                shutil.rmtree(d / name, ignore_errors=True)
                dirnames.remove(name)
                removed.append(d / name)
        for name in filenames:
            if _TMP_RE.match(name):
                with contextlib.suppress(FileNotFoundError):
                    (d / name).unlink()
                    removed.append(d / name)
    return removed


def remove_tree(path: str | Path) -> None:
    """Delete a directory so that it is either intact or gone: it is renamed to a staging name
    first, and a deletion cut short leaves only that (cleaned later by :func:`clean_staging`)."""
    path = Path(path)
    if not path.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=STAGING_SUFFIX, dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


# -- locks ----------------------------------------------------------------------------------------
_warned_no_lock = False


@contextlib.contextmanager
def file_lock(path: str | Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (a lock file, created if needed, or a directory).

    The kernel releases it when the holder exits, even by SIGKILL, so a dead holder never blocks
    anyone. If another process holds it, ``on_wait`` is told (with the holder's pid when known) and
    this call waits. Without fcntl (not POSIX) or on a filesystem without flock this runs unlocked,
    with a warning.
    """
    global _warned_no_lock
    path = Path(path)
    try:
        import fcntl

        have_fcntl = True
    except ImportError:  # pragma: no cover - Windows
        have_fcntl = False
    if not have_fcntl:  # pragma: no cover - Windows
        if not _warned_no_lock:
            warnings.warn("no fcntl on this platform: runs sharing an output directory are not locked", stacklevel=3)
            _warned_no_lock = True
        yield
        return
    is_dir = path.is_dir()
    fd = os.open(path, os.O_RDONLY) if is_dir else os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                holder = "" if is_dir else os.pread(fd, 64, 0).decode(errors="replace").strip()
                on_wait(f"{path} is locked by another process{f' (pid {holder})' if holder else ''}; waiting")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as err:  # e.g. ENOLCK on some network filesystems
            if not _warned_no_lock:
                warnings.warn(f"cannot lock {path} ({err}); continuing unlocked", stacklevel=3)
                _warned_no_lock = True
        if not is_dir:  # who holds it, for the message above
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
