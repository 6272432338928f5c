"""Hashed cohorts kept on disk, one per list version and key: a pseudonymised run hashes no cohort twice.

Hashing a cohort of five million numbers with the key takes seconds on every run that meets a
pseudonymised table, and every Airflow task is a new process. The hashed cohort of the newest version
is therefore kept in the data folder (owner-only, like the store, whose cohort and cleared set it holds,
keyed): the file's name is a hash of the cohort, the cleared set and the key's fingerprint, so another
list or another key never reads it, and of the layout's version, so a file laid out by an older
release is never read as this one's. Only the newest is kept. A file that cannot be read, fails its
CRC-32 (the zip format's, checked as it is read), or holds another number of people is ignored and
written again; :class:`optout.pseudonym.HashedCohort` refuses one whose digests are out of order.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from optout.atomic import atomic_file
from optout.config import data_dir

_PREFIX = "hashed-cohort-"
_LAYOUT = b"layout 2: digests ascending by their first little-endian word, cleared flags"
_ARRAYS = ("digests", "cleared")


def name_of(check_result: Any, fingerprint: str) -> str:
    """The cache file's name: a hash of the cohort, the cleared set and the key's fingerprint.

    Hashing the arrays themselves (about 0.1 s for five million numbers, against seconds of HMAC) means a
    file is only ever read for exactly the list it was made from, whatever store or version it came from.
    """
    label = hashlib.sha256(fingerprint.encode())
    label.update(_LAYOUT)
    for packed in (check_result.packed_cohort, check_result.packed_cleared):
        for part in packed.parts():  # block by block: the lists are not decoded whole for a cache hit
            label.update(np.ascontiguousarray(part, dtype=np.int64).data)
        label.update(b"|")
    return _PREFIX + label.hexdigest()[:32] + ".npz"


def _folder() -> Path:
    return data_dir() / "cache"


def load(name: str, count: int) -> dict[str, np.ndarray] | None:
    """The arrays saved under ``name``, if they are there, whole, and of ``count`` numbers."""
    try:
        with np.load(_folder() / name) as saved:
            arrays = {key: saved[key] for key in _ARRAYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return arrays if all(len(array) == count for array in arrays.values()) else None


def save(name: str, *, digests: np.ndarray, cleared: np.ndarray) -> None:
    """Keep a hashed cohort under ``name`` (atomically, owner-only), dropping every older one.

    Written straight into the temporary file: no second copy of the digests is held in memory.
    """
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_file(folder / name) as handle:
        np.savez(cast(BinaryIO, handle), digests=digests, cleared=cleared)
    for old in folder.glob(f"{_PREFIX}*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)
