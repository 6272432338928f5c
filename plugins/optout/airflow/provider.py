"""Provider metadata (entry point ``apache_airflow_provider``): makes the ``mesh`` connection type known."""

from __future__ import annotations

from typing import Any

from optout import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "optout",
        "name": "National Data Opt-out",
        "description": "Apply England's National Data Opt-out: MESH refresh, filtering, validation, gated export.",
        "versions": [__version__],
        "connection-types": [],
    }
