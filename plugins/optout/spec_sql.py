"""What a spec may ask of a database, checked when the spec loads: a ``query:`` is one statement that only
reads, table names are plain names, and an output never names (so never replaces) a table the extract
reads. The filter runs with the rights of a connection that may also write: this is a security boundary.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from optout.errors import InputError

if TYPE_CHECKING:
    from optout.spec import TableSpec

_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def is_table_name(name: str) -> bool:
    """A plain table name (letters, digits, ``_`` and ``$``, optionally ``schema.table``): never SQL text."""
    return bool(_SQL_NAME.match(name))


def check_database_table(table: TableSpec, source: Path | None, where: str) -> None:
    """A table in a database: its query reads only, and its input and output names are plain names."""
    if table.query is not None:
        check_query(table.query, source, f"{where}.query")
    if not is_table_name(table.output_name) or (table.table and not is_table_name(table.table)):
        raise InputError(
            "a database table name is letters, digits and _ (optionally schema.table)", path=source, field=where
        )


# Words that make a statement write, run code or change a session: a query may use none of them.
_NOT_READING = frozenset(
    {
        "INTO",
        "COPY",
        "CALL",
        "EXEC",
        "EXECUTE",
        "DO",
        "GRANT",
        "REVOKE",
        "LOCK",
        "VACUUM",
        "ANALYZE",
        "SET",
        "RESET",
        "LISTEN",
        "NOTIFY",
        "PREPARE",
        "DEALLOCATE",
        "ATTACH",
        "DETACH",
        "PRAGMA",
        "REINDEX",
        "LOAD",
    }
)


def check_query(query: str, source: Path | None, where: str) -> None:
    """A ``query:`` must be exactly one statement that only reads (SELECT, or WITH ... SELECT): it is parsed,
    never trusted, because the filter runs it with the rights of a connection that may also write.

    Parsing cannot see what a called function does (``pg_terminate_backend``, ``lo_export``): give the
    connection only the rights it needs (read the inputs, create the outputs).
    """
    import sqlparse
    from sqlparse import tokens

    statements = [s for s in sqlparse.parse(query) if s.token_first(skip_cm=True, skip_ws=True) is not None]
    if len(statements) != 1:
        raise InputError(f"a query must be one statement, not {len(statements)}", path=source, field=where)
    statement = statements[0]
    words = [t for t in statement.flatten() if t.ttype in tokens.Keyword or t.ttype in tokens.Name.Builtin]
    if (
        statement.get_type() != "SELECT"
        or any(t.ttype in tokens.Keyword.DDL for t in words)
        or any(t.ttype in tokens.Keyword.DML and t.normalized != "SELECT" for t in words)
        or any(t.normalized.upper() in _NOT_READING for t in words)
        or any(t.ttype is tokens.Punctuation and t.value == ";" for t in statement.flatten())
    ):
        raise InputError(
            "a query may only read: one SELECT (or WITH ... SELECT), without INTO, data-changing statements "
            "or session commands; name a table or a view instead",
            path=source,
            field=where,
        )


def _bare(name: str) -> str:
    return name.rpartition(".")[2].lower()


def refuse_output_over_input(tables: tuple[TableSpec, ...], source: Path | None) -> None:
    """In a database an output is a new table: it may never be, and so replace, a table the extract reads."""
    inputs = {table.table.lower() for table in tables if table.table} | {
        _bare(table.table) for table in tables if table.table
    }
    for index, table in enumerate(tables):
        if table.in_database and (table.output_name.lower() in inputs or _bare(table.output_name) in inputs):
            raise InputError(
                "this output names a table the extract reads: the filter would replace its own input; "
                "choose another output name",
                path=source,
                field=f"tables[{index}].output",
            )
