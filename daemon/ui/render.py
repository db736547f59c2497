"""Rendering: the Jinja2 environment, its filters, and the dashboard's HTTP edge.

Templates and static files are package data (``templates/``, ``static/``), loaded
with :class:`jinja2.PackageLoader`; autoescaping is on for every template. Every
page answers with the headers of :data:`SECURITY_HEADERS`: a
``Content-Security-Policy`` that allows scripts, styles and requests from the
daemon itself only (no inline script, no ``eval``), no framing, and
``Cache-Control: no-store`` (pages show database URLs).

:class:`HtmlRoute` is the route class of the dashboard's router: errors become HTML
pages with the same status the API would answer (a BranchdbError's
``http_status``), and a missing session becomes a redirect to the sign-in page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from branchdb.daemon.core.errors import BranchdbError, redact

PREFIX = "/ui"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    """No live session: the route class answers with a redirect to sign in."""


class CsrfFailed(BranchdbError):
    """A state-changing form without this session's CSRF token."""

    http_status = 403


def human_size(n: int | float | None) -> str:
    """Bytes as a human reads them: ``0 B``, ``12.3 KiB``, ``1.0 GiB``."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _epoch(ts: float | str | None) -> float | None:
    if ts is None or ts == "":
        return None
    if isinstance(ts, str):
        return datetime.fromisoformat(ts).timestamp()
    return float(ts)


def relative(ts: float | str | None, now: float | None = None) -> str:
    """``3 min ago`` / ``in 2 h`` / ``just now``: *ts* (epoch or ISO) from *now*."""
    when = _epoch(ts)
    if when is None:
        return "—"
    delta = when - (time.time() if now is None else now)
    past, secs = delta < 0, abs(delta)
    if secs < 45:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            text = f"{round(secs / size)} {unit}"
            break
    else:
        text = f"{round(secs)} s"
    return f"{text} ago" if past else f"in {text}"


def exact(ts: float | str | None) -> str:
    """The exact UTC time of *ts* (the hover text of relative times)."""
    when = _epoch(ts)
    if when is None:
        return ""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float | str | None) -> str:
    when = _epoch(ts)
    return "" if when is None else datetime.fromtimestamp(when, UTC).isoformat()


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def path(*parts: str) -> str:
    """A dashboard URL: ``path("p", project, "b", branch)``; each part quoted
    (branch names keep their slashes)."""
    return PREFIX + "/" + "/".join(quote(p, safe="/") for p in parts)


def environment() -> jinja2.Environment:
    """The dashboard's templates (package data), autoescaped, with its filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("branchdb.daemon.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=human_size,
        ago=relative,
        exact=exact,
        iso=iso,
        duration=duration,
        redact=redact,
    )
    env.globals.update(path=path, prefix=PREFIX)
    return env


class Renderer:
    """Renders templates to responses with the dashboard's headers."""

    def __init__(self) -> None:
        self.env = environment()

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
    ) -> HTMLResponse:
        viewer = getattr(request.state, "viewer", None)
        body = self.env.get_template(template).render(
            {"request": request, "viewer": viewer, "now": time.time(), **context}
        )
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _renderer(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.ui_renderer
    return renderer


class HtmlRoute(APIRoute):
    """A route whose errors are pages (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                to = f"{PREFIX}/login?next={quote(target, safe='')}"
                if request.headers.get("HX-Request"):
                    # htmx follows redirects in place; make it load the page.
                    return Response(status_code=204, headers={"HX-Redirect": to})
                return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)
            except BranchdbError as e:
                return _error(request, e.http_status, type(e).__name__, str(e))
            except RequestValidationError as e:
                first = e.errors()[0] if e.errors() else {}
                where = ".".join(str(x) for x in first.get("loc", ()))
                message = f"{where}: {first.get('msg', 'invalid request')}"
                return _error(request, 422, "ValidationError", message)
            except StarletteHTTPException as e:
                return _error(request, e.status_code, "HTTP", str(e.detail))

        return route


def _error(request: Request, status: int, kind: str, message: str) -> HTMLResponse:
    return _renderer(request).page(
        request,
        "error.html",
        {"status": status, "kind": kind, "message": redact(message)},
        status=status,
    )
