"""Remove every row that may not be used, with one semantics whatever holds the data.

``run_filter`` writes the filtered tables and ``manifest.json`` into a staging folder that replaces
``out_dir`` only when every table succeeded. Where the tables live is the extract's home
(:func:`optout.homes.home_for`): files (CSV/Parquet, streamed), pandas DataFrames, or tables in a
database (filtered there; only ``manifest.json`` is written to ``out_dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optout.atomic import staging_dir
from optout.cascade import require_check
from optout.clearance import CheckResultLike, no_removals
from optout.errors import InputError
from optout.exemptions import effective, kept_counts
from optout.homes import home_for
from optout.input_scan import InputScan
from optout.manifest import Manifest, new_manifest

if TYPE_CHECKING:
    import pandas as pd

    from optout.homes.base import ExtractHome
    from optout.resolver import Resolver
    from optout.spec import ExtractSpec


def run_filter(
    spec: ExtractSpec,
    out_dir: str | Path,
    check_result: CheckResultLike | None,
    frames: dict[str, pd.DataFrame] | None = None,
    *,
    home: ExtractHome | None = None,
    resolver: Resolver | None = None,
) -> Manifest:
    """Filter ``spec``'s tables (its files, or ``frames`` keyed by table name) into ``out_dir``.

    Outputs keep each table's file name, format, columns and types; ``out_dir`` is replaced whole,
    manifest included, or left untouched on any error. ``check_result`` may be None only for an
    extract that is copied unfiltered (direct care, exempt). Every input's undeclared columns are scanned
    for uncleared NHS numbers (:mod:`optout.input_scan`): one found refuses the extract, nothing written.
    ``home``: where the tables live, when the caller chose it; else :func:`home_for` decides, with
    ``resolver`` reading the connection ids the spec names (the Airflow skin's; by default URLs only).
    """
    require_check(spec, check_result)
    check_result = effective(spec, check_result, resolver)  # consent and rows without a number, person by person
    _refuse_odd_out_dir(Path(out_dir))
    _refuse_overlap(spec, Path(out_dir))
    home = home or home_for(spec, frames=frames, resolver=resolver)
    with staging_dir(out_dir) as staging:
        scanned = None
        if check_result is not None and spec.filtered:
            scan = InputScan(spec, check_result.cleared_set)
            home.scan_inputs(scan)
            scan.require_clean()  # before a database home writes its output tables
            reports, people = home.filter(staging, check_result, scan)
            scan.require_clean()  # a home that scanned while filtering: before its outputs are swapped in
            scanned = scan.summary()
        else:
            reports, people = home.copy(staging), no_removals()
        manifest = new_manifest(
            spec,
            check_result,
            engine=home.engine,
            tables=reports,
            people_removed=people,
            kept=kept_counts(check_result),
            input_scan=scanned,
        )
        manifest.write(staging)
    return manifest


def _refuse_odd_out_dir(out_dir: Path) -> None:
    """The output folder is swapped in whole: an existing file or a symbolic link there would be replaced
    (lost, or followed somewhere else), so either is refused before anything is written."""
    if out_dir.is_symlink():
        raise InputError("the output folder is a symbolic link: name the folder itself", path=out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output folder is an existing file: choose a folder", path=out_dir)


def _refuse_overlap(spec: ExtractSpec, out_dir: Path) -> None:
    """The output folder is replaced whole, and a later run could take what is inside an input folder for
    input: it must not be, hold, or lie inside an input's folder, nor be or hold the spec's."""
    out = out_dir.resolve()
    for index, table in enumerate(spec.tables):
        if table.path is not None:
            inputs = table.path.parent.resolve()
            if out == inputs or out in inputs.parents or inputs in out.parents:
                _overlap(spec, out_dir, table.path.parent, f"tables[{index}].path")
    if spec.source is not None:
        folder = spec.source.parent.resolve()
        if out == folder or out in folder.parents:
            _overlap(spec, out_dir, spec.source.parent, "--out-dir")


def _overlap(spec: ExtractSpec, out_dir: Path, folder: Path, field: str) -> None:
    raise InputError(
        f"the output folder {out_dir} overlaps the input folder {folder}: filtering would replace or mix with "
        "the inputs; choose an output folder outside them",
        path=spec.source,
        field=field,
    )
