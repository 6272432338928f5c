"""The extract-home seam: chosen once from the spec (or a written manifest), the same operations for
every home, and what the proof reads (every output column as Arrow batches, hashes as the manifest)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa
from filter_data import N, check_result, write_extract

from optout.errors import InputError, VerificationFailed
from optout.filter import run_filter
from optout.homes import home_for, home_of
from optout.homes.files.home import FilesHome
from optout.homes.frames import FramesHome
from optout.homes.sql.home import SqlHome
from optout.manifest import read_manifest
from optout.spec import load_spec


def test_files_home_reads_what_it_wrote(tmp_path: Path) -> None:
    spec = load_spec(write_extract(tmp_path / "in"))
    home = home_for(spec)
    assert isinstance(home, FilesHome) and home.holds_files
    manifest = run_filter(spec, tmp_path / "out", check_result())
    again = home_of(manifest)
    names = [table.file for table in manifest.tables]
    assert again.hashes(tmp_path / "out", [*names, "gone.csv"]) == {
        **{table.file: table.sha256 for table in manifest.tables},
        "gone.csv": None,
    }
    for table in spec.tables:
        rows = sum(batch.num_rows for batch in again.output_batches(tmp_path / "out", table))
        assert rows == manifest.table(table.name).rows_out
        assert sum(b.num_rows for b in home.input_batches(table)) == manifest.table(table.name).rows_in
    assert home.measure_in_place(tmp_path, check_result()) is None


def test_frames_home_writes_files(tmp_path: Path) -> None:
    spec = load_spec(write_extract(tmp_path / "in"))
    frames = {"patients": pd.DataFrame({"nhs_number": [str(N[0]), str(N[6])], "pid": ["a", "b"]})}
    spec = type(spec)(spec.name, spec.purpose, (spec.table("patients"),))
    home = home_for(spec, frames=frames)
    assert isinstance(home, FramesHome)
    manifest = run_filter(spec, tmp_path / "out", check_result(), frames)
    assert manifest.engine == "frames" and isinstance(home_of(manifest), FilesHome)
    assert [b.num_rows for b in home.input_batches(spec.table("patients"), ["nhs_number"])] == [2]


def test_sql_home_streams_outputs_and_hashes_as_the_manifest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE patients (nhs TEXT, pid TEXT, note TEXT)")
        rows = [(str(N[0]), "a", "x"), (str(N[6]), "b", None), (str(N[1]), "c", "z")]
        conn.exec_driver_sql("INSERT INTO patients VALUES (?, ?, ?)", rows)
    engine.dispose()
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        f"name: sql\npurpose: research\ntables:\n  - {{name: patients, table: patients, connection: '{url}',"
        " nhs_number: nhs, person_key: pid}\n"
    )
    spec = load_spec(spec_path)
    home = home_for(spec)
    assert isinstance(home, SqlHome) and not home.holds_files
    manifest = run_filter(spec, tmp_path / "out", check_result())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json"]
    table = spec.table("patients")
    batches = list(home.output_batches(tmp_path / "out", table))
    assert sum(b.num_rows for b in batches) == 2 and batches[0].schema.names == ["nhs", "pid", "note"]
    assert [b.num_rows for b in home.input_batches(table, ["nhs"])] == [3]
    assert home_of(read_manifest(tmp_path / "out"), database=url).hashes(tmp_path / "out", ["patients_optout"]) == {
        "patients_optout": manifest.table("patients").sha256
    }
    measured = home.measure_in_place(tmp_path, check_result())
    assert measured is not None and measured[0].uncleared_numbers == 0
    with pytest.raises(VerificationFailed):
        home_of(manifest).hashes(tmp_path / "out", ["patients_optout"])  # no database given


def test_an_unknown_engine_or_database_is_refused(tmp_path: Path) -> None:
    spec = load_spec(write_extract(tmp_path / "in"))
    manifest = run_filter(spec, tmp_path / "out", check_result())
    with pytest.raises(InputError, match="unknown engine"):
        home_of(type(manifest)(**{**manifest.__dict__, "engine": "punched_cards"}))
    from optout.homes.sql.dialects import dialect_for

    with pytest.raises(InputError, match="not supported"):
        dialect_for(SimpleNamespace(dialect=SimpleNamespace(name="informix")))  # type: ignore[arg-type]
