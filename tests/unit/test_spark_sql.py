"""The Spark engine's pieces that need no Spark: SQL text, the join choice, the spec's engine key, the
mapping of a classic session's py4j errors, the line-ending check of CSV inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from py4j.protocol import Py4JJavaError, Py4JNetworkError

from optout.errors import InputError
from optout.homes.files.csv_dialect import CsvDialect
from optout.homes.files.csv_strict import other_line_end
from optout.homes.spark_session import JoinChoice, SparkEngineError, spark_errors
from optout.homes.spark_sql import Unscannable, leak_candidates, number_sql, quote
from optout.spec import load_spec


def test_a_column_that_cannot_hold_numbers_is_refused() -> None:
    with pytest.raises(InputError, match="type date"):
        number_sql("born", "date", table="people")
    assert len(number_sql("nhs", "string", table="people").steps) == 6  # no expression written twice


def test_the_leak_scan_reads_every_type_that_can_hold_a_number() -> None:
    """Dates, flags and narrow integers hold none; text, numbers and nested values are scanned; an unknown
    type is unscannable (the proof fails rather than passing it unread)."""
    for kind in ("date", "timestamp", "boolean", "smallint", "void", "interval day to second"):
        assert leak_candidates("c", kind, 0) is None
    for kind in ("string", "binary", "int", "bigint", "double", "decimal(12,2)", "array<string>", "map<string,int>"):
        assert "named_struct('c', 3" in str(leak_candidates("c", kind, 3))
    assert "to_json" in str(leak_candidates("c", "struct<a:bigint>", 0))
    assert "length(`c`) >= 10" in str(leak_candidates("c", "string", 0))  # short cells are dropped first
    with pytest.raises(Unscannable):
        leak_candidates("c", "variant", 0)


def test_identifiers_are_backquoted() -> None:
    assert quote("db.my`table") == "`db`.`my``table`"


def test_the_join_is_chosen_by_size_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_SPARK_BROADCAST_ROWS", "10")
    assert JoinChoice.from_env().hint(10) == "broadcast" and JoinChoice.from_env().hint(11) == "shuffle_hash"
    monkeypatch.setenv("OPTOUT_SPARK_JOIN", "broadcast")
    assert JoinChoice.from_env().hint(10**9) == "broadcast"
    monkeypatch.setenv("OPTOUT_SPARK_JOIN", "fastest")
    with pytest.raises(InputError, match="OPTOUT_SPARK_JOIN"):
        JoinChoice.from_env()


def test_the_spec_names_the_spark_engine(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: s\npurpose: research\nengine: spark\ntables:\n"
        "  - {name: t, table: db.events, connection: 'sc://127.0.0.1:15002', nhs_number: nhs}\n"
    )
    loaded = load_spec(spec)
    assert loaded.engine == "spark" and loaded.spark_connection == "sc://127.0.0.1:15002"
    assert loaded.connection is None  # not a SQL database
    spec.write_text(spec.read_text().replace("engine: spark", "engine: flink"))
    with pytest.raises(InputError, match="unknown engine"):
        load_spec(spec)


def test_a_spark_sql_query_is_a_table_source(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: s\npurpose: research\nengine: spark\ntables:\n"
        "  - {name: t, query: 'SELECT * FROM db.events WHERE year = 2024', nhs_number: nhs}\n"
    )
    table = load_spec(spec).tables[0]
    assert table.query and table.in_database and table.output_name == "t_optout"


class _JavaError:
    """What py4j holds of a Java exception: its id on the JVM and the client that asks it for its text."""

    _target_id = "o1"

    def __init__(self, name: str, text: str) -> None:
        self.name, self.text = name, text
        self._gateway_client = self

    def send_command(self, command: str) -> str:
        return "ys" + self.text  # py4j's answer: success, a string

    def getClass(self) -> _JavaError:
        return self

    def getName(self) -> str:
        return self.name


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (lambda: Py4JJavaError("o1.count", _JavaError("org.apache.spark.SparkException", "row p1,943")), "refused"),
        (lambda: Py4JJavaError("o1.count", _JavaError("java.lang.OutOfMemoryError", "Java heap")), "out of memory"),
        (lambda: Py4JNetworkError("Answer from Java side is empty"), "refused"),
    ],
    ids=["java-error", "java-out-of-memory", "jvm-gone"],
)
def test_a_classic_sessions_py4j_errors_fail_closed(error: Any, message: str) -> None:
    """A classic session raises py4j's errors for what PySpark does not convert (a Java error it does not
    know, the JVM gone): they become the same one-line SparkEngineError as Spark Connect's, by class only."""
    with pytest.raises(SparkEngineError, match=message) as raised, spark_errors("filtering the extract"):
        raise error()
    assert "943" not in str(raised.value) and "nothing was written" in str(raised.value)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"a,b\r\n1,2\n3,4\r\n", 2),
        (b"a,b\n1,2\r\n3,4\n", 2),
        (b"a,b\r\n1,2\r3,4\r\n", 2),
        (b'a,b\n1,"x\r\ny"\n3,4\r\n', 4),
        (b'a,b\r\n1,"x\ny"\r\n3,4\r\n', None),
        (b"a,b\r1,2\r3,4", None),
    ],
)
def test_mixed_line_endings_are_found_outside_quotes(tmp_path: Path, data: bytes, line: int | None) -> None:
    """Spark's CSV reader takes the first line ending for the whole file; a file mixing them is named by
    its first other line (a line break inside a quoted value is the value's)."""
    (tmp_path / "x.csv").write_bytes(data)
    assert other_line_end(tmp_path / "x.csv", CsvDialect()) == line
    (tmp_path / "u.csv").write_bytes(data.decode().encode("utf-16"))
    assert other_line_end(tmp_path / "u.csv", CsvDialect(encoding="utf-16")) == line
