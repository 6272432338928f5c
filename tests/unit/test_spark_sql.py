"""The Spark engine's pieces that need no Spark: SQL text, the join choice, the spec's engine key."""

from __future__ import annotations

from pathlib import Path

import pytest

from optout.errors import InputError
from optout.homes.spark_session import JoinChoice
from optout.homes.spark_sql import Unscannable, leak_candidates, number_sql, quote
from optout.spec import load_spec


def test_a_column_that_cannot_hold_numbers_is_refused() -> None:
    with pytest.raises(InputError, match="type date"):
        number_sql("born", "date", table="people")
    assert len(number_sql("nhs", "string", table="people").steps) == 5  # no expression written twice


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
