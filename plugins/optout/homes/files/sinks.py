"""The output file: owner-only, hashed as it is written, and written behind the encoder that fills it."""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

from optout.atomic import OWNER_ONLY_FILE

_SINK_BUFFER_BYTES = 1 << 20  # gathered before each write to the file
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # pieces per write


class HashingFile(io.RawIOBase):
    """An owner-only output file that hashes what is written, so nothing is read back for the manifest.

    Encoders write many small pieces (page headers) and a few large ones (pages). Pieces are gathered
    without copying (pyarrow hands over fresh ``bytes``) and stored about 1 MiB at a time: writing to
    disk and hashing run in order on a thread of their own (both release the GIL), so the encoder that
    calls :meth:`write` never waits for either. The first failure is raised by the next call, or by
    :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OWNER_ONLY_FILE)
        self.digest = hashlib.sha256()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-file")
        self._failure: BaseException | None = None
        self._gathered: list[bytes | memoryview] = []
        self._gathered_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._raise_failure()
        chunk = data if type(data) is bytes else bytes(data)  # a view's memory may be reused once this returns
        self._gather(chunk)
        return len(chunk)

    def _gather(self, chunk: bytes | memoryview) -> None:
        if len(chunk):
            self._gathered.append(chunk)
            self._gathered_bytes += len(chunk)
            if self._gathered_bytes >= _SINK_BUFFER_BYTES:
                self.flush()

    def flush(self) -> None:
        if self._gathered:
            self._worker.submit(self._store, self._gathered)
            self._gathered, self._gathered_bytes = [], 0

    def _store(self, chunks: list[bytes | memoryview]) -> None:
        if self._failure is not None:
            return
        try:
            _write_all(self._fd, chunks)
            for chunk in chunks:
                self.digest.update(chunk)
        except BaseException as exc:  # raised on the caller's thread
            self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._worker.shutdown(wait=True)
            os.close(self._fd)
            super().close()
        self._raise_failure()


def _write_all(fd: int, chunks: list[bytes | memoryview]) -> None:
    """Write non-empty ``chunks`` in order with few system calls, resuming after a short write."""
    pending = deque(memoryview(chunk) for chunk in chunks)
    while pending:
        written = os.writev(fd, list(islice(pending, _IOV_MAX)))
        while written:
            if written >= len(pending[0]):
                written -= len(pending.popleft())
            else:
                pending[0] = pending[0][written:]
                written = 0
