"""HMAC-SHA256 of many ten-digit messages, in worker processes that start light.

Only the standard library is imported here, so a worker started fresh (``forkserver``) loads nothing
else: NumPy and Arrow stay in the parent. Workers are never forked from the caller, which may have
threads running (a reader, a file being hashed): a fork copies their locks held, and can hang.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

DIGEST_BYTES = 32
MESSAGE_BYTES = 10  # an NHS number's ten-digit text


def hmac_block(pads: tuple[bytes, bytes], text: bytes) -> bytearray:
    """HMAC-SHA256 of each 10-byte message in ``text``, digests back to back.

    The pads' hash states are computed once and copied per message (half of hashlib's own HMAC cost).
    Digests go straight into one buffer: a list of millions of small bytes objects would double the
    memory of the cohort's hashes.
    """
    inner_pad, outer_pad = hashlib.sha256(pads[0]), hashlib.sha256(pads[1])
    out = bytearray(len(text) // MESSAGE_BYTES * DIGEST_BYTES)
    at = 0
    for start in range(0, len(text), MESSAGE_BYTES):
        inner = inner_pad.copy()
        inner.update(text[start : start + MESSAGE_BYTES])
        outer = outer_pad.copy()
        outer.update(inner.digest())
        out[at : at + DIGEST_BYTES] = outer.digest()
        at += DIGEST_BYTES
    return out


def hmac_parallel(pads: tuple[bytes, bytes], text: bytes, workers: int) -> bytes:
    """:func:`hmac_block` over ``workers`` processes, in order. The processes come from a fork server
    (started once per process, from a clean interpreter preloaded with this module only)."""
    count = len(text) // MESSAGE_BYTES
    size = -(-count // workers) * MESSAGE_BYTES
    parts = [text[start : start + size] for start in range(0, len(text), size)]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(len(parts), mp_context=context) as pool:
        return b"".join(pool.map(hmac_block, [pads] * len(parts), parts))
