"""``OptOutBaseOperator``: what the filter, validate and export operators share.

Each names an extract spec, the store connection and the freshness limit; each opens the store once,
lazily (never in ``__init__``, so parsing a DAG opens nothing), and turns a library refusal into a
failure that is not retried (a stale list or a failed proof does not fix itself).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink

from optout.airflow.hooks.store import OptOutStoreHook
from optout.airflow.operators._extract import parse_max_age, spec_path
from optout.airflow.operators.links import GovernancePageLink, push_link
from optout.airflow.tagging import extract_key

if TYPE_CHECKING:
    from optout.lineage import DatasetName, Namer
    from optout.spec import ExtractSpec
    from optout.store import Store

Datasets = tuple[list["DatasetName"], list["DatasetName"]]


class OptOutBaseOperator(BaseOperator):
    """An operator over one extract spec and the opt-out store.

    :param spec: path of the extract spec (YAML); a relative path is taken from the DAG file's folder.
        The filter, validate and export tasks of one extract name the same spec.
    :param store_conn_id: the Airflow connection of the opt-out store and ledger (type ``optout_store``).
        When the default one is not defined, ``[optout] store_url`` or ``OPTOUT_STORE_URL`` is used.
    :param max_age: oldest list version accepted, such as ``"48h"`` (default: ``OPTOUT_MAX_AGE`` or 48h).
    """

    template_fields: Sequence[str] = ("spec", "max_age")
    operator_extra_links: Collection[BaseOperatorLink] = (GovernancePageLink(),)
    # Set by ``execute``: the extract's folder and the place this task wrote (for OpenLineage).
    lineage_dirs: tuple[Path, Path] | None = None

    def __init__(
        self,
        *,
        spec: str,
        store_conn_id: str = OptOutStoreHook.default_conn_name,
        max_age: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = str(spec)
        self.optout_spec = extract_key(spec)  # as written (``spec`` is rendered): the extract's identity
        self.store_conn_id = store_conn_id
        self.max_age = max_age

    def pre_execute(self, context: Any) -> None:
        """Every task of ours links to the governance page (Airflow 3's UI reads the link from XCom)."""
        link = GovernancePageLink()
        push_link(context, link, link.get_link(self, ti_key=None))

    @cached_property
    def store_hook(self) -> OptOutStoreHook:
        return OptOutStoreHook(self.store_conn_id)

    @property
    def store(self) -> Store:
        """The store, opened on first use and kept for the task."""
        return self.store_hook.store

    @property
    def store_url(self) -> str:
        return self.store_hook.url

    @property
    def max_age_limit(self) -> timedelta | None:
        """``max_age`` as a timedelta; None leaves the library's default."""
        return parse_max_age(self.max_age)

    @property
    def spec_file(self) -> Path:
        return spec_path(self, self.spec)

    def load_spec(self) -> ExtractSpec:
        from optout.spec import load_spec

        return load_spec(self.spec_file)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (called by its provider after success): datasets in and out, and an ``optout`` run
        facet with the purpose, the list version and what the opt-out removed, in counts."""
        if self.lineage_dirs is None:
            return None
        from optout.airflow.hooks.connections import airflow_resolver
        from optout.airflow.lineage import lineage
        from optout.lineage import Namer

        extract, written = self.lineage_dirs
        # a database table's namespace is its host, read from the spec's connection
        inputs, outputs = self.lineage_datasets(Namer(self.load_spec(), airflow_resolver()), extract, written)
        return lineage(extract, inputs, outputs)

    def lineage_datasets(self, names: Namer, extract: Path, written: Path) -> Datasets:
        """The datasets this task read and wrote, given the extract's folder and the place it wrote."""
        raise NotImplementedError
