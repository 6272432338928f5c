"""Extra links on our tasks: the governance page, and the proof (Data Docs) of what an export sent.

Airflow 3's UI reads an operator link from the XCom key ``_link_<class>``, so each task pushes its links
while it runs (:func:`push_link`); ``get_link`` builds the same URL where no XCom is needed. URLs start
from ``[api] base_url``, so they are right behind a proxy or under a path prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import Context

PAGE_PREFIX = "/optout"


def page_url(path: str = "/") -> str:
    """A URL on the governance page, from ``[api] base_url`` (empty: a path relative to the UI's host)."""
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return f"{base}{PAGE_PREFIX}{path}"


class GovernancePageLink(BaseOperatorLink):
    """The National Data Opt-out page: the list's freshness, the flows and every disclosure."""

    name = "National Data Opt-out"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return page_url("/")


class DataDocsLink(BaseOperatorLink):
    """The Great Expectations Data Docs of the proof that the export's disclosure cites."""

    name = "Proof (Data Docs)"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return str(XCom.get_value(ti_key=ti_key, key=self.xcom_key) or "")


def data_docs_url(entry_id: int) -> str:
    return page_url(f"/data-docs/{entry_id}/index.html")


def push_link(context: Context, link: BaseOperatorLink, url: str) -> None:
    context["ti"].xcom_push(key=link.xcom_key, value=url)
