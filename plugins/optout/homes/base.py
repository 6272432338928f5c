"""The extract-home seam: one class per place an extract's tables live, with what every caller needs.

A home is chosen once, from the spec (:func:`optout.homes.home_for`) or, for an extract already
written, from its manifest's ``engine`` (:func:`optout.homes.home_of`). The filter, the proof, the
validation and the gate then ask the home, never the spec or the manifest, where the data is. A new
place to keep extracts (Spark, a warehouse with no SQLAlchemy dialect) is one new subclass and one
entry in :data:`optout.homes.HOMES` (and a line in :func:`optout.homes.home_for`). See
``docs/decisions/0007-extract-home.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pyarrow as pa

    from optout.clearance import CheckResultLike
    from optout.homes.sql.run import TableMeasure
    from optout.input_scan import InputScan
    from optout.manifest import TableReport
    from optout.resolver import Reader
    from optout.spec import ExtractSpec, TableSpec


class ExtractHome(ABC):
    """Where one extract's tables are read from and its outputs written to.

    :param spec: the extract; None for a home rebuilt from a manifest only to check its outputs.
    :param secret: reads the password of a connection id (a pseudonymisation key's ``key_conn``), handed
        in by the caller (see :mod:`optout.resolver`); None outside Airflow.
    """

    engine: ClassVar[str]  # the manifest's ``engine``: which home wrote the outputs
    holds_files: ClassVar[bool]  # outputs are files in the extract folder (else: tables, and the folder
    # holds only the manifest)

    def __init__(self, spec: ExtractSpec | None, *, secret: Reader | None = None) -> None:
        self._spec = spec
        self.secret = secret

    @classmethod
    def for_outputs(cls, database: Any = None) -> ExtractHome:
        """A home that only reads a written extract's outputs (no spec): see :func:`optout.homes.home_of`."""
        return cls(None)

    @property
    def spec(self) -> ExtractSpec:
        if self._spec is None:
            raise ValueError(f"this {type(self).__name__} was built from a manifest: it has no spec to read")
        return self._spec

    # -- writing an extract

    @abstractmethod
    def filter(
        self, staging: Path, check_result: CheckResultLike, scan: InputScan | None = None
    ) -> tuple[list[TableReport], dict[str, int]]:
        """Remove every row that may not be used; outputs go to ``staging`` (files) or beside the inputs
        (tables). Returns each table's report and the people removed by first reason. A home that reads
        every column while filtering gives its batches to ``scan`` (see :meth:`scan_inputs`)."""

    def scan_inputs(self, scan: InputScan) -> None:
        """Give every input's batches to the input leak scan before filtering (:mod:`optout.input_scan`).
        A home whose filter reads every column anyway feeds ``scan`` from that pass instead."""
        for table in self.spec.tables:
            scan.batches(table.name, self.input_batches(table))

    @abstractmethod
    def copy(self, staging: Path) -> list[TableReport]:
        """Copy every table unfiltered (direct care, exempt), hashed the same way."""

    # -- reading what was written (the proof, validation and the gate)

    @abstractmethod
    def hashes(self, out_dir: Path, names: Iterable[str]) -> dict[str, str | None]:
        """Each named output's hash now, as the manifest records it (a file's sha256, a table's content
        hash); None for an output that is missing."""

    @abstractmethod
    def output_batches(
        self, out_dir: Path, table: TableSpec, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Every row of one output, the named columns (all when None), as Arrow record batches: what an
        independent proof scans, cell by cell."""

    @abstractmethod
    def input_batches(self, table: TableSpec, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Every row of one input, as Arrow record batches (the proof learns again who was removed)."""

    def measure_in_place(self, out_dir: Path, check_result: CheckResultLike | None) -> list[TableMeasure] | None:
        """Each output's counts and hash computed where it lives (the figures :mod:`optout.proof` gives GX),
        or None when the proof reads the outputs itself (files). Only counts and hashes come back."""
        return None

    def output_names(self, out_dir: Path) -> list[str]:
        """What sits where the outputs are, by name (files in the folder; for tables, the folder's files):
        the proof refuses anything its manifest does not list."""
        return sorted(path.name for path in Path(out_dir).iterdir())
