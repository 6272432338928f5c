"""Row selection for every Arrow type a reader may hand us, view types included.

pyarrow 26 has no ``take``/``filter`` kernel for ``string_view`` and ``binary_view`` (nor for values
nested in lists, structs or maps): a Parquet file written with them would crash the filter. Such
columns are widened to their ``large_`` twin, selected, and cast back, so the output keeps the
input's exact type; every other column is selected as it is, in one call.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pyarrow as pa

Selectable = TypeVar("Selectable", pa.Array, pa.RecordBatch)


def select(values: Selectable, rows: np.ndarray) -> Selectable:
    """The rows of ``values`` where the bool mask ``rows`` is true, or at the integer positions ``rows``."""
    chosen = pa.array(rows)
    if isinstance(values, pa.RecordBatch):
        if not any(_selectable(field.type) != field.type for field in values.schema):
            return _pick(values, chosen)
        columns = [_column(column, chosen) for column in values.columns]
        return pa.RecordBatch.from_arrays(columns, schema=values.schema)
    return _column(values, chosen)


def _column(values: pa.Array, chosen: pa.Array) -> pa.Array:
    wide = _selectable(values.type)
    if wide == values.type:
        return _pick(values, chosen)
    return _pick(values.cast(wide), chosen).cast(values.type)


def _pick(values: Selectable, chosen: pa.Array) -> Selectable:
    return values.filter(chosen) if pa.types.is_boolean(chosen.type) else values.take(chosen)


def _selectable(kind: pa.DataType) -> pa.DataType:
    """``kind`` with every view value type widened to one pyarrow can select (int64 offsets: no overflow).

    Dictionaries and list views are selected by their indices and offsets alone, so they stay as they are.
    """
    if pa.types.is_string_view(kind):
        return pa.large_string()
    if pa.types.is_binary_view(kind):
        return pa.large_binary()
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_selectable(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_selectable(kind.value_type)))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(_selectable(kind.value_type)), kind.list_size)
    if pa.types.is_map(kind):
        key, item = kind.key_field, kind.item_field
        return pa.map_(key.with_type(_selectable(key.type)), item.with_type(_selectable(item.type)), kind.keys_sorted)
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_selectable(field.type)) for field in kind])
    return kind
