"""Batch plumbing: ordered parallel map, dictionary choices, text columns read as dictionaries."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout import streams
from optout.homes.files.parquet_read import repetitive_text_columns
from optout.homes.files.parquet_write import BatchWriter, dictionary_columns
from optout.homes.files.read import read_batches
from optout.streams import map_ahead, reused_memory


def test_map_ahead_keeps_order_and_runs_the_first_item_alone() -> None:
    running: list[int] = []
    overlap: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            running.append(item)
            overlap.append(len(running))
        threading.Event().wait(0.002 * (5 - item % 5))  # later items finish first
        with lock:
            running.remove(item)
        return item * 10

    assert list(map_ahead(work, range(20))) == [item * 10 for item in range(20)]
    assert overlap[0] == 1  # the first item had the pool to itself
    assert max(overlap) <= 2


def test_map_ahead_raises_the_first_failure_in_order() -> None:
    def work(item: int) -> int:
        if item == 3:
            raise ValueError("bad batch")
        return item

    results = map_ahead(work, range(10))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="bad batch"):
        next(results)


def test_dictionary_only_for_columns_that_repeat() -> None:
    rows = 10_000
    batch = pa.record_batch(
        {
            "nhs": np.arange(rows, dtype=np.int64),
            "code": pa.array(np.resize(["E11", "I10"], rows)),
            "date": pa.array(np.arange(rows) % 30, type=pa.int32()),
            "category": pa.array(np.resize(["a", "b"], rows)).dictionary_encode(),
            "value": np.random.default_rng(0).normal(size=rows),
        }
    )
    assert dictionary_columns(batch) == ["code", "date", "category"]


def test_repetitive_text_columns_are_read_as_dictionaries(tmp_path: Path) -> None:
    rows = 5000
    table = pa.table(
        {
            "nhs": pa.array([str(9_000_000_000 + i) for i in range(rows)]),
            "code": pa.array(np.resize(["E11", "I10", "J45"], rows)),
            "note": pa.array([f"note {i}" for i in range(rows)]),
            "count": pa.array(np.arange(rows) % 3),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("code\nE11\nE11\n")
    assert repetitive_text_columns(tmp_path / "t.parquet", exclude=["nhs"]) == ["code"]
    assert repetitive_text_columns(tmp_path / "t.csv") == []  # CSV values stay text, exactly as written
    batch = next(read_batches(tmp_path / "t.parquet", as_dictionary=["code"]))
    assert pa.types.is_dictionary(batch.schema.field("code").type)
    assert batch.column("code").cast(pa.string()).to_pylist() == table.column("code").to_pylist()


def test_parquet_keeps_the_codec_of_each_column(tmp_path: Path) -> None:
    rows = 50_000
    source = pa.table(
        {
            "code": pa.array(np.resize(["E11.9", "I10", "J45"], rows)),
            "measure": np.random.default_rng(1).normal(size=rows),
            "count": np.zeros(rows, dtype=np.int64),
        }
    )
    codecs = {"code": "gzip", "measure": "none", "count": "zstd"}
    pq.write_table(source, tmp_path / "source.parquet", compression=codecs)
    with BatchWriter(tmp_path / "out.parquet", source.schema, like=tmp_path / "source.parquet") as writer:
        for batch in source.to_batches():
            writer.write(batch)
    first = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    written = {first.column(index).path_in_schema: first.column(index).compression for index in range(3)}
    assert written == {"code": "GZIP", "measure": "UNCOMPRESSED", "count": "ZSTD"}  # not the first column's for all
    assert pq.read_table(tmp_path / "out.parquet").equals(source)


def test_reused_memory_switches_the_pool_and_restores_it() -> None:
    before = pa.default_memory_pool()
    with reused_memory():
        assert pa.default_memory_pool().backend_name == "system"
        inside = pa.array(np.arange(1000))
    assert pa.default_memory_pool().backend_name == before.backend_name
    assert inside.sum().as_py() == 499_500  # a buffer outlives the switch back
    with pytest.raises(RuntimeError), reused_memory():
        raise RuntimeError("a failed filter")
    assert pa.default_memory_pool().backend_name == before.backend_name


def test_reused_memory_keeps_few_glibc_arenas_and_hands_freed_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """On glibc: fewer arenas from the start, ``malloc_trim`` at the end, even of a failed run."""
    calls: list[tuple[str, tuple[int, ...]]] = []

    class FakeGlibc:
        def mallopt(self, *args: int) -> int:
            calls.append(("mallopt", args))
            return 1

        def malloc_trim(self, *args: int) -> int:
            calls.append(("malloc_trim", args))
            return 1

    monkeypatch.setattr(streams, "_glibc", FakeGlibc)
    with pytest.raises(RuntimeError), reused_memory():
        assert calls == [("mallopt", (-8, max(2, os.cpu_count() or 1)))]  # M_ARENA_MAX
        raise RuntimeError("a failed filter")
    assert calls[-1] == ("malloc_trim", (0,))
    monkeypatch.setattr(streams, "_glibc", lambda: None)  # another C library: nothing is called
    with reused_memory():
        streams.release_freed()
    assert len(calls) == 2


def test_a_failed_disk_write_fails_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes happen on the file's own thread; a failure there still reaches the caller."""
    batch = pa.record_batch({"n": np.arange(100_000)})

    def full_disk(fd: int, buffers: list[memoryview]) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", full_disk)
    with pytest.raises(OSError, match="No space left"), BatchWriter(tmp_path / "out.parquet", batch.schema) as writer:
        for _ in range(40):
            writer.write(batch)


def test_short_writes_are_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may take part of a write (a pipe, a full quota nearly reached): the rest follows, in order."""
    batch = pa.record_batch({"n": np.arange(300_000), "code": pa.array(np.resize(["a", "b", "c"], 300_000))})
    with BatchWriter(tmp_path / "whole.parquet", batch.schema) as writer:
        writer.write(batch)
    real_writev = os.writev

    def at_most_777_bytes(fd: int, buffers: list[memoryview]) -> int:
        taken, left = [], 777
        for buffer in buffers:
            taken.append(buffer[:left])
            left -= len(taken[-1])
            if not left:
                break
        return real_writev(fd, taken)

    monkeypatch.setattr(os, "writev", at_most_777_bytes)
    with BatchWriter(tmp_path / "short.parquet", batch.schema) as short:
        short.write(batch)
    assert (tmp_path / "short.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert short.sha256 == writer.sha256


def test_the_hash_is_the_written_file(tmp_path: Path) -> None:
    batch = pa.record_batch({"n": np.arange(300_000), "code": pa.array(np.resize(["a", "b"], 300_000))})
    for name in ("out.parquet", "out.csv"):
        with BatchWriter(tmp_path / name, batch.schema) as writer:
            writer.write(batch, keep=np.arange(300_000) % 3 != 0)
        assert writer.sha256 == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert writer.rows == 200_000
