"""The Spark engine's pieces that need no Spark: SQL text, the join choice, the spec's engine key."""

from __future__ import annotations

from pathlib import Path

import pytest

from optout.errors import InputError
from optout.homes.spark import JoinChoice
from optout.homes.spark_sql import number_sql, quote
from optout.spec import load_spec


def test_a_column_that_cannot_hold_numbers_is_refused() -> None:
    with pytest.raises(InputError, match="type date"):
        number_sql("born", "date", table="people")
    assert len(number_sql("nhs", "string", table="people").steps) == 5  # no expression written twice


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
