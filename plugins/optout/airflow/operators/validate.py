"""``OptOutValidateOperator``: prove the filtered extract before anything may send it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from optout.airflow.operators._extract import fail_closed, filtered_dir
from optout.airflow.operators.base import Datasets, OptOutBaseOperator
from optout.airflow.tagging import ROLE_VALIDATE

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import Context

    from optout.lineage import Namer


class OptOutValidateOperator(OptOutBaseOperator):
    """Run the Great Expectations proof on what the upstream filter of the same spec wrote.

    It proves no row carries an opted-out or unchecked number or a removed person's key, that rows and
    hashes reconcile with the manifest, and that the list was fresh and is still current. The result is
    kept beside the extract for the gated export; a failed proof fails the task without retries.

    ``spec`` (the upstream filter's), ``store_conn_id`` and ``max_age`` are :class:`OptOutBaseOperator`'s.

    :param data_docs_dir: folder for this run's Data Docs site (default: beside the extract).
    """

    template_fields: Sequence[str] = (*OptOutBaseOperator.template_fields, "data_docs_dir")
    optout_role = ROLE_VALIDATE
    ui_color = "#cfe2f3"

    def __init__(self, *, data_docs_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_docs_dir = data_docs_dir

    def execute(self, context: Context) -> dict[str, Any]:
        from optout import progress
        from optout.airflow.hooks.connections import airflow_resolver
        from optout.manifest import read_manifest
        from optout.validation import run_validation

        out_dir = filtered_dir(self, self.spec, context)
        self.lineage_dirs = (out_dir, out_dir)
        with fail_closed(), progress.reporting(progress.to_log(self.log)):
            spec = self.load_spec()
            manifest = read_manifest(out_dir)
            store = self.store
            check_result = store.load(manifest.version_id) if manifest.version_id is not None else None
            result = run_validation(
                spec,
                out_dir,
                check_result,
                data_docs_dir=self.data_docs_dir,
                max_age=self.max_age_limit,
                current=store.current(),
                store_url=store.url,
                resolver=airflow_resolver(),  # a database extract is measured through the spec's connection
            )
        checks = {check.name: check.ok for check in result.checks}
        if not result.ok:
            failed = ", ".join(name for name, ok in checks.items() if not ok)
            raise AirflowFailException(f"the filtered extract failed validation ({failed}); see {result.result_path}")
        self.log.info("Validated %s: %s", out_dir, checks)
        return {
            "ok": result.ok,
            "checks": checks,
            "result_path": str(result.result_path),
            "data_docs_index": str(result.data_docs_index) if result.data_docs_index else None,
        }

    def lineage_datasets(self, names: Namer, extract: Path, written: Path) -> Datasets:
        """The filtered extract it proved; it writes no dataset (its result stays beside the extract)."""
        return names.outputs(extract), []
