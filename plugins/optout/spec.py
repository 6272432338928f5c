"""The extract spec: what one disclosure sends, why, and which columns say whose data each row is.

Loaded from YAML and validated before anything is read, so a mistake is reported against the spec
(file and key path, such as ``tables[2].nhs_number``) rather than half way through a filter. The same
dataclasses can be built in code for the pandas API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from optout.errors import InputError
from optout.homes.files.csv_dialect import DEFAULT as CSV_DEFAULT
from optout.homes.files.csv_dialect import CsvDialect
from optout.homes.files.formats import Format, format_of
from optout.homes.sql import backend_of, unsupported
from optout.purpose import LegalBasis, Purpose, check_exemption, parse_legal_basis, parse_purpose
from optout.spec_pseudonym import Pseudonymisation
from optout.spec_sql import check_database_table, is_table_name, refuse_output_over_input

MAX_SPEC_BYTES = 1 << 20
_TOP_KEYS = ("name", "purpose", "legal_basis", "legal_reference", "engine", "tables", "consented")
ENGINES = ("spark",)  # an engine named in the spec; without one, where the tables live decides
_WHERE_KEYS = ("name", "path", "table", "query", "connection")
_TABLE_KEYS = (*_WHERE_KEYS, "nhs_number", "person_key", "pseudonymised", "output", "scan_exclude", "csv")


@dataclass(frozen=True)
class ScanExclusion:
    """A column the leak scan does not read (on input nor output), named in the spec with the reason: the
    manifest, the ledger and the governance page show both (decision 0006)."""

    column: str
    reason: str


@dataclass(frozen=True)
class ConsentList:
    """Who consented: a file (CSV or Parquet) or a database table, and its NHS number column.

    People in it with a valid NHS number are kept whatever their opt-out; everyone else in the extract
    is filtered for the spec's purpose (:mod:`optout.exemptions`).
    """

    nhs_number: str
    path: Path | None = None
    table: str | None = None
    connection: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One table of an extract. ``path`` may be None when the table is given as a DataFrame.

    ``output`` is the file name under the output folder (default: the input's file name). A table in a
    database names a ``table`` (``schema.name``) or a ``query`` and a ``connection`` (a SQLAlchemy URL or
    an Airflow connection id); its ``output`` is a table in the same database (default ``<name>_optout``).
    ``pseudonymised`` says the ``nhs_number`` column holds a keyed hash of the number. ``scan_exclude``:
    columns the leak scan skips, each with a reason (never a declared column). ``csv`` is a CSV
    file's dialect (delimiter, quote, encoding); the output keeps it.
    """

    name: str
    path: Path | None = None
    nhs_number: str | None = None
    person_key: str | None = None
    output: str | None = None
    table: str | None = None
    query: str | None = None
    connection: str | None = None
    pseudonymised: Pseudonymisation | None = None
    scan_exclude: tuple[ScanExclusion, ...] = ()
    csv: CsvDialect = CSV_DEFAULT

    @property
    def in_database(self) -> bool:
        return bool(self.table or self.query)

    @property
    def output_name(self) -> str:
        if self.in_database:
            return self.output or f"{self.name}_optout"
        return self.output or (self.path.name if self.path else f"{self.name}.parquet")

    @property
    def format(self) -> Format:
        return format_of(self.output_name)


@dataclass(frozen=True)
class ExtractSpec:
    """An extract: name, purpose (with legal basis and reference when exempt) and tables."""

    name: str
    purpose: Purpose
    tables: tuple[TableSpec, ...]
    legal_basis: LegalBasis | None = None
    legal_reference: str | None = None
    source: Path | None = field(default=None, compare=False)
    engine: str | None = None  # "spark": tables are Spark tables or paths Spark reads, filtered in Spark
    consented: ConsentList | None = None  # people kept by their consent, whatever their opt-out

    def __post_init__(self) -> None:
        check_exemption(self.purpose, self.legal_basis, self.legal_reference, path=_text(self.source))
        _check_person_exemptions(self)
        names: set[str] = set()
        outputs: set[str] = set()
        for index, table in enumerate(self.tables):
            where = f"tables[{index}]"
            _check_table(table, self.source, where)
            if table.name in names:
                raise InputError(f"two tables are named {table.name!r}", path=self.source, field=f"{where}.name")
            if table.output_name in outputs:
                raise InputError(
                    f"two tables would write {table.output_name!r}; set a different output",
                    path=self.source,
                    field=f"{where}.output",
                )
            names.add(table.name)
            outputs.add(table.output_name)
        refuse_output_over_input(self.tables, self.source)
        connections = {table.connection for table in self.tables}
        if len(connections) > 1:
            raise InputError(
                "every table must live in the same database (one connection), or every table in files: "
                "an extract is filtered where its data lives",
                path=self.source,
                field="tables",
            )

    @property
    def connection(self) -> str | None:
        """The database connection of an extract held in a database (None for files, frames and Spark)."""
        return self.tables[0].connection if self.tables and self.engine is None else None

    @property
    def spark_connection(self) -> str | None:
        """A Spark extract's ``sc://`` URL or Airflow connection id (None: a local Spark session)."""
        return self.tables[0].connection if self.tables and self.engine == "spark" else None

    @property
    def outputs_connection(self) -> str | None:
        """What reaches the outputs where they live, to hash them again: a database extract's connection, a
        Spark extract's (None: files, or a local Spark session)."""
        return self.spark_connection if self.engine == "spark" else self.connection

    @property
    def filtered(self) -> bool:
        """False for direct care and recorded exemptions, which are copied unfiltered; an exemption for the
        rows without a usable NHS number filters every row that has one."""
        return self.purpose.applies_opt_out or self.legal_basis is LegalBasis.NO_NHS_NUMBER_DISPROPORTIONATE

    @property
    def keyed(self) -> bool:
        return any(table.person_key for table in self.tables)

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def load_spec(path: str | Path) -> ExtractSpec:
    """Read and validate a YAML extract spec; table paths are relative to the spec's folder."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise InputError("spec file not found", path=source) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise InputError(f"the spec is larger than {MAX_SPEC_BYTES} bytes; is this the right file?", path=source)
    document = _parse(raw, source)
    return _build(document, source)


def _parse(raw: bytes, source: Path) -> Any:
    try:
        text = raw.decode("utf-8-sig")
        # Anchors and aliases are refused: a few lines of them can expand to gigabytes.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark else None
                raise InputError("YAML anchors and aliases are not allowed in a spec", path=source, line=line)
        return yaml.safe_load(text)
    except UnicodeDecodeError:
        raise InputError("the spec is not UTF-8 text", path=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"not valid YAML: {problem}", path=source, line=line) from None


def _mapping(value: Any, allowed: tuple[str, ...], source: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError("expected a mapping of keys to values", path=source, field=where or None)
    for key in value:
        if key not in allowed:
            raise InputError(
                f"unknown key {key!r}; allowed: {', '.join(allowed)}",
                path=source,
                field=f"{where}.{key}" if where else str(key),
            )
    return value


def _string(value: Any, source: Path, where: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise InputError("expected a non-empty text value", path=source, field=where)
    return str(value).strip()


def _build(document: Any, source: Path) -> ExtractSpec:
    top = _mapping(document, _TOP_KEYS, source, "")
    name = _string(top.get("name"), source, "name")
    purpose = parse_purpose(top.get("purpose"), path=str(source))
    basis_text = top.get("legal_basis")
    basis = parse_legal_basis(basis_text, path=str(source)) if basis_text is not None else None
    reference = _string(top.get("legal_reference"), source, "legal_reference", required=False)
    tables = top.get("tables")
    if not isinstance(tables, list) or not tables:
        raise InputError("expected a list of one or more tables", path=source, field="tables")
    engine = _string(top.get("engine"), source, "engine", required=False)
    if engine is not None and engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}", path=source, field="engine")
    built = tuple(_table(entry, source, f"tables[{index}]", engine) for index, entry in enumerate(tables))
    assert name is not None
    consented = _consented(top.get("consented"), source)
    return ExtractSpec(
        name,
        purpose,
        built,
        legal_basis=basis,
        legal_reference=reference,
        source=source,
        engine=engine,
        consented=consented,
    )


def _consented(value: Any, source: Path) -> ConsentList | None:
    """The spec's ``consented:`` mapping: ``{path, nhs_number}`` or ``{table, connection, nhs_number}``."""
    if value is None:
        return None
    entry = _mapping(value, ("path", "table", "connection", "nhs_number"), source, "consented")
    number = _string(entry.get("nhs_number"), source, "consented.nhs_number")
    path_text = _string(entry.get("path"), source, "consented.path", required=False)
    table = _string(entry.get("table"), source, "consented.table", required=False)
    connection = _string(entry.get("connection"), source, "consented.connection", required=False)
    if (path_text is None) == (table is None):
        raise InputError("give exactly one of path and table", path=source, field="consented")
    if table is not None and connection is None:
        raise InputError("a table needs a connection (a SQLAlchemy URL)", path=source, field="consented.connection")
    if table is not None and not is_table_name(table):
        raise InputError("expected a table name such as schema.table", path=source, field="consented.table")
    assert number is not None
    path = source.parent / Path(path_text).expanduser() if path_text is not None else None
    return ConsentList(number, path=path, table=table, connection=connection)


def _check_person_exemptions(spec: ExtractSpec) -> None:
    """Where the exemptions applied person by person can be applied: consent by every engine to tables with
    NHS numbers (not to pseudonymised ones), the rows without a number by files, pandas and Spark (not
    to pseudonymised tables under Spark; the SQL engine would remove the people they keep). Whole-extract
    consent is refused with the other exemption rules (:func:`optout.purpose.check_exemption`)."""
    where = _text(spec.source)
    in_database = spec.engine is not None or any(table.in_database for table in spec.tables)
    if spec.consented is not None:
        hashed = any(table.pseudonymised for table in spec.tables)
        if not spec.purpose.applies_opt_out:
            raise InputError(
                f"consented: keeps people a secondary use would remove; purpose {spec.purpose.value!r} is not "
                "filtered, so it has no use here",
                path=where,
                field="consented",
            )
        if hashed:
            raise InputError(
                "consented: is applied to tables with NHS numbers, not to pseudonymised tables: filter the "
                "consented people's rows in a separate extract",
                path=where,
                field="consented",
            )
    if spec.legal_basis is LegalBasis.NO_NHS_NUMBER_DISPROPORTIONATE:
        hashed = any(table.pseudonymised for table in spec.tables)
        if in_database and (spec.engine != "spark" or hashed):
            raise InputError(
                "no_nhs_number_disproportionate is applied by the files and pandas engines, and by the Spark "
                "engine to tables that are not pseudonymised: export the tables to files first",
                path=where,
                field="legal_basis",
            )


def _table(entry: Any, source: Path, where: str, engine: str | None = None) -> TableSpec:
    table = _mapping(entry, _TABLE_KEYS, source, where)
    name = _string(table.get("name"), source, f"{where}.name")
    in_database = {key: _string(table.get(key), source, f"{where}.{key}", required=False) for key in ("table", "query")}
    connection = _string(table.get("connection"), source, f"{where}.connection", required=False)
    path: Path | None = None
    if sum(value is not None for value in (*in_database.values(), table.get("path"))) != 1:
        raise InputError("give exactly one of path, table and query", path=source, field=where)
    if table.get("path") is not None:
        path_text = _string(table.get("path"), source, f"{where}.path")
        assert path_text is not None
        path = source.parent / Path(path_text).expanduser()
        if connection is not None and engine is None:
            message = "a file has no connection; remove it or name a table"
            raise InputError(message, path=source, field=f"{where}.connection")
    elif connection is None and engine is None:
        raise InputError(
            "a table or query needs a connection: a SQLAlchemy URL or an Airflow connection id",
            path=source,
            field=f"{where}.connection",
        )
    elif connection is not None and engine is None:
        backend = backend_of(connection)
        refusal = unsupported(backend) if backend is not None else None
        if refusal:
            raise InputError(refusal, path=source, field=f"{where}.connection")
    assert name is not None
    number = _string(table.get("nhs_number"), source, f"{where}.nhs_number", required=False)
    key = _string(table.get("person_key"), source, f"{where}.person_key", required=False)
    output = _string(table.get("output"), source, f"{where}.output", required=False)
    pseudonymised = None
    if table.get("pseudonymised") is not None:
        pseudonymised = Pseudonymisation.parse(table["pseudonymised"], path=source, field=f"{where}.pseudonymised")
    return TableSpec(
        name,
        path,
        nhs_number=number,
        person_key=key,
        output=output,
        connection=connection,
        pseudonymised=pseudonymised,
        scan_exclude=_scan_exclude(table.get("scan_exclude"), source, f"{where}.scan_exclude"),
        csv=_csv_dialect(table, path, source, where),
        **in_database,
    )


def _scan_exclude(value: Any, source: Path, where: str) -> tuple[ScanExclusion, ...]:
    """``scan_exclude: [{column: NAME, reason: WHY}]``: each column once, each with a reason."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError("expected a list of {column: NAME, reason: WHY}", path=source, field=where)
    found: list[ScanExclusion] = []
    for index, entry in enumerate(value):
        item = _mapping(entry, ("column", "reason"), source, f"{where}[{index}]")
        column = _string(item.get("column"), source, f"{where}[{index}].column")
        reason = _string(item.get("reason"), source, f"{where}[{index}].reason")
        assert column is not None and reason is not None
        if any(known.column == column for known in found):
            raise InputError("this column is excluded twice", path=source, field=f"{where}[{index}].column")
        found.append(ScanExclusion(column, reason))
    return tuple(found)


def _csv_dialect(table: dict[str, Any], path: Path | None, source: Path, where: str) -> CsvDialect:
    """The ``csv:`` mapping of a CSV file's table (RFC 4180 in UTF-8 when absent)."""
    if table.get("csv") is None:
        return CSV_DEFAULT
    if path is None or path.suffix.lower() != ".csv":
        raise InputError("csv: describes a .csv file; this table is not one", path=source, field=f"{where}.csv")
    return CsvDialect.parse(table["csv"], path=source, field=f"{where}.csv")


def _check_table(table: TableSpec, source: Path | None, where: str) -> None:
    """Whose data each row is must be known; the output stays in the output folder in the input's format."""
    if not (table.nhs_number or table.person_key):
        raise InputError(
            "give nhs_number or person_key (or both): without one we cannot tell whose data a row is",
            path=source,
            field=where,
        )
    if table.pseudonymised is not None and not table.nhs_number:
        raise InputError("pseudonymised says how nhs_number was hashed: name that column", path=source, field=where)
    if any(excluded.column in (table.nhs_number, table.person_key) for excluded in table.scan_exclude):
        raise InputError(
            "a declared nhs_number or person_key column is never excluded from the leak scan",
            path=source,
            field=f"{where}.scan_exclude",
        )
    if table.in_database:
        check_database_table(table, source, where)
        return
    if table.path is not None:
        format_of(table.path, field=f"{where}.path", source=source)
    if "/" in table.name or "\\" in table.name or table.name.strip(".") == "":
        raise InputError(
            "a table name is a label, not a path: no '/', '\\' or '..'", path=source, field=f"{where}.name"
        )
    # The output name defaults to the input's file name (or the table's name): it must stay in the folder.
    pure = PurePosixPath(table.output_name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or Path(table.output_name).is_absolute():
        raise InputError(
            "an output name must be relative to the output folder, without '..'", path=source, field=f"{where}.output"
        )
    if table.output is None:
        return
    output_format = format_of(table.output, field=f"{where}.output", source=source)
    if table.path is not None and output_format is not format_of(table.path):
        raise InputError("an output keeps its input's format (.csv or .parquet)", path=source, field=f"{where}.output")
