"""No value from the data in any message: every error path of the CLI, driven with a canary cohort (valid
NHS numbers and distinctive names in every column, header cells that are really data), and everything it
printed, logged and wrote (outputs, manifests, GX artefacts, result.json, the ledger) scanned for any
canary value. The Airflow operators' side is tests/integration/test_canary_in_airflow.py."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from optout.cli import main
from optout.store import Store
from tests import canary

SPEC = "name: canary\npurpose: research\ntables:\n"
TABLE = "  - {{name: people, path: {path}, nhs_number: nhs_number{extra}}}\n"


def spec(folder: Path, path: str, extra: str = "", text: str | None = None) -> str:
    (folder / "spec.yaml").write_text(text if text is not None else SPEC + TABLE.format(path=path, extra=extra))
    return str(folder / "spec.yaml")


def filtered(folder: Path, out: Path) -> list[str]:
    return ["filter", "--spec", str(folder / "spec.yaml"), "--out-dir", str(out)]


# Each case: (name, prepare(input folder, output folder) -> argv, exit code expected).
def header_is_data(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv", header=False)
    spec(src, "people.csv")
    return filtered(src, out)


def parquet_header_is_data(src: Path, out: Path) -> list[str]:
    canary.write_parquet(src / "people.parquet", names_are_data=True)
    spec(src, "people.parquet")
    return filtered(src, out)


def ragged_row(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv", extra=f"{canary.NUMBERS[0]},{canary.NAMES[0]},x,y,{canary.NAMES[1]}\n")
    spec(src, "people.csv")
    return filtered(src, out)


def unclosed_quote(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv", extra=f'{canary.NUMBERS[1]},"{canary.NAMES[2]},x,y\n')
    spec(src, "people.csv")
    return filtered(src, out)


def not_utf8(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv")
    with (src / "people.csv").open("ab") as handle:
        handle.write(f"{canary.NUMBERS[2]},{canary.NAMES[0]}\xff,x,y\n".encode("latin-1"))
    spec(src, "people.csv")
    return filtered(src, out)


def not_parquet(src: Path, out: Path) -> list[str]:
    (src / "people.parquet").write_bytes(f"{canary.NUMBERS[0]} {canary.NAMES[0]}".encode() * 40)
    spec(src, "people.parquet")
    return filtered(src, out)


def missing_file(src: Path, out: Path) -> list[str]:
    spec(src, "gone.csv")
    return filtered(src, out)


def bad_spec(src: Path, out: Path) -> list[str]:
    spec(src, "", text=f"name: canary\npurpose: research\ntables: {{people: {canary.NUMBERS[0]}}}\n")
    return filtered(src, out)


def spec_declares_a_missing_column(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv")
    spec(src, "people.csv", extra=", person_key: person_id")
    return filtered(src, out)


def undeclared_numbers(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv")  # notes and kin hold opted-out people's numbers
    spec(src, "people.csv")
    return filtered(src, out)


def number_column_of_dates(src: Path, out: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"nhs_number": pa.array([0, 1], pa.date32()), "name": canary.NAMES[:2]}), src / "p.parquet")
    spec(src, "p.parquet")
    return filtered(src, out)


def sql_two_statements(src: Path, out: Path) -> list[str]:
    with sqlite3.connect(src / "x.db") as conn:
        conn.execute("CREATE TABLE people (nhs_number TEXT, name TEXT, notes TEXT, kin TEXT)")
        conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", canary.rows())
    query = f"SELECT * FROM people; DELETE FROM people WHERE name = '{canary.NAMES[0]}'"
    text = SPEC + (
        f'  - {{name: people, query: "{query}", connection: "sqlite:///{src / "x.db"}", nhs_number: nhs_number}}\n'
    )
    spec(src, "", text=text)
    return filtered(src, out)


def sql_missing_column(src: Path, out: Path) -> list[str]:
    with sqlite3.connect(src / "x.db") as conn:
        names = ", ".join(f'"{cell}" TEXT' for cell in canary.rows()[0])  # a table whose column names are data
        conn.execute(f"CREATE TABLE people ({names})")
    text = SPEC + f'  - {{name: people, table: people, connection: "sqlite:///{src / "x.db"}", nhs_number: nhs}}\n'
    spec(src, "", text=text)
    return filtered(src, out)


def cohort_header_is_data(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "cohort.csv", header=False)
    return ["check", "request", str(src / "cohort.csv"), "--id-column", "nhs_number", "--out", str(out / "r.dat")]


def reply_not_requested(src: Path, out: Path) -> list[str]:
    from optout.ndop import write_request

    write_request(src / "request.dat", canary.CLEARED)
    (src / "reply.dat").write_text("".join(f"{n}\n" for n in canary.NUMBERS) + f"{canary.NAMES[0]}\n")
    return ["check", "import", str(src / "request.dat"), str(src / "reply.dat")]


def spec_check_header_is_data(src: Path, out: Path) -> list[str]:
    canary.write_csv(src / "people.csv", header=False)
    spec(src, "people.csv")
    return ["spec", "check", str(src / "spec.yaml"), "--json"]


def spec_check_undeclared(src: Path, out: Path) -> list[str]:
    canary.write_parquet(src / "people.parquet")
    spec(src, "people.parquet")
    return ["spec", "check", str(src / "spec.yaml")]


CASES: list[tuple[Callable[[Path, Path], list[str]], int]] = [
    (header_is_data, 2),
    (parquet_header_is_data, 2),
    (ragged_row, 2),
    (unclosed_quote, 2),
    (not_utf8, 2),
    (not_parquet, 2),
    (missing_file, 2),
    (bad_spec, 2),
    (spec_declares_a_missing_column, 2),
    (undeclared_numbers, 1),
    (number_column_of_dates, 2),
    (sql_two_statements, 2),
    (sql_missing_column, 2),
    (cohort_header_is_data, 2),
    (reply_not_requested, 2),
    (spec_check_header_is_data, 2),  # the CSV reader refuses a header row of numbers (bad input)
    (spec_check_undeclared, 1),
]


@pytest.fixture
def seeded() -> Store:
    store = Store()
    canary.seed(store)
    return store


def scan_everything(tmp_path: Path, printed: str) -> dict[str, list[str]]:
    """What was printed or logged, and every file written outside the inputs and the store, but the
    extract's own data files (which hold cleared people's data by design)."""
    leaks = {"printed": canary.found_in(printed)} if canary.found_in(printed) else {}
    written = [p for p in tmp_path.iterdir() if p.name not in ("src", "optout-home")]
    found = canary.found_in_files(written)
    return leaks | {path: hits for path, hits in found.items() if not path.endswith(DATA)}


DATA = ("/extract/people.parquet",)


@pytest.mark.parametrize(("prepare", "exit_code"), CASES, ids=[prepare.__name__ for prepare, _ in CASES])
def test_no_error_path_of_the_cli_shows_a_value(
    tmp_path: Path,
    seeded: Store,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    prepare: Callable[[Path, Path], list[str]],
    exit_code: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    if prepare is cohort_header_is_data:
        out.mkdir()
    code = main(prepare(src, out))
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    assert code == exit_code, text
    assert "Traceback" not in text
    assert scan_everything(tmp_path, text) == {}


def test_the_rest_of_the_cli_with_the_canary_cohort(
    tmp_path: Path, seeded: Store, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The paths that write: an unchecked person removed, the proof failing on a tampered output (GX
    artefacts, result.json), a stale list, the ledger; and a store URL that is not a database."""
    caplog.set_level(logging.DEBUG)
    src = tmp_path / "src"
    src.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    people = [*canary.NUMBERS, 9_996_400_000 + 3]  # the last one was never checked (not in the version)
    names = [canary.NAMES[i % 3] for i in range(len(people))]
    pq.write_table(pa.table({"nhs_number": [str(n) for n in people], "name": names}), src / "people.parquet")
    spec(src, "people.parquet")
    codes = [main(filtered(src, tmp_path / "extract"))]
    # A canary put back into the output: the proof fails and says where, never what.
    table = pq.read_table(tmp_path / "extract" / "people.parquet")
    pq.write_table(table.set_column(1, "name", pa.array([str(canary.OPTED_OUT[0])] * len(table))), src / "x.parquet")
    (src / "x.parquet").replace(tmp_path / "extract" / "people.parquet")
    codes.append(main(["verify", "--spec", str(src / "spec.yaml"), "--dir", str(tmp_path / "extract")]))
    codes.append(main(["ledger", "export", "--out", str(tmp_path / "ledger.csv")]))
    with pytest.MonkeyPatch.context() as patch:  # the list is older than the maximum age: stale
        patch.setenv("OPTOUT_MAX_AGE", "1s")
        time.sleep(1.1)
        codes.append(main(filtered(src, tmp_path / "stale")))
    (src / "not-a-db").write_text(f"{canary.NUMBERS[0]} {canary.NAMES[0]}\n" * 50)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTOUT_STORE_URL", f"sqlite:///{src / 'not-a-db'}")
        codes.append(main(["status"]))
        patch.setenv("OPTOUT_STORE_URL", "not a url at all")
        codes.append(main(["status"]))
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    assert codes == [0, 1, 0, 1, 2, 2], text
    assert "Traceback" not in text
    assert scan_everything(tmp_path, text) == {}


def test_the_canary_scan_is_not_blind(tmp_path: Path) -> None:
    """The scan finds every shape of every canary, in text and in the files the cases write."""
    for number in canary.NUMBERS:
        for shape in canary.shapes(number):
            assert canary.found_in(f"x{shape}y") == [shape]
    assert canary.found_in(b"ZEBEDEE") == ["ZEBEDEE"]
    paths = [canary.write_csv(tmp_path / "a.csv"), canary.write_parquet(tmp_path / "b.parquet")]
    assert set(canary.found_in_files(paths)) == {str(path) for path in paths}
