"""How a table's CSV file is written: the spec's ``csv:`` mapping, validated when the spec is loaded.

Imports nothing heavy (the spec loads without Arrow). Anything the spec does not declare is RFC 4180 in
UTF-8 (a BOM allowed): a file that differs is refused by the reader, never guessed at, because a
misread file is how an opted-out person's number slips past both the filter and the proof.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optout.errors import InputError

DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\t", "tab": "\t"}
QUOTE = '"'  # RFC 4180's: Arrow writes no other, so an output could not keep another
# Encodings whose files Windows and NHS tools write; each is decoded strictly (a byte that is not a
# character of the encoding is refused, naming its line).
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16", "utf-16-le", "utf-16-be")
_KEYS = ("delimiter", "quote", "encoding", "header")


@dataclass(frozen=True)
class CsvDialect:
    """A CSV file's delimiter, quote and encoding. ``utf-8`` and ``utf-8-sig`` both read a file with or
    without a BOM; an output keeps its input's BOM, line endings and quoting either way."""

    delimiter: str = ","
    quote: str = QUOTE
    encoding: str = "utf-8"

    @property
    def utf16(self) -> bool:
        return self.encoding.startswith("utf-16")

    @property
    def utf8(self) -> bool:
        return self.encoding.startswith("utf-8")

    @classmethod
    def parse(cls, value: Any, *, path: str | Path | None = None, field: str = "csv") -> CsvDialect:
        """Validate the spec's ``csv:`` mapping: ``{delimiter: ",", quote: '"', encoding: utf-8, header: true}``."""
        if not isinstance(value, Mapping):
            raise InputError('expected a mapping such as {delimiter: ",", encoding: cp1252}', path=path, field=field)
        for key in value:
            if key not in _KEYS:
                raise InputError(f"unknown key {key!r}; allowed: {', '.join(_KEYS)}", path=path, field=f"{field}.{key}")
        delimiter = DELIMITERS.get(str(value.get("delimiter", ",")))
        if delimiter is None:
            shown = ", ".join(repr(d) for d in DELIMITERS if d != "\t")
            raise InputError(f"a delimiter is one of {shown}", path=path, field=f"{field}.delimiter")
        if str(value.get("quote", QUOTE)) != QUOTE:
            raise InputError(f"the quote character is {QUOTE!r} (RFC 4180)", path=path, field=f"{field}.quote")
        if value.get("header", True) is not True:
            raise InputError(
                "a CSV extract needs a header row naming its columns (header: true)", path=path, field=f"{field}.header"
            )
        encoding = str(value.get("encoding", "utf-8")).strip().lower().replace("_", "-")
        encoding = {"utf8": "utf-8", "windows-1252": "cp1252", "latin1": "latin-1", "iso-8859-1": "latin-1"}.get(
            encoding, encoding
        )
        if encoding not in ENCODINGS:
            raise InputError(f"an encoding is one of {', '.join(ENCODINGS)}", path=path, field=f"{field}.encoding")
        return cls(delimiter, QUOTE, encoding)


DEFAULT = CsvDialect()
