"""The Airflow plugin (entry point ``airflow.plugins``): the governance page and its menu entry.

The page is a FastAPI app mounted under ``/optout`` in the API server. It is built on its first
request, so loading plugins (scheduler, workers, DAG processor) imports neither FastAPI nor the store.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

PAGE_NAME = "National Data Opt-out"
URL_PREFIX = "/optout"


class LazyApp:
    """ASGI app that builds :func:`optout.airflow.page.create_app` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from optout.airflow.page import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class OptOutPlugin(AirflowPlugin):
    name = "optout"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": PAGE_NAME}]
    external_views = [
        {"name": PAGE_NAME, "href": f"{URL_PREFIX}/", "destination": "nav", "url_route": "national-data-opt-out"}
    ]
