"""The governance page as a FastAPI app mounted in Airflow's API server, behind Airflow's own login.

Every route depends on Airflow's ``requires_access_view(WEBSITE)``: the same JWT (cookie or bearer
token) and auth manager as the core API, so an anonymous request is refused with 401 and the page
never has a login of its own. The content comes from :mod:`optout.governance` (pure, tested alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


def create_app(store_url: str | None = None, *, authorize: Any = None) -> FastAPI:
    """Build the app. ``authorize`` is the dependency guarding every route (default: Airflow's).

    :param store_url: the store (and ledger) database; default ``OPTOUT_STORE_URL``.
    """
    if authorize is None:
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import requires_access_view

        authorize = requires_access_view(AccessView.WEBSITE)
    app = FastAPI(title="National Data Opt-out", dependencies=[Depends(authorize)], docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        from optout.governance import overview, render

        return render(overview(store_url))

    @app.get("/data-docs/{entry_id}/{path:path}")
    def data_docs(entry_id: int, path: str) -> FileResponse:
        """The Data Docs site of one ledger entry, served only from inside that site's folder."""
        from optout.ledger import Ledger

        ledger = Ledger(store_url)
        try:
            entry = ledger.entry(entry_id)
        finally:
            ledger.dispose()
        if entry is None or not entry.disclosure.data_docs:
            raise HTTPException(404, "no Data Docs for this disclosure")
        root = Path(entry.disclosure.data_docs).parent.resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(target)

    @app.exception_handler(StarletteHTTPException)
    def refused(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        """A refusal as a short page (status kept): anonymous visitors get a link to Airflow's login."""
        if exc.status_code in (401, 403):
            body = (
                "<p>You need to log in to Airflow to see this page.</p>"
                f'<p><a href="{_login_url(str(request.url))}">Log in</a></p>'
                if exc.status_code == 401
                else "<p>Your Airflow account may not see this page.</p>"
            )
        else:
            body = "<p>Not found.</p>"
        return HTMLResponse(
            f'<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>National Data Opt-out</title>'
            f"</head><body><main><h1>National Data Opt-out</h1>{body}</main></body></html>",
            status_code=exc.status_code,
        )

    return app


def _login_url(next_url: str) -> str:
    from html import escape

    from airflow.api_fastapi.app import get_auth_manager

    try:
        return escape(get_auth_manager().get_url_login(next_url=next_url))
    except Exception:  # no auth manager in this process: the generic login path
        return "/auth/login"
