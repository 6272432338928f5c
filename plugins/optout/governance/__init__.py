"""Governance records: the page's content, the register of flows, the evidence pack, the data uses
register and retention. Pure library code over the store and the ledger; Airflow serves the page
(``optout.airflow.page``) and the CLI prints the rest. Counts, names and dates only."""

from __future__ import annotations

from optout.governance.overview import Overview, overview
from optout.governance.page import render

__all__ = ["Overview", "overview", "render"]
