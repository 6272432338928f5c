"""Join Parquet files encoded apart, one row group each, into one file: their bodies end to end, one footer.

pyarrow's encoder runs on one core. Encoding each row group into a small file of its own on two threads,
then joining those files, uses both. A Parquet file is ``PAR1``, the row groups' pages, the footer
(Thrift compact protocol) and its length: joining shifts every file offset of each row group's footer by
where its body lands, renumbers the row groups, and adds up the rows. Footers are read and written
field by field with Apache Thrift's own compact protocol, keeping every field as it was, those this
module does not know included, so the joined footer says exactly what the parts' footers said.

Offsets live only in four structs (FileMetaData, RowGroup, ColumnChunk, ColumnMetaData), and a field a
newer writer adds to one of them could be an offset too: a footer with a field of those structs that this
module does not know is refused (:class:`UnknownFooterField`) rather than copied unshifted, and so are
encrypted files. ``OPTOUT_PARQUET_WRITER=plain`` writes with pyarrow's writer alone instead.
"""

from __future__ import annotations

import struct
from typing import Any

from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.Thrift import TType
from thrift.transport.TTransport import TMemoryBuffer

MAGIC = b"PAR1"
_TAIL = 8  # footer length (int32, little-endian) and MAGIC

# Field ids of parquet.thrift (parquet-format) that hold rows or file offsets.
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_FILE_OFFSET, _CHUNK_META_DATA, _CHUNK_OFFSET_INDEX, _CHUNK_COLUMN_INDEX = 2, 3, 4, 6
_META_OFFSETS = (9, 10, 11, 14)  # data, index and dictionary page offsets, bloom filter offset

# The fields of those structs in parquet.thrift that are known to be safe to join (the rest: refused).
# FileMetaData 8-9 and ColumnChunk 8-9 are encryption; a ColumnChunk's file_path (1) is never set by pyarrow.
_KNOWN = {
    "FileMetaData": frozenset(range(1, 8)),
    "RowGroup": frozenset(range(1, 8)),
    "ColumnChunk": frozenset({2, 3, 4, 5, 6, 7}),
    "ColumnMetaData": frozenset(range(1, 18)),
}

Fields = list[list[Any]]  # [field id, Thrift type, value] in the order written


class UnknownFooterField(ValueError):
    """A footer holds a field the join does not know, which might be a file offset: nothing is joined."""

    def __init__(self, struct_name: str, fid: int) -> None:
        super().__init__(
            f"the Parquet encoder wrote field {fid} of {struct_name}, which joining row groups does not know "
            "(it could be a file offset); set OPTOUT_PARQUET_WRITER=plain to write with pyarrow's writer alone"
        )


def split(pieces: list[bytes]) -> tuple[list[memoryview], bytes]:
    """The body (row groups, after ``PAR1``) and the footer of a whole Parquet file, in non-empty ``pieces``.

    The body comes as views of the pieces, so nothing is copied.
    """
    total = sum(len(piece) for piece in pieces)
    ending = _last(pieces, _TAIL)
    if total < 12 or _first(pieces, 4) != MAGIC or ending[4:] != MAGIC:
        raise ValueError("not a whole Parquet file")
    (length,) = struct.unpack("<i", ending[:4])
    end = total - _TAIL - length
    body, footer, start = [], [], 0
    for piece in pieces:
        stop = start + len(piece)
        view = memoryview(piece)
        if start < end and stop > 4:
            body.append(view[max(4, start) - start : min(end, stop) - start])
        if stop > end and start < total - _TAIL:
            footer.append(view[max(end, start) - start : min(total - _TAIL, stop) - start])
        start = stop
    return body, b"".join(footer)


def _first(pieces: list[bytes], size: int) -> bytes:
    return b"".join(pieces[:size])[:size]  # ``size`` non-empty pieces hold ``size`` bytes at least


def _last(pieces: list[bytes], size: int) -> bytes:
    return b"".join(pieces[-size:])[-size:]


class JoinedFooter:
    """The footer of row groups appended one file at a time."""

    def __init__(self) -> None:
        self._first: Fields | None = None
        self._groups: list[Fields] = []
        self._rows = 0

    def add(self, footer: bytes, shift: int) -> None:
        """Take the row groups of a file whose body now starts ``shift`` bytes later than in it."""
        fields = _decode(footer)
        _require_known(fields, "FileMetaData")
        if self._first is None:
            self._first = fields
        for group in _value(fields, _FILE_ROW_GROUPS)[1]:
            _shift_group(group, shift, ordinal=len(self._groups))
            self._groups.append(group)
        self._rows += _value(fields, _FILE_NUM_ROWS)

    def tail(self) -> bytes:
        """The joined footer, its length and ``PAR1``: what ends the file."""
        if self._first is None:
            raise ValueError("no file was added")
        replaced = {_FILE_NUM_ROWS: self._rows, _FILE_ROW_GROUPS: (TType.STRUCT, self._groups)}
        footer = _encode([[fid, kind, replaced.get(fid, value)] for fid, kind, value in self._first])
        return footer + struct.pack("<i", len(footer)) + MAGIC


def _require_known(fields: Fields, struct_name: str) -> None:
    for fid, _, _ in fields:
        if fid not in _KNOWN[struct_name]:
            raise UnknownFooterField(struct_name, fid)


def _shift_group(group: Fields, shift: int, ordinal: int) -> None:
    _require_known(group, "RowGroup")
    for field in group:
        if field[0] == _GROUP_FILE_OFFSET:
            field[2] += shift
        elif field[0] == _GROUP_ORDINAL:
            field[2] = ordinal
        elif field[0] == _GROUP_COLUMNS:
            for chunk in field[2][1]:
                _require_known(chunk, "ColumnChunk")
                _shift(chunk, (_CHUNK_FILE_OFFSET, _CHUNK_OFFSET_INDEX, _CHUNK_COLUMN_INDEX), shift)
                for meta in (value for fid, _, value in chunk if fid == _CHUNK_META_DATA):
                    _require_known(meta, "ColumnMetaData")
                    _shift(meta, _META_OFFSETS, shift)


def _shift(fields: Fields, ids: tuple[int, ...], shift: int) -> None:
    for field in fields:
        if field[0] in ids:
            field[2] += shift


def _value(fields: Fields, fid: int) -> Any:
    return next(value for field_id, _, value in fields if field_id == fid)


def _decode(data: bytes) -> Fields:
    return _read_struct(TCompactProtocol(TMemoryBuffer(data)))


def _encode(fields: Fields) -> bytes:
    buffer = TMemoryBuffer()
    _write_struct(TCompactProtocol(buffer), fields)
    return bytes(buffer.getvalue())


_READ = {
    TType.BOOL: "readBool",
    TType.BYTE: "readByte",
    TType.I16: "readI16",
    TType.I32: "readI32",
    TType.I64: "readI64",
    TType.DOUBLE: "readDouble",
    TType.STRING: "readBinary",
}
_WRITE = {kind: "write" + name.removeprefix("read") for kind, name in _READ.items()}


def _read_struct(protocol: TCompactProtocol) -> Fields:
    fields = []
    protocol.readStructBegin()
    while True:
        _, kind, fid = protocol.readFieldBegin()
        if kind == TType.STOP:
            break
        fields.append([fid, kind, _read_value(protocol, kind)])
        protocol.readFieldEnd()
    protocol.readStructEnd()
    return fields


def _read_value(protocol: TCompactProtocol, kind: int) -> Any:
    if kind == TType.STRUCT:
        return _read_struct(protocol)
    if kind in (TType.LIST, TType.SET):
        element, size = protocol.readListBegin()
        items = [_read_value(protocol, element) for _ in range(size)]
        protocol.readListEnd()
        return element, items
    if kind == TType.MAP:
        key, value, size = protocol.readMapBegin()
        pairs = [(_read_value(protocol, key), _read_value(protocol, value)) for _ in range(size)]
        protocol.readMapEnd()
        return key, value, pairs
    return getattr(protocol, _READ[kind])()


def _write_struct(protocol: TCompactProtocol, fields: Fields) -> None:
    protocol.writeStructBegin("")
    for fid, kind, value in fields:
        protocol.writeFieldBegin("", kind, fid)
        _write_value(protocol, kind, value)
        protocol.writeFieldEnd()
    protocol.writeFieldStop()
    protocol.writeStructEnd()


def _write_value(protocol: TCompactProtocol, kind: int, value: Any) -> None:
    if kind == TType.STRUCT:
        _write_struct(protocol, value)
    elif kind in (TType.LIST, TType.SET):
        element, items = value
        protocol.writeListBegin(element, len(items))
        for item in items:
            _write_value(protocol, element, item)
        protocol.writeListEnd()
    elif kind == TType.MAP:
        key_kind, value_kind, pairs = value
        protocol.writeMapBegin(key_kind, value_kind, len(pairs))
        for key, item in pairs:
            _write_value(protocol, key_kind, key)
            _write_value(protocol, value_kind, item)
        protocol.writeMapEnd()
    else:
        getattr(protocol, _WRITE[kind])(value)
