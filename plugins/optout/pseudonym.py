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
memory per (check version, key fingerprint) so a run with several tables hashes once, and on disk
(:mod:`optout.pseudonym_cache`) so the next run hashes none. Matching an extract costs what reading its
bytes costs: ids are decoded straight from the column's buffers and looked up through a directory of
the sorted digests (:class:`HashedCohort`), never hashed themselves.
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
from optout.person_keys import present
from optout.spec_pseudonym import Pseudonymisation

HEX_CHARS = 2 * DIGEST_BYTES
MIN_MATCH_SHARE = 0.5  # below this share of non-missing ids matching the cohort, the key is wrong
_PARALLEL_FROM = 200_000  # fewer numbers than this hash faster in one process than the pool starts
_BLOCK = 64  # SHA-256 block size: HMAC pads the key to it
_STEP_ROWS = 1 << 15  # hex ids decoded and looked up at a time: 2 MiB of text


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


def _first_words(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each digest as a little-endian uint64 (a view, not a copy): a lookup key that
    almost never collides, since the digests are uniformly random."""
    return _words(digests)[:, 0]


def _words(digests: np.ndarray) -> np.ndarray:
    """Digests as (n, 4) little-endian uint64 (a view of contiguous digests), for whole-digest compares."""
    return np.ascontiguousarray(digests, dtype=np.uint8).view("<u8")


class HashedCohort:
    """The cohort's digests in ascending order of their first word, with whether each person was cleared.

    Lookups go through a directory of the first words' top bits (one or two people per slot): each digest
    looked up costs two gathers (its slot, then the digests there), and no hash table is built. The
    directory is made on load in a few milliseconds, so only the digests and flags are kept on disk.
    """

    def __init__(self, digests: np.ndarray, cleared: np.ndarray) -> None:
        """Refuses (``ValueError``) arrays that are not in this layout: a cache file that is corrupt."""
        if digests.ndim != 2 or digests.shape[1] != DIGEST_BYTES or digests.dtype != np.uint8:
            raise ValueError("digests must be an (n, 32) uint8 array")
        if cleared.shape != (len(digests),) or cleared.dtype != bool:
            raise ValueError("cleared must be one bool per digest")
        first = _first_words(digests)
        if len(first) > 1 and not (first[1:] >= first[:-1]).all():
            raise ValueError("digests must be in ascending order of their first word")
        self.digests, self.cleared = digests, cleared
        bits = max(1, len(first).bit_length() - 1)  # n / 2**bits is 1 to 2 people a slot; 2 to 4 bytes each
        self._shift = np.uint64(64 - bits)
        slots = np.bincount((first >> self._shift).astype(np.intp), minlength=1 << bits)
        self._starts = np.zeros(len(slots) + 1, dtype=np.int64)
        np.cumsum(slots, out=self._starts[1:])
        if len(first) < 2**31:
            self._starts = self._starts.astype(np.int32)

    @classmethod
    def build(cls, check_result: Any, key: Key) -> HashedCohort:
        cohort = np.asarray(check_result.cohort, dtype=np.int64)
        digests = hash_numbers(cohort, key)
        order = np.argsort(_first_words(digests))
        cleared = _members(cohort, np.asarray(check_result.cleared, dtype=np.int64))
        return cls(np.take(digests, order, axis=0), cleared[order])

    def __len__(self) -> int:
        return len(self.digests)

    def find(self, digests: np.ndarray) -> np.ndarray:
        """Position of each digest in the cohort (all 32 bytes equal), or -1.

        Each round compares every digest still looking with the next cohort digest in its slot, so a
        digest whose first word collides with another person's is still found by its own.
        """
        wanted = _words(digests)
        found = np.full(len(wanted), -1, dtype=np.int64)
        slot = (wanted[:, 0] >> self._shift).astype(np.intp)
        at: np.ndarray = self._starts.take(slot).astype(np.intp)
        end: np.ndarray = self._starts.take(slot + 1)
        rows = np.flatnonzero(at < end)
        at, end = at[rows], end[rows]
        held = _words(self.digests)
        while len(rows):
            same = _same(held.take(at, axis=0), wanted.take(rows, axis=0))
            found[rows[same]] = at[same]
            going = ~same & (at + 1 < end)
            rows, at, end = rows[going], at[going] + 1, end[going]
        return found


def _same(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise equality of two (n, 4) word arrays (four 1-D compares: quicker than ``.all(axis=1)``)."""
    same = left[:, 0] == right[:, 0]
    for word in range(1, left.shape[1]):
        same &= left[:, word] == right[:, word]
    return same


def _members(numbers: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Which ``numbers`` are in ``chosen``: a sorted search, which costs 8 bytes a number where the cleared
    set's bitmap costs 125 MB. A check result holds its lists sorted; any other order is sorted first."""
    if not len(chosen):
        return np.zeros(len(numbers), dtype=bool)
    if not (chosen[1:] > chosen[:-1]).all():
        chosen = np.unique(chosen)
    at = np.minimum(np.searchsorted(chosen, numbers), len(chosen) - 1)
    return chosen[at] == numbers


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
    and kept. A kept file in another layout (corrupt) is built again, never used."""
    from optout import pseudonym_cache

    name = pseudonym_cache.name_of(check_result, key.fingerprint)
    saved = pseudonym_cache.load(name, len(check_result.packed_cohort))
    if saved is not None:
        try:
            return HashedCohort(**saved)
        except ValueError:
            pass
    built = HashedCohort.build(check_result, key)
    pseudonym_cache.save(name, digests=built.digests, cleared=built.cleared)
    return built


@dataclass(frozen=True)
class Decoded:
    """Hex ids decoded: the digests of the well-formed ones (at ``rows``, in any order), and the missing."""

    rows: np.ndarray  # (m,) int64 positions
    digests: np.ndarray  # (m, 32) uint8
    missing: np.ndarray  # (n,) bool

    @property
    def well_formed(self) -> np.ndarray:
        mask = np.zeros(len(self.missing), dtype=bool)
        mask[self.rows] = True
        return mask


def decode_hex(values: Any) -> Decoded:
    """Hex ids -> their digests, with which rows were missing; vectorised.

    Missing: null, blank or a null token (``NULL``, ``n/a``...). Well-formed: exactly 64 hex digits once
    surrounding blanks are trimmed. Values that are already 64 characters long (nearly all) are read
    straight from the column's buffers; only the others are trimmed.
    """
    values = _strings(values)
    exact, rows, digests = _decode_exact(values)
    missing = np.zeros(len(values), dtype=bool)
    rest = np.flatnonzero(~exact)
    if len(rest):
        trimmed = pc.utf8_trim_whitespace(values.take(pa.array(rest)))
        tokens = pc.is_in(pc.utf8_lower(trimmed), pa.array(NULL_TOKENS))
        missing[rest] = pc.fill_null(pc.or_kleene(trimmed.is_null(), tokens), True).to_numpy(zero_copy_only=False)
        _, found, more = _decode_exact(trimmed)
        if len(found):
            rows, digests = np.concatenate([rows, rest[found]]), np.concatenate([digests, more])
    return Decoded(rows, digests, missing)


def _strings(values: Any) -> pa.Array:
    """One Arrow string or large_string array (other text types, and Python values, are cast)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, from_pandas=True)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values
    return values.cast(pa.large_string())


def _decode_exact(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which values are 64 characters long; the positions and digests of those that are 64 hex digits.

    Lengths come from the offsets and the text straight from the data buffer, so a column of nothing but
    digests is decoded in one C call without a copy.
    """
    count = len(values)
    if not count:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), np.zeros((0, DIGEST_BYTES), dtype=np.uint8)
    exact = np.diff(_offsets(values)) == HEX_CHARS
    if values.null_count:
        exact &= present(values)
    rows = np.flatnonzero(exact)
    chosen = values if len(rows) == count else values.filter(pa.array(exact))
    start = int(_offsets(chosen)[0]) if len(rows) else 0
    text = np.frombuffer(chosen.buffers()[2] or b"", dtype=np.uint8)[start : start + HEX_CHARS * len(rows)]
    hexes, digests = _unhex(text)
    return exact, rows[hexes] if hexes is not None else rows, digests[hexes] if hexes is not None else digests


def _offsets(values: pa.Array) -> np.ndarray:
    kind = np.int64 if pa.types.is_large_string(values.type) else np.int32
    return np.frombuffer(values.buffers()[1], dtype=kind)[values.offset : values.offset + len(values) + 1]


def _unhex(text: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Digests of back-to-back 64-character values, and which were all hex digits (None: all were).

    The usual case is one ``unhexlify`` call (which stops at the first bad digit). When some value is
    not hex, the bad ones are found and decoded as zeros: a few bad ids cost one more pass over the
    step's text, in the CPU's cache, not a slow path for every row.
    """
    try:
        return None, np.frombuffer(binascii.unhexlify(text.data), dtype=np.uint8).reshape(-1, DIGEST_BYTES)
    except binascii.Error:
        pass
    values = text.reshape(-1, HEX_CHARS)
    hexes = _all_hex(values)
    patched = values.copy()
    patched[~hexes] = ord("0")
    return hexes, np.frombuffer(binascii.unhexlify(patched.data), dtype=np.uint8).reshape(-1, DIGEST_BYTES)


def _all_hex(values: np.ndarray) -> np.ndarray:
    """Which rows of an (n, 64) uint8 array are all hex digits, either case: byte arithmetic (a digit is
    0-9 above ``'0'``, a letter 0-5 above ``'a'`` once lowercased), then the row's eight words ANDed."""
    hexes = values - np.uint8(ord("0")) < 10
    letter = values | np.uint8(0x20)
    letter -= np.uint8(ord("a"))
    hexes |= letter < 6
    row = hexes.view("<u8")  # each byte 1 where it is a hex digit
    every = row[:, 0].copy()
    for word in range(1, row.shape[1]):
        every &= row[:, word]
    return every == 0x0101010101010101


class PseudonymClearance:
    """Per-row reason codes for a hashed identifier column, like :class:`optout.clearance.Clearance`."""

    def __init__(self, check_result: CheckResultLike, key: Key) -> None:
        self._cohort = hashed_cohort(check_result, key)

    def codes(self, values: Any) -> np.ndarray:
        """uint8 reason code per value (0 = cleared, keep)."""
        return _in_steps(values, self._codes, np.uint8)

    def _codes(self, values: pa.Array) -> np.ndarray:
        decoded = decode_hex(values)
        codes = np.full(len(values), Reason.MALFORMED.code, dtype=np.uint8)
        codes[decoded.missing] = Reason.MISSING.code
        found = self._cohort.find(decoded.digests)
        codes[decoded.rows] = np.where(
            found < 0,
            Reason.UNCHECKED.code,
            np.where(self._cohort.cleared[np.maximum(found, 0)], KEEP, Reason.OPTED_OUT.code),
        )
        return codes

    def numbers(self, values: Any) -> np.ndarray:
        """A stand-in number per row for counting distinct people: the digest's first word (0 when not usable)."""
        return _in_steps(values, _first_word_or_zero, np.int64)


def _first_word_or_zero(values: pa.Array) -> np.ndarray:
    decoded = decode_hex(values)
    numbers = np.zeros(len(values), dtype=np.int64)
    numbers[decoded.rows] = _first_words(decoded.digests).view(np.int64)
    return numbers


def _in_steps(values: Any, step: Callable[[pa.Array], np.ndarray], kind: type[np.generic]) -> np.ndarray:
    """``step`` over :data:`_STEP_ROWS` values at a time, results joined: each step's temporaries (a few
    MiB) stay in the CPU's cache, and small in the allocator, where a whole batch's would not."""
    values = _strings(values)
    out = np.empty(len(values), dtype=kind)
    for start in range(0, len(values), _STEP_ROWS):
        out[start : start + _STEP_ROWS] = step(values.slice(start, _STEP_ROWS))
    return out


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
