"""``OptOutFilterOperator``: write the opted-out-free extract and its manifest, against a fresh list."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout.airflow.operators._extract import data_path, fail_closed
from optout.airflow.operators.base import Datasets, OptOutBaseOperator
from optout.airflow.tagging import ROLE_FILTER

if TYPE_CHECKING:
    from airflow.sdk import Context

    from optout.lineage import Namer


class OptOutFilterOperator(OptOutBaseOperator):
    """Filter the extract a spec describes with the store's current version, which must be fresh.

    Rows of opted-out, unchecked or unidentifiable people are removed (direct care and recorded
    exemptions are copied unfiltered). The output folder is swapped in whole, with ``manifest.json``.
    A missing or stale list fails the task without retries: waiting will not refresh it.
    XCom carries the folder, the manifest's path and counts; never data or NHS numbers.

    ``spec``, ``store_conn_id`` and ``max_age`` are :class:`OptOutBaseOperator`'s.

    :param out_dir: folder to write the extract into (default: ``<data dir>/extracts/<name>/<run id>``).
    """

    template_fields: Sequence[str] = (*OptOutBaseOperator.template_fields, "out_dir")
    optout_role = ROLE_FILTER
    ui_color = "#d9ead3"

    def __init__(self, *, out_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def execute(self, context: Context) -> dict[str, Any]:
        from optout import progress
        from optout.airflow.hooks.connections import airflow_resolver
        from optout.filter import run_filter

        with fail_closed(), progress.reporting(progress.to_log(self.log)):
            spec = self.load_spec()
            check_result = None
            if spec.filtered:
                version = self.store.require_current(max_age=self.max_age_limit)
                check_result = self.store.load(version.id)
                self.log.info("Filtering %r with list version %s", spec.name, version.id)
            out_dir = Path(self.out_dir) if self.out_dir else data_path("extracts", spec.name, context["run_id"])
            # a spec may name Airflow connections (warehouse, Spark, pseudonymisation key)
            manifest = run_filter(spec, out_dir, check_result, resolver=airflow_resolver())
        self.lineage_dirs = (out_dir, out_dir)
        self.log.info(
            "Wrote %s: %s rows in, %s out, %s removed",
            out_dir,
            manifest.rows_in,
            manifest.rows_out,
            manifest.rows_removed,
        )
        return {
            "out_dir": str(out_dir),
            "manifest": str(out_dir / "manifest.json"),
            "version_id": manifest.version_id,
            "rows_in": manifest.rows_in,
            "rows_out": manifest.rows_out,
            "rows_removed": manifest.rows_removed,
            "people_removed": manifest.people_removed_total,
        }

    def lineage_datasets(self, names: Namer, extract: Path, written: Path) -> Datasets:
        """The spec's sources in, the filtered extract out."""
        return names.sources(), names.outputs(extract)
