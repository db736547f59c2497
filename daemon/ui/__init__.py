"""The web dashboard at ``/ui/``: server-rendered pages over the engine's views.

Imported by :mod:`branchdb.daemon.api.app` only (``server.ui``, on by default).
Pages are Jinja2 templates (``templates/``) rendered through FastAPI; live parts
(job progress, a branch's status) use htmx, vendored in ``static/`` (2.0.11, BSD
Zero-Clause; no CDN, no build step) — everything works without JavaScript too,
by reloading. None of these routes is in the OpenAPI schema; none is under ``/v1``.

Modules: :mod:`.sessions` (a pasted token becomes a signed session cookie),
:mod:`.auth` (viewer, scopes, CSRF), :mod:`.data` (what pages show, read through
:mod:`branchdb.daemon.views`), :mod:`.chart` (the GC history's bars),
:mod:`.render` (Jinja2, filters, security headers, error pages), :mod:`.pages`
(GET) and :mod:`.actions` (POST).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from branchdb.daemon.ui import actions, pages
from branchdb.daemon.ui.render import PREFIX, Renderer
from branchdb.daemon.ui.sessions import Sessions

STATIC = Path(__file__).resolve().parent / "static"


def install(app: FastAPI) -> None:
    """Serve the dashboard from *app* at ``/ui/``."""
    app.state.ui_renderer = Renderer()
    app.state.ui_sessions = Sessions()
    # The static files first: the pages' catch-all (an HTML 404) comes last.
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(actions.router)
    app.include_router(pages.router)
