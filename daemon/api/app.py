"""``create_app(settings)``: the daemon's FastAPI application.

Nothing is built at import time: the factory receives the settings (see
:mod:`branchdb.daemon.api.settings`), builds the :class:`~.deps.Daemon` (projects,
job table, state store access) and hands it to routes through ``Annotated``
dependencies. Errors are translated here, once: a BranchdbError answers its
``http_status`` with ``{"error": {"type", "message"}}`` (message redacted), malformed
JSON 400, validation errors 422, unknown routes 404, request bodies over
``server.max_body`` 413 (:mod:`.bodylimit`) — all JSON, all documented in the OpenAPI
(:mod:`.openapi`).

At start, crash recovery (:mod:`branchdb.daemon.core.recovery`) cleans up what a
killed daemon left half done, while the probes already answer and every other request
waits (:mod:`.startup`); ``/v1/ready`` is 503 until then, and whenever a state store
does not open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from branchdb.daemon.api import (
    audit_log,
    branches,
    collection,
    metrics,
    openapi,
    review,
    schemas,
    snapshots,
)
from branchdb.daemon.api.bodylimit import BodyLimit
from branchdb.daemon.api.deps import Daemon, DaemonDep, ReadToken, check_project
from branchdb.daemon.api.logs import RequestId
from branchdb.daemon.api.scheduler import start_scheduler
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.api.settings import DaemonSettings
from branchdb.daemon.api.startup import Startup, StartupGate
from branchdb.daemon.api.telemetry import Timing
from branchdb.daemon.api.webhooks import github as webhooks
from branchdb.daemon.core.errors import BranchdbError, NotFound, redact

log = logging.getLogger("branchdb.api")


#: How ``branchdb serve`` prints branchdb's log lines on stderr (README: Logging).
def _error(
    status: int,
    kind: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"type": kind, "message": redact(message)}}
    body["error"].update(extra)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers or None)


def _install_error_handlers(app: FastAPI) -> None:
    async def branchdb_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BranchdbError)
        return _error(exc.http_status, type(exc).__name__, str(exc))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}"
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            # Not JSON at all is a malformed request, not invalid parameters.
            return _error(400, "BadRequest", f"malformed JSON body: {message}")
        return _error(422, "ValidationError", message, details=details)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTP")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return _error(exc.status_code, kind, str(exc.detail), headers=headers)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "InternalError", "internal error (see the daemon's log)")

    app.add_exception_handler(BranchdbError, branchdb_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


def _allowed(request: Request) -> str:
    """Every method some route serves on this path (starlette names only one route's).

    GET /gc and POST /gc are two routes: a 405 for OPTIONS must list both. Each
    method is tried against the routes (``matches`` is public, routers nest).
    """
    methods = []
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"):
        scope = {**request.scope, "method": method}
        if any(r.matches(scope)[0] == Match.FULL for r in request.app.router.routes):
            methods.append(method)
    return ", ".join(methods)


meta = APIRouter(prefix="/v1")


@meta.get("/health", tags=["health"], summary="The process is up (no token needed)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@meta.get(
    "/ready",
    tags=["health"],
    summary="Start-up recovery is done and every state store opens (no token needed)",
    responses={503: {"model": schemas.ErrorBody, "description": "Not ready"}},
)
async def ready(request: Request, daemon: DaemonDep) -> JSONResponse:
    startup: Startup = request.app.state.startup
    if not startup.done.is_set():  # answered at once: no store is touched
        return _error(503, "NotReady", "crash recovery is running")

    def check() -> list[str]:
        problems = []
        why = startup.problem()  # retries a bootstrap that failed
        if why is not None:
            problems.append(why)
        try:
            daemon.store()
        except Exception as e:  # reported, not raised: readiness must answer
            problems.append(f"state store: {e}")
        for p in daemon.projects.values():
            try:
                p.engine().store.list_snapshots(p.settings.config.project.name)
            except Exception as e:  # reported, not raised: readiness must answer
                problems.append(f"{p.name}: {e}")
        return problems

    problems = await run_in_threadpool(check)
    if problems:
        return _error(503, "NotReady", "; ".join(problems))
    return JSONResponse({"status": "ready", "projects": sorted(daemon.projects)})


@meta.get(
    "/projects",
    tags=["health"],
    summary="The projects this daemon serves",
    responses=errors(401, 403),
)
async def projects(token: ReadToken, daemon: DaemonDep) -> list[dict[str, Any]]:
    """The projects the token reaches (all of them for a token without projects)."""
    return [
        {
            "name": p.name,
            "backend": p.settings.config.database.backend,
            "default_branch": p.settings.config.project.default_branch,
            "webhooks": bool(p.settings.webhook_secret and p.mirror),
        }
        for p in daemon.projects.values()
        if token.reaches(p.name)
    ]


@meta.get(
    "/jobs/{job_id}",
    tags=["jobs"],
    response_model=schemas.Job,
    responses=errors(401, 403, 404),
    summary="A background job: running, succeeded (result) or failed (error)",
)
async def get_job(token: ReadToken, daemon: DaemonDep, job_id: str) -> dict[str, Any]:
    job = daemon.jobs.get(job_id)
    if job is None:
        raise NotFound(
            f"no job {job_id!r} (jobs are forgotten when the daemon restarts)"
        )
    check_project(token, job.project)
    return job.json()


def create_app(settings: DaemonSettings) -> FastAPI:
    """Build the application for *settings*. No I/O until the first request."""
    from importlib.metadata import version

    daemon = Daemon(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Made here: its event belongs to the loop that serves.
        startup = app.state.startup = Startup(daemon)
        startup.start()  # recovery, then the bootstrap token; requests wait for it
        scheduler = start_scheduler(daemon, settings.gc_interval, startup.done)
        yield
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await startup.stop(timeout=30)
        await daemon.jobs.drain(timeout=30)  # let background work finish cleanly
        daemon.close()

    app = FastAPI(
        title="branchdb",
        version=version("branchdb"),
        description="An isolated database for every git branch.",
        lifespan=lifespan,
    )
    app.state.daemon = daemon
    app.add_middleware(BodyLimit, max_body=settings.max_body)
    app.add_middleware(StartupGate)
    app.add_middleware(Timing, metrics=daemon.metrics)
    app.add_middleware(RequestId)  # outermost: every log line of the request has it
    _install_error_handlers(app)
    app.include_router(meta)
    app.include_router(collection.router)
    # Before branches: its GET /branches/{branch:path} would take .../diff.
    app.include_router(review.router)
    app.include_router(branches.router)
    app.include_router(snapshots.router)
    app.include_router(webhooks.router)
    app.include_router(audit_log.router)
    app.include_router(metrics.router)
    if settings.ui:
        from branchdb.daemon import ui  # Jinja2 and templates: only when served

        ui.install(app)
    openapi.install(app)
    return app
