"""``OptOutFilterOperator``: write the opted-out-free extract and its manifest, against a fresh list."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from optout.airflow.operators._extract import data_path, fail_closed, parse_max_age, spec_path
from optout.airflow.tagging import ROLE_FILTER, extract_key

if TYPE_CHECKING:
    from airflow.sdk import Context


class OptOutFilterOperator(BaseOperator):
    """Filter the extract a spec describes with the store's current version, which must be fresh.

    Rows of opted-out, unchecked or unidentifiable people are removed (direct care and recorded
    exemptions are copied unfiltered). The output folder is swapped in whole, with ``manifest.json``.
    A missing or stale list fails the task without retries: waiting will not refresh it.
    XCom carries the folder, the manifest's path and counts; never data or NHS numbers.

    :param spec: path of the extract spec (YAML); a relative path is taken from the DAG file's folder.
        Downstream validate and export tasks name the same spec.
    :param out_dir: folder to write the extract into (default: ``<data dir>/extracts/<name>/<run id>``).
    :param max_age: oldest list version accepted, such as ``"48h"`` (default: ``OPTOUT_MAX_AGE`` or 48h).
    :param store_url: SQLAlchemy URL of the check store (default: ``OPTOUT_STORE_URL``).
    """

    template_fields: Sequence[str] = ("spec", "out_dir", "max_age")
    optout_role = ROLE_FILTER
    ui_color = "#d9ead3"

    def __init__(
        self,
        *,
        spec: str,
        out_dir: str | None = None,
        max_age: str | None = None,
        store_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = str(spec)
        self.optout_spec = extract_key(spec)  # as written (``spec`` is rendered): the extract's identity
        self.out_dir = out_dir
        self.max_age = max_age
        self.store_url = store_url

    def execute(self, context: Context) -> dict[str, Any]:
        from optout.airflow.hooks.connections import register_readers
        from optout.filter import run_filter
        from optout.spec import load_spec
        from optout.store import Store

        register_readers()  # a spec may name Airflow connections (warehouse, pseudonymisation key)
        with fail_closed():
            spec = load_spec(spec_path(self, self.spec))
            check_result = None
            if spec.filtered:
                store = Store(self.store_url)
                version = store.require_current(max_age=parse_max_age(self.max_age))
                check_result = store.load(version.id)
                self.log.info("Filtering %r with list version %s", spec.name, version.id)
            out_dir = Path(self.out_dir) if self.out_dir else data_path("extracts", spec.name, context["run_id"])
            manifest = run_filter(spec, out_dir, check_result)
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
