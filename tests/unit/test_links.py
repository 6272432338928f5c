"""Extra links: built from [api] base_url, declared in the provider info, carried by our operators."""

from __future__ import annotations

import pytest

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.links import DataDocsLink, GovernancePageLink, data_docs_url
from optout.airflow.provider import get_provider_info


def test_links_start_from_the_api_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.nhs.uk/team/")
    assert GovernancePageLink().get_link(None, ti_key=None) == "https://airflow.example.nhs.uk/team/optout/"
    assert data_docs_url(7) == "https://airflow.example.nhs.uk/team/optout/data-docs/7/index.html"


def test_operators_carry_the_links_and_the_provider_declares_them() -> None:
    assert {type(link) for link in OptOutFilterOperator.operator_extra_links} == {GovernancePageLink}
    assert {type(link) for link in GatedExportOperator.operator_extra_links} == {GovernancePageLink, DataDocsLink}
    declared = set(get_provider_info()["extra-links"])
    assert declared == {f"{cls.__module__}.{cls.__qualname__}" for cls in (GovernancePageLink, DataDocsLink)}


def test_the_optout_asset_scheme_is_registered() -> None:
    assert {"schemes": ["optout"], "handler": None} in get_provider_info()["asset-uris"]
