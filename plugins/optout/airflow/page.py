"""The governance page as a FastAPI app mounted in Airflow's API server, behind Airflow's own login.

Every route depends on Airflow's ``requires_access_view(WEBSITE)``: the same JWT (cookie or bearer
token) and auth manager as the core API, so an anonymous request is refused with 401 and the page
never has a login of its own. The content comes from :mod:`optout.governance` (pure, tested alone).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from optout.governance.flows import DeclaredFlow
    from optout.governance.overview import NightlyState, Uncovered


def create_app(store_url: str | None = None, *, authorize: Any = None) -> FastAPI:
    """Build the app. ``authorize`` is the dependency guarding every route (default: Airflow's).

    :param store_url: the store (and ledger) database; default the ``optout_store_default`` connection's
        (see :class:`~optout.airflow.hooks.store.OptOutStoreHook`).
    """
    if store_url is None:
        from optout.airflow.hooks.store import OptOutStoreHook

        store_url = OptOutStoreHook().url
    if authorize is None:
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import requires_access_view

        authorize = requires_access_view(AccessView.WEBSITE)
    app = FastAPI(title="National Data Opt-out", dependencies=[Depends(authorize)], docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(
        since: str | None = None,
        until: str | None = None,
        purpose: str | None = None,
        recipient: str | None = None,
        page: int = 1,
    ) -> str:
        from optout.governance import overview, render
        from optout.governance.overview import DisclosureFilter

        chosen = DisclosureFilter(_day(since), _day(until), purpose or None, recipient or None, max(page, 1))
        return render(
            overview(store_url, filter=chosen, declared=_declared(), nightly=_nightly(), uncovered=_uncovered())
        )

    @app.get("/evidence-pack")
    def evidence_pack(since: str, until: str | None = None, format: str = "pdf") -> Response:
        """The evidence pack for a period, made on request (``optout report`` does the same)."""
        from datetime import UTC, datetime, time, timedelta

        from optout.governance import evidence, settings

        first, last = _day(since), _day(until) or datetime.now(UTC).date()
        if first is None or last < first or format not in ("pdf", "html"):
            raise HTTPException(400, "give since (and until) as YYYY-MM-DD, until not before since, format pdf or html")
        start = datetime.combine(first, time(), UTC)
        end = datetime.combine(last + timedelta(days=1), time(), UTC)
        facts = evidence.read_facts(start, end, url=store_url, declared=_declared(), blocked=_refused(start, end))
        document = evidence.build(facts, settings.organisation())
        name = f"optout-evidence-{first}-{last}.{format}"
        disposition = {"content-disposition": f'attachment; filename="{name}"'}
        if format == "pdf":
            from optout.governance.pack_pdf import render_pdf

            return Response(render_pdf(document), media_type="application/pdf", headers=disposition)
        from optout.governance.pack_html import render_html

        return Response(render_html(document), media_type="text/html; charset=utf-8", headers=disposition)

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


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, "dates are YYYY-MM-DD") from None


def _declared() -> list[DeclaredFlow]:
    """The DAGs' flows from Airflow's database; the register still shows the ledger's without it."""
    from optout.airflow.flows import read_declared_flows

    try:
        return read_declared_flows()
    except Exception:  # the page must render even when Airflow's database cannot be read
        return []


def _nightly() -> NightlyState | None:
    from optout.airflow.flows import nightly_state

    try:
        return nightly_state()
    except Exception:  # shown as "could not be read"
        return None


def _uncovered() -> list[Uncovered] | None:
    from optout.airflow.flows import read_uncovered

    try:
        return read_uncovered()
    except Exception:  # shown as "could not be read"
        return None


def _refused(since: datetime, until: datetime) -> list[datetime]:
    from optout.airflow.flows import refused_exports

    try:
        return refused_exports(since, until)
    except Exception:
        return []


def _login_url(next_url: str) -> str:
    from html import escape

    from airflow.api_fastapi.app import get_auth_manager

    try:
        return escape(get_auth_manager().get_url_login(next_url=next_url))
    except Exception:  # no auth manager in this process: the generic login path
        return "/auth/login"
