"""The dashboard's actions (POST): sign in and out, reset, migrate, delete, reveal,
run GC. Each is a short adapter over the same engine work as its API route
(:func:`branchdb.daemon.api.branches.reset_work`, ``migrate_work``,
:meth:`Engine.down`, :func:`branchdb.daemon.gc.collector.collect`), after
:func:`.auth.checked_form` (CSRF) and :func:`.auth.allow` (the API's scope for it).
Long verbs run as jobs, and the browser is sent to the job's page to watch it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api import tokens
from branchdb.daemon.api.branches import migrate_work, reset_work, start_job
from branchdb.daemon.api.deps import BadRequest, DaemonDep, ProjectDep
from branchdb.daemon.core import branchname
from branchdb.daemon.core.audit import acting
from branchdb.daemon.gc.collector import collect
from branchdb.daemon.ui import data
from branchdb.daemon.ui.auth import (
    LOGIN_COOKIE,
    REVEAL_SCOPE,
    ViewerDep,
    allow,
    checked_form,
    login_csrf_ok,
    read_form,
    sessions_of,
)
from branchdb.daemon.ui.pages import _safe_next, branch_context
from branchdb.daemon.ui.render import (
    PREFIX,
    SECURITY_HEADERS,
    CsrfFailed,
    HtmlRoute,
    Renderer,
    path,
)
from branchdb.daemon.ui.sessions import COOKIE

log = logging.getLogger("branchdb.ui")
router = APIRouter(prefix=PREFIX, route_class=HtmlRoute, include_in_schema=False)


def _see(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=SECURITY_HEADERS)


@router.post("/login")
async def login(request: Request, daemon: DaemonDep) -> Response:
    form = await read_form(request)
    if not login_csrf_ok(request, form):
        raise CsrfFailed("the sign-in form expired; reload the page and try again")
    presented = form.get("token", "").strip()
    token = await daemon.tokens.verify(daemon, presented) if presented else None
    target = _safe_next(form.get("next"))
    if token is None:
        renderer: Renderer = request.app.state.ui_renderer
        page = renderer.page(
            request,
            "login.html",
            {
                "csrf": form.get("csrf", ""),
                "next": target,
                "error": "That token is not valid (or was revoked).",
            },
            status=401,
        )
        return page
    _, cookie = sessions_of(request).start(token, tokens.digest(presented))
    answer = _see(target)
    answer.set_cookie(
        COOKIE,
        cookie,
        max_age=int(sessions_of(request).lifetime),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    answer.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return answer


@router.post("/logout")
async def logout(request: Request, viewer: ViewerDep) -> Response:
    await checked_form(request, viewer)
    sessions_of(request).end(viewer.session)
    answer = _see(f"{PREFIX}/login")
    answer.delete_cookie(COOKIE, path=PREFIX)
    return answer


def _branch(form: dict[str, str]) -> str:
    if "branch" not in form:
        raise BadRequest("the form names no branch")
    return branchname.validate(form["branch"])


@router.post("/p/{project}/reset")
async def reset(
    request: Request, viewer: ViewerDep, daemon: DaemonDep, project: ProjectDep
) -> Response:
    form = await checked_form(request, viewer)
    allow(viewer, "ci", project.name)
    branch = _branch(form)
    work = reset_work(
        project, branch, f"token:{viewer.token.id}", force=form.get("force") == "1"
    )
    job = start_job(
        daemon, "reset", project.name, branch, f"{project.name}\0{branch}", work
    )
    return _see(path("jobs", job.id))


@router.post("/p/{project}/migrate")
async def migrate(
    request: Request, viewer: ViewerDep, daemon: DaemonDep, project: ProjectDep
) -> Response:
    form = await checked_form(request, viewer)
    allow(viewer, "ci", project.name)
    branch = _branch(form)
    work = migrate_work(project, branch, f"token:{viewer.token.id}")
    job = start_job(
        daemon, "migrate", project.name, branch, f"{project.name}\0{branch}", work
    )
    return _see(path("jobs", job.id))


@router.post("/p/{project}/delete")
async def delete(request: Request, viewer: ViewerDep, project: ProjectDep) -> Response:
    form = await checked_form(request, viewer)
    allow(viewer, "ci", project.name)
    branch = _branch(form)
    force = form.get("force") == "1"

    def work() -> None:
        with acting(f"token:{viewer.token.id}", "dashboard"):
            project.engine().down(branch, force=force)

    await run_in_threadpool(work)
    return _see(path("p", project.name) + "?" + urlencode({"deleted": branch}))


@router.post("/p/{project}/reveal")
async def reveal(
    request: Request, viewer: ViewerDep, project: ProjectDep
) -> HTMLResponse:
    """The branch page (or, for htmx, its URL part) with the password shown."""
    form = await checked_form(request, viewer)
    allow(viewer, REVEAL_SCOPE, project.name)
    branch = _branch(form)
    detail = await run_in_threadpool(data.branch_detail, project, branch)
    log.info(
        "token %s revealed the URL of %s/%r", viewer.token.id, project.name, branch
    )
    context = {**branch_context(project.name, detail), "revealed": True}
    template = "_url.html" if request.headers.get("HX-Request") else "branch.html"
    renderer: Renderer = request.app.state.ui_renderer
    return renderer.page(request, template, context)


@router.post("/p/{project}/gc")
async def gc_run(
    request: Request, viewer: ViewerDep, daemon: DaemonDep, project: ProjectDep
) -> Response:
    """``POST …/gc`` (admin) as a job: mark collectable databases, delete due ones."""
    await checked_form(request, viewer)
    allow(viewer, "admin", project.name)

    def work(progress: Callable[[str], None]) -> tuple[int, dict[str, int]]:
        with acting(f"token:{viewer.token.id}", "dashboard: run GC"):
            report = collect(project.engine(), dry_run=False)
        return 200, {
            "candidates": len(report.candidates),
            "deleted": len(report.deleted),
        }

    key = f"{project.name}\0gc"
    job = start_job(daemon, "gc", project.name, None, key, work)
    return _see(path("jobs", job.id))
