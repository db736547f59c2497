"""Who is looking: the session's viewer, scope checks, and state-changing forms.

The dashboard's scopes are the API's (:mod:`branchdb.daemon.api.tokens`): a page
offers only what the viewer's token may do, and every action checks again here
(:func:`allow`), so a form posted by hand with a ``read`` token is refused (403)
like the API call would be. Every state-changing form carries the session's CSRF
token (:func:`checked_form`); the sign-in form, which has no session yet, carries a
double-submit token instead (a random value both in a cookie and in the form).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request

from branchdb.daemon.api.deps import BadRequest, DaemonDep, Forbidden, check_project
from branchdb.daemon.api.tokens import Token
from branchdb.daemon.ui.render import CsrfFailed, SignInNeeded
from branchdb.daemon.ui.sessions import COOKIE, Session, Sessions

#: Largest form body read (the dashboard's forms hold a few short fields).
MAX_FORM = 16 * 1024
#: The scope that may reveal a branch's password (it may reset and delete the
#: database anyway); ``read`` tokens see URLs with the password hidden.
REVEAL_SCOPE = "ci"


@dataclass(frozen=True)
class Viewer:
    session: Session
    token: Token

    def can(self, scope: str, project: str | None = None) -> bool:
        """True if the viewer's token has *scope* (and reaches *project*)."""
        return self.token.allows(scope) and (
            project is None or self.token.reaches(project)
        )

    @property
    def csrf(self) -> str:
        return self.session.csrf


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.ui_sessions
    return sessions


async def current_viewer(request: Request, daemon: DaemonDep) -> Viewer:
    """The signed-in viewer; SignInNeeded without a live session or when its
    token was revoked. Routes with a ``{project}`` are checked against the
    token's projects here, so no page can forget it."""
    sessions = sessions_of(request)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise SignInNeeded
    token = await daemon.tokens.by_digest(
        daemon, session.token_id, session.token_sha256
    )
    if token is None:
        sessions.end(session)
        raise SignInNeeded
    viewer = Viewer(session, token)
    request.state.viewer = viewer
    project = request.path_params.get("project")
    if project is not None:
        check_project(token, project)
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def allow(viewer: Viewer, scope: str, project: str) -> None:
    """Forbidden unless the viewer's token has *scope* on *project*."""
    if not viewer.token.allows(scope):
        raise Forbidden(
            f"token {viewer.token.name!r} has scope {viewer.token.scope!r}; "
            f"this needs {scope!r}"
        )
    check_project(viewer.token, project)


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most :data:`MAX_FORM`
    bytes, read no further than that (BadRequest otherwise)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("expected a form (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise BadRequest(f"form over {MAX_FORM} bytes")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=20
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed form") from None
    return dict(pairs)


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """:func:`read_form`, refused (403) unless it carries the session's CSRF token."""
    form = await read_form(request)
    if not viewer.session.csrf_ok(form.get("csrf")):
        raise CsrfFailed(
            "this form has no valid CSRF token (reload the page and try again)"
        )
    return form


LOGIN_COOKIE = "branchdb_login"


def login_csrf_ok(request: Request, form: dict[str, str]) -> bool:
    """The sign-in form's double-submit check: form field equals its cookie."""
    cookie, field = request.cookies.get(LOGIN_COOKIE), form.get("csrf")
    return bool(cookie and field) and hmac.compare_digest(
        str(cookie).encode(), str(field).encode()
    )
