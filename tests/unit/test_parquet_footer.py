"""Row groups encoded apart and joined: the file must read back whole, by pyarrow and by DuckDB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.homes.files.parquet_footer import _decode, _encode, split
from optout.homes.files.parquet_write import BatchWriter

ROWS = 3000


@pytest.fixture(autouse=True)
def _join_small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches here are small: join them all the same (the writer joins from 128K rows up)."""
    from optout.homes.files import parquet_write as tabular

    monkeypatch.setattr(tabular, "_JOINED_MIN_ROWS", 1)


def _every_type() -> pa.Table:
    return pa.table(
        {
            "n": np.arange(ROWS),
            "text": pa.array(np.resize(["x", "y", None], ROWS)),
            "category": pa.array(np.resize(["a", "b"], ROWS)).dictionary_encode(),
            "at": pa.array(np.arange(ROWS) * 10**9, type=pa.timestamp("ns", tz="Europe/London")),
            "amount": pa.array([None, *range(1, ROWS)], type=pa.decimal128(9, 2)),
            "items": pa.array([[1, 2], None, []] * (ROWS // 3)),
            "pair": pa.array([{"x": 1, "y": "z"}] * ROWS),
            "flag": pa.array([True, False, None] * (ROWS // 3)),
            "measure": np.random.default_rng(1).normal(size=ROWS),
        }
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"write_page_index": True, "compression": "zstd"}, {"row_group_size": 1000, "use_dictionary": False}],
    ids=["defaults", "page-index", "three-row-groups"],
)
def test_footers_are_read_and_written_back_byte_for_byte(options: dict[str, object]) -> None:
    """Every field survives, those this module does not know included."""
    encoded = io.BytesIO()
    pq.write_table(_every_type(), encoded, **options)  # type: ignore[arg-type]
    data = encoded.getvalue()
    _, footer = split([data[:4], data[4:100], data[100:-8], data[-8:-4], data[-4:]])
    assert _encode(_decode(footer)) == footer
    assert data.endswith(footer + len(footer).to_bytes(4, "little") + b"PAR1")


def test_split_refuses_what_is_not_a_parquet_file() -> None:
    with pytest.raises(ValueError, match="not a whole Parquet file"):
        split([b"PAR1", b"not parquet"])


@pytest.mark.parametrize("batches", [1, 2, 7], ids=["one", "two", "seven"])
def test_joined_row_groups_read_back_whole(tmp_path: Path, batches: int) -> None:
    import duckdb

    table = _every_type()
    source = tmp_path / "source.parquet"
    pq.write_table(table, source, compression="zstd")
    out = tmp_path / "out.parquet"
    with BatchWriter(out, table.schema, like=source) as writer:
        for batch in table.to_batches(max_chunksize=-(-ROWS // batches)):
            writer.write(batch)
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_row_groups == batches
    assert parquet.metadata.num_rows == ROWS
    assert pq.read_table(out).equals(table)
    for group in range(batches):  # each row group's offsets lead to its own pages
        start = sum(parquet.metadata.row_group(g).num_rows for g in range(group))
        assert parquet.read_row_group(group).equals(table.slice(start, parquet.metadata.row_group(group).num_rows))
    with duckdb.connect() as con:  # another reader, its own footer parser
        assert con.execute(f"SELECT count(*), sum(n) FROM read_parquet('{out}')").fetchone() == (
            ROWS,
            ROWS * (ROWS - 1) // 2,
        )


@pytest.mark.parametrize("rows", [[0, 5, 0, 3], [0, 0]], ids=["some-empty", "all-empty"])
def test_batches_left_empty_by_the_filter_add_no_rows(tmp_path: Path, rows: list[int]) -> None:
    """A part whose every row was removed still goes through the writer, first or not."""
    with BatchWriter(tmp_path / "out.parquet", pa.schema([("n", pa.int64())])) as writer:
        for count in rows:
            writer.write(pa.record_batch({"n": np.arange(count)}))
    assert pq.read_table(tmp_path / "out.parquet").column("n").to_pylist() == [*range(5), *range(3)][: sum(rows)]


def test_small_batches_are_written_into_the_file_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optout.homes.files import parquet_footer
    from optout.homes.files import parquet_write as tabular

    monkeypatch.setattr(tabular, "_JOINED_MIN_ROWS", 1000)
    monkeypatch.setattr(parquet_footer, "_decode", None)  # never reached
    table = _every_type()
    with BatchWriter(tmp_path / "out.parquet", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=999):
            writer.write(batch)
    assert pq.read_table(tmp_path / "out.parquet").equals(table)
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 4


def test_batches_of_another_schema_are_refused(tmp_path: Path) -> None:
    first = pa.record_batch({"n": pa.array([1, 2], type=pa.int64())})
    with pytest.raises((ValueError, pa.ArrowInvalid)), BatchWriter(tmp_path / "out.parquet", first.schema) as writer:
        writer.write(first)
        writer.write(pa.record_batch({"n": pa.array(["a"])}))


def _footer_of(table: pa.Table) -> bytes:
    encoded = io.BytesIO()
    pq.write_table(table, encoded)
    return split([encoded.getvalue()])[1]


@pytest.mark.parametrize("where", ["FileMetaData", "RowGroup", "ColumnChunk", "ColumnMetaData"])
def test_a_footer_field_the_join_does_not_know_is_refused(where: str) -> None:
    """An unknown field of a struct that holds offsets could be an offset: joining fails closed."""
    from thrift.Thrift import TType

    from optout.homes.files.parquet_footer import JoinedFooter, UnknownFooterField

    fields = _decode(_footer_of(_every_type()))
    group = next(value for fid, _, value in fields if fid == 4)[1][0]
    chunk = next(value for fid, _, value in group if fid == 1)[1][0]
    meta = next(value for fid, _, value in chunk if fid == 3)
    target = {"FileMetaData": fields, "RowGroup": group, "ColumnChunk": chunk, "ColumnMetaData": meta}[where]
    target.append([99, TType.I64, 12345])
    with pytest.raises(UnknownFooterField, match=f"field 99 of {where}.*OPTOUT_PARQUET_WRITER=plain"):
        JoinedFooter().add(_encode(fields), shift=0)


def test_every_field_pyarrow_writes_is_known() -> None:
    from optout.homes.files.parquet_footer import JoinedFooter

    JoinedFooter().add(_footer_of(_every_type()), shift=0)
    encoded = io.BytesIO()
    pq.write_table(_every_type(), encoded, write_page_index=True, write_statistics=True)
    JoinedFooter().add(split([encoded.getvalue()])[1], shift=0)


def test_the_plain_writer_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OPTOUT_PARQUET_WRITER=plain writes with pyarrow's writer alone (nothing joined); a typo is refused."""
    from optout.errors import InputError
    from optout.homes.files import parquet_footer

    table = _every_type()
    monkeypatch.setenv("OPTOUT_PARQUET_WRITER", "plain")
    monkeypatch.setattr(parquet_footer.JoinedFooter, "add", None)  # any join would fail
    out = tmp_path / "out.parquet"
    with BatchWriter(out, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=1000):
            writer.write(batch)
    assert pq.read_table(out).equals(table)
    monkeypatch.setenv("OPTOUT_PARQUET_WRITER", "fast")
    with pytest.raises(InputError, match="not a Parquet writer"):
        BatchWriter(tmp_path / "other.parquet", table.schema)
