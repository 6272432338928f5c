"""Pseudonymised extracts: identifier columns that hold a keyed hash of the NHS number.

The opt-out applies to pseudonymised data too. The data controller hashes each NHS number as
HMAC-SHA256 over its ten-digit text with a secret key and ships the lowercase hex. We hash the cohort
of the check result once with the same key and match on the digests, so the same reasons come out as
for plain numbers: cleared, ``opted_out`` (in the cohort, not cleared), ``unchecked`` (a well-formed
hash of no one in the cohort), ``missing`` and ``malformed`` (not 64 hex digits).

The key comes from an environment variable or an Airflow connection, never from the spec file, and
never appears in a message: only its fingerprint (itself a keyed hash) may be shown. A wrong key would
silently turn every row into ``unchecked``; :func:`check_matches` stops a run where fewer than half of the
non-missing hashed ids match the cohort.

Hashing runs at about half a microsecond per number (the HMAC pads are hashed once and their states
copied, which halves hashlib's own HMAC), spread over processes for large cohorts, and is cached in
memory per (check version, key fingerprint) so a run with several tables hashes once.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.clearance import KEEP, CheckResultLike, Reason
from optout.errors import InputError
from optout.keyed_hash import DIGEST_BYTES, MESSAGE_BYTES, hmac_block, hmac_parallel
from optout.nhs_number import NULL_TOKENS, to_text
from optout.spec_pseudonym import Pseudonymisation

HEX_CHARS = 2 * DIGEST_BYTES
MIN_MATCH_SHARE = 0.5  # below this share of non-missing ids matching the cohort, the key is wrong
_PARALLEL_FROM = 200_000  # fewer numbers than this hash faster in one process than the pool starts
_BLOCK = 64  # SHA-256 block size: HMAC pads the key to it

# Hex digit value per byte, 255 where the byte is not a hex digit (either case is accepted).
_HEX_VALUE = np.full(256, 255, dtype=np.uint8)
for _index, _char in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_char] = _index
    _HEX_VALUE[bytes([_char]).upper()[0]] = _index


class PseudonymKeyError(InputError):
    """The key does not match the data (or cannot be found); nothing was written."""


class Key:
    """A secret HMAC key. Its repr and str never show it; :attr:`fingerprint` identifies it safely."""

    def __init__(self, secret: bytes | str) -> None:
        secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not secret:
            raise ValueError("an HMAC key cannot be empty")
        self._secret = secret

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    __str__ = __repr__

    @cached_property
    def fingerprint(self) -> str:
        """16 hex digits of a keyed hash of a fixed label: tells keys apart without revealing them."""
        return hmac.new(self._secret, b"optout key fingerprint", hashlib.sha256).hexdigest()[:16]

    def digest(self, message: bytes) -> bytes:
        return hmac.digest(self._secret, message, "sha256")

    def pads(self) -> tuple[bytes, bytes]:
        """The HMAC inner and outer pad blocks (for hashing many short messages fast)."""
        secret = hashlib.sha256(self._secret).digest() if len(self._secret) > _BLOCK else self._secret
        secret = secret.ljust(_BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in secret), bytes(b ^ 0x5C for b in secret)


def load_key(config: Pseudonymisation, *, connection_secret: Callable[[str], str | None] | None = None) -> Key:
    """The key named by the spec: an environment variable, or an Airflow connection's password.

    The library does not import Airflow: ``connection_secret`` (conn id -> password) is the caller's, the
    Airflow skin's reader (:mod:`optout.resolver`); without one a ``key_conn`` is refused.
    """
    if config.key_env:
        secret = os.environ.get(config.key_env)
    elif connection_secret is None:
        raise PseudonymKeyError(
            f"the key is in {config.key_source}, which only Airflow can read; run this in Airflow or use key_env",
            field="pseudonymised.key_conn",
        )
    else:
        secret = connection_secret(str(config.key_conn))
    if not secret:
        field = "pseudonymised.key_env" if config.key_env else "pseudonymised.key_conn"
        raise PseudonymKeyError(f"no key found in {config.key_source}; set it before running", field=field)
    return Key(secret)


def ascii_digits(numbers: np.ndarray) -> np.ndarray:
    """Each number's ten-digit text (leading zeros kept) as an (n, 10) uint8 array, built by Arrow.

    Arrow's padded text is already ten bytes per number back to back, so no (n, 10) int64 digit matrix
    (400 MB for five million numbers) is ever made.
    """
    text = to_text(np.asarray(numbers, dtype=np.int64))
    start = int(np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset])
    return np.frombuffer(text.buffers()[2], dtype=np.uint8)[start : start + 10 * len(text)].reshape(-1, 10)


def hash_numbers(numbers: np.ndarray, key: Key, *, workers: int | None = None) -> np.ndarray:
    """HMAC-SHA256 of each number's ten-digit text, as an (n, 32) uint8 array of digests.

    ``workers`` processes share large inputs (default: the idle CPUs, for 200,000 numbers or more).
    """
    text = ascii_digits(numbers).tobytes()
    count = len(text) // MESSAGE_BYTES
    workers = workers if workers is not None else _idle_cpus()
    digests: bytes | bytearray
    if count < _PARALLEL_FROM or workers < 2:
        digests = hmac_block(key.pads(), text)
    else:
        digests = hmac_parallel(key.pads(), text, workers)
    return np.frombuffer(digests, dtype=np.uint8).reshape(count, DIGEST_BYTES)


def _idle_cpus() -> int:
    """CPUs not already busy: on a loaded Celery worker, extra processes only slow the hashing down."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus - int(os.getloadavg()[0]))


def hex_digests(digests: np.ndarray) -> pa.Array:
    """Lowercase hex text of each digest (64 characters), as the data controller writes them."""
    count = len(digests)
    data = pa.py_buffer(np.ascontiguousarray(digests).tobytes().hex().encode("ascii"))
    offsets = pa.py_buffer(np.arange(0, HEX_CHARS * (count + 1), HEX_CHARS, dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.string(), count, [None, offsets, data])


def _words(digests: np.ndarray) -> np.ndarray:
    """Digests as (n, 4) uint64, for comparing whole digests four words at a time."""
    return np.ascontiguousarray(digests).view(np.uint64)


def _prefix(digests: np.ndarray) -> np.ndarray:
    """First 8 bytes of each digest as uint64: a sort key that almost never collides."""
    return np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)


@dataclass(frozen=True)
class HashedCohort:
    """The cohort's digests sorted by prefix, with whether each person was cleared."""

    digests: np.ndarray  # (n, 32) uint8
    prefixes: np.ndarray  # (n,) uint64, ascending
    cleared: np.ndarray  # (n,) bool

    @classmethod
    def build(cls, check_result: Any, key: Key) -> HashedCohort:
        cohort = np.asarray(check_result.cohort, dtype=np.int64)
        digests = hash_numbers(cohort, key)
        prefixes = _prefix(digests)
        order = np.argsort(prefixes, kind="stable")
        cleared = check_result.cleared_set.contains(cohort, known_valid=True)
        return cls(digests[order], prefixes[order], cleared[order])

    def __len__(self) -> int:
        return len(self.prefixes)

    @cached_property
    def _index(self) -> Any:
        import pandas as pd

        index = pd.Index(self.prefixes)
        return index if index.is_unique else None

    def find(self, prefixes: np.ndarray) -> np.ndarray:
        """Position of each prefix (a hash lookup; a sorted search if two cohort prefixes collide), or -1."""
        if self._index is not None:
            return np.asarray(self._index.get_indexer(prefixes), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.prefixes, prefixes), len(self.prefixes) - 1)
        return np.where(self.prefixes[at] == prefixes, at, -1)


_CACHE: dict[tuple[Any, str], HashedCohort] = {}


def hashed_cohort(check_result: Any, key: Key) -> HashedCohort:
    """The cohort hashed with ``key``, computed once per (check version, key): kept in this process, and on
    disk for the next one."""
    version = getattr(getattr(check_result, "info", None), "id", None)
    cache_key = (version if version is not None else id(check_result), key.fingerprint)
    found = _CACHE.get(cache_key)
    if found is None:
        _CACHE.clear()  # one version at a time: cohorts are large
        found = _CACHE[cache_key] = _kept_or_built(check_result, key)
    return found


def _kept_or_built(check_result: Any, key: Key) -> HashedCohort:
    """The hashed cohort kept on disk for this version and key (:mod:`optout.pseudonym_cache`), else built
    and kept."""
    from optout import pseudonym_cache

    name = pseudonym_cache.name_of(check_result, key.fingerprint)
    saved = pseudonym_cache.load(name, len(check_result.cohort))
    if saved is not None:
        return HashedCohort(**saved)
    built = HashedCohort.build(check_result, key)
    pseudonym_cache.save(name, digests=built.digests, prefixes=built.prefixes, cleared=built.cleared)
    return built


def decode_hex(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hex ids -> (digests (n, 32) uint8, missing mask, well-formed mask), all vectorised.

    Missing: null, blank or a null token (``NULL``, ``n/a``...). Well-formed: exactly 64 hex digits once
    surrounding blanks are trimmed. Values that are already 64 hex digits (nearly all) skip the trimming.
    """
    values = _large_strings(values)
    digests = np.zeros((len(values), DIGEST_BYTES), dtype=np.uint8)
    well_formed = _decode_exact(values, digests)
    missing = np.zeros(len(values), dtype=bool)
    rest = np.flatnonzero(~well_formed)
    if len(rest):
        trimmed = pc.utf8_trim_whitespace(values.take(pa.array(rest)))
        tokens = pc.is_in(pc.utf8_lower(trimmed), pa.array(NULL_TOKENS))
        missing[rest] = pc.fill_null(pc.or_kleene(trimmed.is_null(), tokens), True).to_numpy(zero_copy_only=False)
        found = np.zeros((len(rest), DIGEST_BYTES), dtype=np.uint8)
        well_formed[rest] = _decode_exact(trimmed, found)
        digests[rest] = found
    return digests, missing, well_formed


def _large_strings(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, from_pandas=True)
    return values if pa.types.is_large_string(values.type) else values.cast(pa.large_string())


def _decode_exact(values: pa.Array, digests: np.ndarray) -> np.ndarray:
    """Decode the values that are exactly 64 hex digits into ``digests``; return which were."""
    exact = pc.fill_null(pc.equal(pc.binary_length(values), HEX_CHARS), False).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(exact)
    if not len(rows):
        return exact
    chosen = values if len(rows) == len(values) else values.take(pa.array(rows))
    start = int(np.frombuffer(chosen.buffers()[1], dtype=np.int64)[chosen.offset])
    text = np.frombuffer(chosen.buffers()[2], dtype=np.uint8)[start : start + HEX_CHARS * len(rows)]
    try:  # all hex (the usual case): one C call for the whole block
        digests[rows] = np.frombuffer(binascii.unhexlify(text.data), dtype=np.uint8).reshape(len(rows), DIGEST_BYTES)
        return exact
    except binascii.Error:
        pass
    nibbles = _HEX_VALUE[text.reshape(len(rows), HEX_CHARS)]
    ok = (nibbles != 255).all(axis=1)
    digests[rows] = (nibbles[:, 0::2] << 4) | (nibbles[:, 1::2] & 15)
    exact[rows] = ok
    return exact


class PseudonymClearance:
    """Per-row reason codes for a hashed identifier column, like :class:`optout.clearance.Clearance`."""

    def __init__(self, check_result: CheckResultLike, key: Key) -> None:
        self._cohort = hashed_cohort(check_result, key)

    def codes(self, values: Any) -> np.ndarray:
        """uint8 reason code per value (0 = cleared, keep)."""
        digests, missing, well_formed = decode_hex(values)
        codes = np.full(len(missing), Reason.MALFORMED.code, dtype=np.uint8)
        codes[missing] = Reason.MISSING.code
        rows = np.flatnonzero(well_formed)
        found = self.lookup(digests[rows])
        codes[rows] = np.where(
            found < 0,
            Reason.UNCHECKED.code,
            np.where(self._cohort.cleared[np.maximum(found, 0)], KEEP, Reason.OPTED_OUT.code),
        )
        return codes

    def lookup(self, digests: np.ndarray) -> np.ndarray:
        """Index of each digest in the hashed cohort, -1 where absent."""
        cohort = self._cohort
        if not len(cohort):
            return np.full(len(digests), -1, dtype=np.int64)
        prefixes = _prefix(digests)
        at = cohort.find(prefixes)
        hit = at >= 0  # ``find`` matches prefixes exactly
        at = np.maximum(at, 0)
        # The prefix is a 64-bit shortcut: a match counts only when all 32 bytes agree.
        mine, theirs = _words(digests[hit]), _words(cohort.digests[at[hit]])
        hit[hit] = (mine == theirs).all(axis=1)
        return np.where(hit, at, -1)

    def numbers(self, values: Any) -> np.ndarray:
        """A stand-in number per row for counting distinct people: the digest prefix (0 when not usable)."""
        digests, _, well_formed = decode_hex(values)
        return np.where(well_formed, _prefix(digests).view(np.int64), 0)


def check_matches(counts: Mapping[str, int], *, table: str, config: Pseudonymisation, kept: int) -> None:
    """Stop when fewer than half of the non-missing hashed ids match the cohort: the key is wrong.

    ``counts`` are the column's rows by number reason; ``kept`` the rows whose id was cleared (whether or
    not their person was removed for another row).
    """
    matched = kept + counts.get(Reason.OPTED_OUT.value, 0)
    present = matched + sum(
        counts.get(reason.value, 0) for reason in (Reason.UNCHECKED, Reason.MALFORMED, Reason.BAD_CHECK_DIGIT)
    )
    if present and matched / present < MIN_MATCH_SHARE:
        raise PseudonymKeyError(
            f"only {matched} of {present} hashed ids in table {table!r} match the checked cohort "
            f"(at least {MIN_MATCH_SHARE:.0%} must): the key in {config.key_source} is probably not the one the "
            "data was hashed with, or the column is not an HMAC-SHA256 hex of the NHS number; nothing was written",
            field=f"{table}.pseudonymised",
        )
