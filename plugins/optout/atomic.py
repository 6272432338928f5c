"""Write files and folders so a reader sees either the old content or the whole new one.

Everything is written beside its destination (same filesystem), flushed, then renamed into place.
Files are created owner-only: they may hold NHS numbers or data about patients.

Temporary entries are hidden dot-names carrying the writer's pid (``.name.<pid>.xxxx.staging``); a
process killed mid-way (``kill -9``) leaves them behind, and the next write to the same destination
removes those whose process is gone. A folder is swapped in with one atomic exchange (Linux
``renameat2``), so a reader never finds the destination missing, even after a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIR = 0o700
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[object]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, OWNER_ONLY_FILE)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path, "wb") as handle:
        handle.write(data)  # type: ignore[attr-defined]


@contextlib.contextmanager
def staging_dir(final: str | Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``final``; yield it, then swap it into place whole.

    An existing ``final`` is replaced only after everything was written; on any error the staging
    folder is removed and ``final`` is left as it was.
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".staging", dir=target.parent))
    os.chmod(staging, OWNER_ONLY_DIR)
    try:
        yield staging
        publish_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish_dir(staging: Path, target: Path) -> None:
    """Move a finished folder into place: exchanged with the old one in one step, which is then deleted."""
    if target.exists() and _exchange(staging, target):
        _fsync_dir(target.parent)
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old folder
        return
    old = None
    if target.exists():  # no atomic exchange here: rename the old one away first
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
    os.replace(staging, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(target: Path) -> int:
    """Delete temporary entries for ``target`` left by writers that died; return how many."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.(?:.+\.(?:tmp|staging)|old)$")
    removed = 0
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match and not _alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}:
        return False
    raise OSError(code, os.strerror(code), str(second))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
