"""Row selection keeps every Arrow type as it is, view types included (pyarrow 26 cannot select those)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from optout.rows import select

VALUES = [
    pa.array(["a", None, "ccccccccccccccccc", "d"], pa.string_view()),
    pa.array([b"a", b"bbbbbbbbbbbbbbbbbbbb", None, b"d"], pa.binary_view()),
    pa.array([["a"], None, ["c", "c"], []], pa.list_(pa.string_view())),
    pa.array([["a"], None, ["c", "c"], []], pa.large_list(pa.binary_view())),
    pa.array([["a"], ["b"], None, ["d"]], pa.list_(pa.string_view(), 1)),
    pa.array([["a"], None, ["c"], []], pa.list_view(pa.string_view())),
    pa.array([{"s": "a"}, {"s": None}, None, {"s": "d"}], pa.struct([("s", pa.string_view())])),
    pa.array([[("k", "a")], None, [], [("k", "d")]], pa.map_(pa.string_view(), pa.string_view())),
    pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0]), pa.array(["a", "b"], pa.string_view())),
    pa.array([1, None, 3, 4]),
    pa.array(["a", None, "c", "d"]),
]


@pytest.mark.parametrize("values", VALUES, ids=[str(values.type) for values in VALUES])
@pytest.mark.parametrize("rows", [np.array([True, False, True, True]), np.array([3, 0, 2])], ids=["mask", "positions"])
def test_select_keeps_the_type_and_picks_the_rows(values: pa.Array, rows: np.ndarray) -> None:
    chosen = select(values, rows)
    positions = np.flatnonzero(rows) if rows.dtype == bool else rows
    assert chosen.type == values.type
    assert chosen.to_pylist() == [values.to_pylist()[i] for i in positions]


def test_select_a_batch_of_mixed_columns_keeps_its_schema() -> None:
    batch = pa.RecordBatch.from_arrays(VALUES, names=[f"c{i}" for i in range(len(VALUES))])
    keep = np.array([False, True, False, True])
    chosen = select(batch, keep)
    assert chosen.schema == batch.schema
    assert chosen.to_pylist() == [batch.to_pylist()[1], batch.to_pylist()[3]]


def test_select_nothing_and_everything() -> None:
    values = VALUES[0]
    assert select(values, np.zeros(4, dtype=bool)).type == values.type
    assert len(select(values, np.array([], dtype=np.int64))) == 0
    assert select(values, np.ones(4, dtype=bool)).equals(values)
