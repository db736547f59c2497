"""The dashboard's pages (GET): short adapters over :mod:`.data` and the job table.

Each page needs a signed-in viewer (:mod:`.auth`) whose token reaches the project;
what the viewer's scope may not do is not offered (the template asks
``viewer.can``). Fragments htmx asks for (a job's progress, a branch's live status)
are the same templates' parts, served alone when ``HX-Request`` is set.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api.deps import DaemonDep, ProjectDep, check_project
from branchdb.daemon.core import branchname
from branchdb.daemon.core.errors import BranchdbError, NotFound
from branchdb.daemon.store.base import AUDIT_ACTIONS
from branchdb.daemon.ui import chart, data
from branchdb.daemon.ui.auth import LOGIN_COOKIE, REVEAL_SCOPE, ViewerDep
from branchdb.daemon.ui.render import PREFIX, SECURITY_HEADERS, HtmlRoute, Renderer

router = APIRouter(prefix=PREFIX, route_class=HtmlRoute, include_in_schema=False)


def _r(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.ui_renderer
    return renderer


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


@router.get("/login")
async def login_page(
    request: Request, next: str | None = Query(None, max_length=2048)
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    page = _r(request).page(
        request,
        "login.html",
        {"csrf": nonce, "next": _safe_next(next), "error": None},
    )
    _login_cookie(page, request, nonce)
    return page


def _login_cookie(page: HTMLResponse, request: Request, nonce: str) -> None:
    page.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get("/")
async def projects(
    request: Request, viewer: ViewerDep, daemon: DaemonDep
) -> HTMLResponse:
    reached = [p for p in daemon.projects.values() if viewer.token.reaches(p.name)]

    def read() -> list[dict[str, Any]]:
        return [
            {
                "name": p.name,
                "backend": p.settings.config.database.backend,
                "default_branch": p.settings.config.project.default_branch,
                "webhooks": bool(p.settings.webhook_secret and p.mirror),
                "branches": len(p.engine().list_branches()),
            }
            for p in reached
        ]

    rows = await run_in_threadpool(read)
    return _r(request).page(request, "projects.html", {"projects": rows})


@router.get("/p/{project}")
async def branches(
    request: Request,
    viewer: ViewerDep,
    project: ProjectDep,
    sort: str = Query("name", max_length=20),
    dir: str = Query("asc", pattern="^(asc|desc)$"),
    deleted: str = Query("", max_length=1024),
) -> HTMLResponse:
    def read() -> tuple[list[dict[str, Any]], bool]:
        return data.branch_rows(project), project.engine().backend.exists_is_stat

    rows, sized = await run_in_threadpool(read)
    sort = sort if sort in data.SORTS else "name"
    rows = data.sort_rows(rows, sort, dir == "desc")
    return _r(request).page(
        request,
        "branches.html",
        {
            "project": project.name,
            "rows": rows,
            "sort": sort,
            "dir": dir,
            "columns": _COLUMNS,
            "sized": sized,
            "deleted": deleted,
        },
    )


_COLUMNS = [
    ("name", "Branch"),
    ("status", "Status"),
    ("backend", "Backend"),
    ("source", "Source"),
    ("size", "Size"),
    ("migrations", "Migrations"),
    ("created", "Created"),
    ("used", "Last used"),
    ("expires", "Idle TTL / expires"),
    ("pr", "Pull request"),
    ("protected", "Protected"),
]


@router.get("/p/{project}/b/{branch:path}")
async def branch(
    request: Request, viewer: ViewerDep, project: ProjectDep, branch: str
) -> HTMLResponse:
    name = branchname.validate(branch)
    detail = await run_in_threadpool(data.branch_detail, project, name)
    return _r(request).page(
        request, "branch.html", branch_context(project.name, detail)
    )


def branch_context(project: str, detail: dict[str, Any]) -> dict[str, Any]:
    """The branch page's template context, its URL and ``.env`` line masked."""
    rec = detail["record"]
    return {
        "project": project,
        "d": detail,
        "rec": rec,
        "masked_url": data.mask(detail["url"], detail["secrets"]),
        "masked_env": data.mask(detail["env_line"], detail["secrets"]),
        "has_secret": bool(detail["secrets"]),
        "revealed": False,
        "reveal_scope": REVEAL_SCOPE,
    }


@router.get("/p/{project}/status")
async def branch_status(
    request: Request,
    viewer: ViewerDep,
    project: ProjectDep,
    branch: str = Query(..., max_length=1024),
) -> HTMLResponse:
    """The branch's live facts (htmx loads it into the branch page)."""
    name = branchname.validate(branch)
    try:
        st = await run_in_threadpool(data.branch_status, project, name)
        problem = None
    except NotFound:
        raise
    except BranchdbError as e:  # a fetch that failed: say so, in place
        st, problem = None, str(e)
    template = "_status.html" if request.headers.get("HX-Request") else "status.html"
    return _r(request).page(
        request,
        template,
        {"st": st, "problem": problem, "project": project.name, "branch": name},
    )


@router.get("/p/{project}/facts")
async def branch_facts(
    request: Request,
    viewer: ViewerDep,
    project: ProjectDep,
    branch: str = Query(..., max_length=1024),
    i: int = Query(..., ge=1, le=1_000_000),
    size: bool = Query(False),
) -> HTMLResponse:
    """One row's live facts for the branch table: migrations applied/pending and,
    with *size*, the size a server backend only tells per database. htmx loads it
    when the row scrolls into view, so a table of 1,000 branches asks only for
    the rows someone looks at."""
    name = branchname.validate(branch)
    st, problem = await run_in_threadpool(data.row_facts, project, name)
    return _r(request).page(
        request,
        "_facts.html",
        {"st": st, "problem": problem, "i": i, "size": size},
    )


@router.get("/p/{project}/diff")
async def branch_diff(
    request: Request,
    viewer: ViewerDep,
    project: ProjectDep,
    branch: str = Query(..., max_length=1024),
) -> HTMLResponse:
    """The branch's schema review against the default branch (htmx loads it into
    the branch page); what stops it (no database on either side) is said in place."""
    name = branchname.validate(branch)
    try:
        review, problem = (
            await run_in_threadpool(data.branch_review, project, name),
            None,
        )
    except BranchdbError as e:
        review, problem = None, str(e)
    template = "_diff.html" if request.headers.get("HX-Request") else "diff.html"
    return _r(request).page(
        request,
        template,
        {"review": review, "problem": problem, "project": project.name, "branch": name},
    )


@router.get("/p/{project}/snapshots")
async def snapshots(
    request: Request, viewer: ViewerDep, project: ProjectDep
) -> HTMLResponse:
    rows = await run_in_threadpool(data.snapshot_rows, project)
    return _r(request).page(
        request, "snapshots.html", {"project": project.name, "rows": rows}
    )


@router.get("/p/{project}/gc")
async def gc(request: Request, viewer: ViewerDep, project: ProjectDep) -> HTMLResponse:
    def read() -> tuple[dict[str, Any], dict[str, Any]]:
        return data.gc_plan(project), data.gc_history(project)

    plan, history = await run_in_threadpool(read)
    return _r(request).page(
        request,
        "gc.html",
        {
            "project": project.name,
            "plan": plan,
            "history": history,
            "chart": chart.bars(history["days"]),
        },
    )


@router.get("/p/{project}/audit")
async def audit(
    request: Request,
    viewer: ViewerDep,
    project: ProjectDep,
    branch: str = Query("", max_length=1024),
    action: str = Query("", max_length=40),
    limit: int = Query(100, ge=1, le=1000),
) -> HTMLResponse:
    chosen = action if action in AUDIT_ACTIONS else ""
    entries = await run_in_threadpool(
        lambda: project.engine().audit_log(
            branch=branch or None, action=chosen or None, limit=limit
        )
    )
    return _r(request).page(
        request,
        "audit.html",
        {
            "project": project.name,
            "entries": entries,
            "branch": branch,
            "action": chosen,
            "actions": AUDIT_ACTIONS,
            "limit": limit,
        },
    )


@router.get("/jobs")
async def jobs(request: Request, viewer: ViewerDep, daemon: DaemonDep) -> HTMLResponse:
    rows = [j for j in daemon.jobs.recent() if viewer.token.reaches(j.project)]
    template = "_jobs.html" if request.headers.get("HX-Request") else "jobs.html"
    running = any(j.status == "running" for j in rows)
    return _r(request).page(request, template, {"jobs": rows, "running": running})


@router.get("/jobs/{job_id}")
async def job(
    request: Request, viewer: ViewerDep, daemon: DaemonDep, job_id: str
) -> HTMLResponse:
    found = daemon.jobs.get(job_id[:64])
    if found is None:
        raise NotFound(
            f"no job {job_id[:64]!r} (jobs are forgotten when the daemon restarts)"
        )
    check_project(viewer.token, found.project)
    template = "_job.html" if request.headers.get("HX-Request") else "job.html"
    return _r(request).page(request, template, {"job": found})


@router.get("")
async def bare() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=308, headers=SECURITY_HEADERS)


@router.get("/{rest:path}")
async def not_found(rest: str) -> None:
    """Any other path under /ui/: an HTML 404 (not the API's JSON one)."""
    raise NotFound(f"no dashboard page at /ui/{rest[:200]}")
