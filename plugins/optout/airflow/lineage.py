"""OpenLineage for the filter, validate and export tasks: datasets in and out, and an ``optout`` run facet.

The OpenLineage provider calls each operator's ``get_openlineage_facets_on_complete`` after a task
succeeds; the operator names its datasets and manifest and :func:`lineage` builds the answer. Imported
only then (never at DAG parse time), so a deployment without the provider is not slowed or broken.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from attrs import define
from openlineage.client.event_v2 import Dataset
from openlineage.client.facet_v2 import RunFacet

from optout import lineage as facts

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

FACET = "optout"


@define
class OptOutRunFacet(RunFacet):
    """Why the extract moved, against which opt-out list, and what the opt-out removed (counts by reason)."""

    extract: str
    purpose: str
    legalBasis: str | None
    legalReference: str | None
    filtered: bool
    listVersion: int | None
    listCheckedAt: str | None
    listAgeSeconds: int | None
    rowsIn: int
    rowsOut: int
    rowsRemovedByReason: dict[str, int]
    peopleRemovedByReason: dict[str, int]

    # Names and counts the secrets masker has no reason to touch.
    _additional_skip_redact = ["extract", "purpose", "legalBasis", "rowsRemovedByReason", "peopleRemovedByReason"]

    @staticmethod
    def _get_schema() -> str:
        # No published JSON schema (yet): a name that says so (.invalid never resolves); docs/lineage.md
        # describes the fields.
        return "https://optout.invalid/lineage/OptOutRunFacet.json#/$defs/OptOutRunFacet"


def lineage(manifest_dir: Path, inputs: list[facts.DatasetName], outputs: list[facts.DatasetName]) -> OperatorLineage:
    """The OpenLineage answer for one task: its datasets and the extract's ``optout`` run facet."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    from optout.manifest import read_manifest

    manifest = read_manifest(manifest_dir)
    return OperatorLineage(
        inputs=[_dataset(name) for name in inputs],
        outputs=[_dataset(name) for name in outputs],
        run_facets={FACET: OptOutRunFacet(**facts.run_facts(manifest))},
    )


def _dataset(name: facts.DatasetName) -> Dataset:
    return Dataset(namespace=name.namespace, name=name.name)
