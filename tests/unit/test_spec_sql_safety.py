"""In a database the spec is a security boundary: a query only reads, an output never replaces an input."""

from __future__ import annotations

from pathlib import Path

import pytest

from optout.errors import InputError
from optout.spec import load_spec

URL = "sqlite:///x.db"


def spec(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"name: s\npurpose: research\ntables:\n  - {{name: t, connection: '{URL}', nhs_number: n, {table}}}\n"
    )
    return path


@pytest.mark.parametrize(
    "query",
    [
        "SELECT n FROM events",
        "with x as (select n from events) select * from x",
        "SELECT n, ';drop table events' AS note FROM events",
        "SELECT n FROM events -- trailing; comment",
    ],
)
def test_read_queries_are_accepted(tmp_path: Path, query: str) -> None:
    assert load_spec(spec(tmp_path, f'query: "{query}"')).tables[0].query


@pytest.mark.parametrize(
    "query",
    [
        "SELECT n FROM events; DROP TABLE events",
        "SELECT 1; SELECT 2",
        "SELECT n FROM events;",  # the query is run inside another: no semicolon at all
        "DROP TABLE events",
        "DELETE FROM events",
        "WITH d AS (DELETE FROM events RETURNING *) SELECT * FROM d",
        "SELECT * INTO copy_of_events FROM events",
        "INSERT INTO x SELECT * FROM events",
        "UPDATE events SET n = 1",
        "COPY events TO '/tmp/out.csv'",
        "CREATE TABLE x AS SELECT * FROM events",
        "ATTACH DATABASE 'x.db' AS x",
        "PRAGMA writable_schema = 1",
        "SELECT n FROM events) AS q; DROP TABLE events; SELECT * FROM (SELECT 1",
    ],
)
def test_anything_but_one_read_is_refused(tmp_path: Path, query: str) -> None:
    with pytest.raises(InputError) as refused:
        load_spec(spec(tmp_path, f'query: "{query}"'))
    assert refused.value.field == "tables[0].query"
    assert "events" not in str(refused.value)  # the query's text is never repeated


@pytest.mark.parametrize(
    ("table", "output"),
    [("events", "events"), ("main.events", "events"), ("events", "EVENTS"), ("a.events", "b.events")],
)
def test_an_output_may_not_name_an_input_table(tmp_path: Path, table: str, output: str) -> None:
    with pytest.raises(InputError, match="names a table the extract reads"):
        load_spec(spec(tmp_path, f"table: {table}, output: {output}"))
    assert load_spec(spec(tmp_path, f"table: {table}, output: {output}_out")).tables[0].output_name
