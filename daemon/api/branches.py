"""``/v1/projects/{project}/branches/...``: one Engine call per route.

Engine calls block (files, database servers, migrations), so every one runs in the
thread pool. Long verbs (create, reset, migrate) take ``?wait=false`` to answer 202
with a job to poll at ``/v1/jobs/{id}`` (its ``progress`` lists the engine's progress
lines); answered in place, they first wait their turn behind the jobs already started
for the branch (a webhook's), at most :data:`TURN_TIMEOUT` seconds.

What create, reset, migrate and status apply: an upload of migration files when the
request carries one (see :mod:`.uploads`: how the CLI's remote mode applies a
developer's uncommitted migrations); otherwise the branch's migrations as committed
in the project's repository — its tip after a fetch, or ``?sha=`` on its history
(:meth:`.deps.ProjectRuntime.committed_migrations`). Only a project without a
repository reads its directory on disk, for every branch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views, wire
from branchdb.daemon.api import schemas
from branchdb.daemon.api.deps import (
    BranchDep,
    CiToken,
    Daemon,
    DaemonDep,
    ProjectDep,
    ProjectRuntime,
    ReadToken,
)
from branchdb.daemon.api.jobs import Body, Job
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.api.uploads import OPENAPI_BODY, read_upload
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.errors import Refused
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.gc.ttl import ttl_of
from branchdb.daemon.migrations.base import MigrationFiles
from branchdb.daemon.vcs.tree import SHA_PATTERN

router = APIRouter(prefix="/v1/projects/{project}", tags=["branches"])

#: How long a request waits for another one working on the same branch.
LOCK_TIMEOUT = 300.0
#: How long a request answered in place waits behind the branch's queued jobs.
TURN_TIMEOUT = 300.0

Wait = Query(True, description="false: answer 202 with a job id at once")
Fresh = Query(False, description="start from an empty database")
FromSnapshot = Query(None, alias="from", description="clone from NAME or NAME@N")
Sha = Query(
    None,
    pattern=SHA_PATTERN,
    description="without an upload: read the migrations at this commit (7-64 hex "
    "digits), which must be on the branch's history; default: the branch's tip",
)

#: Work that reports progress lines through the callable it is given.
ProgressWork = Callable[[Callable[[str], None]], tuple[int, Body]]


def _ignore(_: str) -> None:
    pass


async def run_long(
    daemon: Daemon,
    wait: bool,
    kind: str,
    project: str,
    branch: str | None,
    key: str,
    work: ProgressWork,
) -> JSONResponse:
    """Run *work* now (*wait*), or as a background job answered 202 at once.

    Jobs sharing *key* run one after the other (webhooks use ``project\\0branch``
    too, so a delivery and a CLI call for one branch never interleave).
    """
    if wait:
        status, body = await run_in_threadpool(work, _ignore)
        return JSONResponse(body, status_code=status)
    job = start_job(daemon, kind, project, branch, key, work)
    return JSONResponse(
        job.json(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
    )


def start_job(
    daemon: Daemon,
    kind: str,
    project: str,
    branch: str | None,
    key: str,
    work: ProgressWork,
) -> Job:
    """Start *work* as a background job whose progress lines are the job's (call
    in the event loop); jobs sharing *key* run one after the other."""
    holder: list[Job] = []
    job = daemon.jobs.start(
        kind, project, branch, lambda: work(holder[0].note), key=key
    )
    holder.append(job)  # before the job's task first runs: that needs the loop
    return job


async def branch_job(
    daemon: Daemon,
    wait: bool,
    kind: str,
    project: str,
    branch: str,
    work: ProgressWork,
) -> JSONResponse:
    """:func:`run_long` for a branch verb; answered in place, it waits its turn
    behind the jobs already started for the branch (a webhook's job first)."""
    key = f"{project}\0{branch}"
    if not wait:
        return await run_long(daemon, wait, kind, project, branch, key, work)
    async with daemon.jobs.turn(
        key,
        f"{kind} request",
        timeout=TURN_TIMEOUT,
        busy=f"another request or webhook job is still working on {branch!r}",
    ):
        status, body = await run_in_threadpool(work, _ignore)
    return JSONResponse(body, status_code=status)


def _no_sha_with(upload: MigrationFiles | None, sha: str | None) -> None:
    # Refused (409), like fresh with from: the two choices exclude each other.
    if upload is not None and sha is not None:
        raise Refused(
            "?sha= reads the migrations from the repository; send it without an "
            "upload (or the upload without ?sha=)"
        )


def _migrations(
    project: ProjectRuntime,
    branch: str,
    upload: MigrationFiles | None,
    sha: str | None,
) -> MigrationFiles | None:
    """What a branch verb applies: the upload, else the branch as committed (None:
    a project without a repository, whose directory on disk the engine reads)."""
    if upload is not None:
        return upload
    return project.committed_migrations(branch, sha)


_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": schemas.Job, "description": "Started (wait=false)"}
}


@router.put(
    "/branches/{branch:path}",
    response_model=schemas.UpBranch,
    responses={
        201: {"model": schemas.UpBranch, "description": "Created"},
        **_ACCEPTED,
        **errors(400, 401, 403, 404, 409, 413, 422, 502, 503),
    },
    openapi_extra=OPENAPI_BODY,
    summary="Create the branch's database if missing and apply its migrations",
)
async def put_branch(
    request: Request,
    token: CiToken,
    daemon: DaemonDep,
    project: ProjectDep,
    branch: BranchDep,
    fresh: bool = Fresh,
    from_snapshot: str | None = FromSnapshot,
    reset_on_drift: bool | None = Query(None),
    sha: str | None = Sha,
    wait: bool = Wait,
) -> JSONResponse:
    """Idempotent: a second call changes nothing and answers 200 (the first, 201).

    With a body, the uploaded files are the migrations to apply; without, the
    branch's as committed (its tip, or *sha*). The database is confirmed to exist
    on its server: one dropped behind branchdb's back is made again (201).
    """
    upload = await read_upload(request)
    _no_sha_with(upload, sha)

    def work(progress: Callable[[str], None]) -> tuple[int, wire.UpBranch]:
        files = _migrations(project, branch, upload, sha)
        with acting(f"token:{token.id}"):
            res = project.engine().up(
                branch,
                fresh=fresh,
                from_snapshot=from_snapshot,
                reset_on_drift=reset_on_drift,
                lock_timeout=LOCK_TIMEOUT,
                progress=progress,
                files=files,
                confirm_exists=True,
            )
        return (201 if res.created else 200), views.up_dict(res)

    return await branch_job(daemon, wait, "up", project.name, branch, work)


@router.get(
    "/branches/{branch:path}",
    response_model=schemas.Branch,
    responses=errors(400, 401, 403, 404),
    summary="A branch database (counts as a use: refreshes last-used)",
)
async def get_branch(
    token: ReadToken, project: ProjectDep, branch: BranchDep
) -> wire.Branch:
    rec = await run_in_threadpool(lambda: project.engine().use(branch))
    return views.branch_dict(rec)


@router.get(
    "/branches",
    response_model=schemas.Branches,
    responses=errors(401, 403, 404),
    summary="Every branch database of the project",
)
async def list_branches(token: ReadToken, project: ProjectDep) -> list[wire.Branch]:
    def work() -> list[wire.Branch]:
        engine = project.engine()
        return [views.branch_dict(r, engine.running(r)) for r in engine.listed()]

    return await run_in_threadpool(work)


@router.delete(
    "/branches/{branch:path}",
    response_model=schemas.DroppedBranch,
    responses=errors(400, 401, 403, 404, 409, 502),
    summary="Drop the branch's database (protected branches need force=true)",
)
async def delete_branch(
    token: CiToken, project: ProjectDep, branch: BranchDep, force: bool = False
) -> wire.DroppedBranch:
    def work() -> BranchRecord:
        with acting(f"token:{token.id}"):
            return project.engine().down(branch, force=force)

    rec = await run_in_threadpool(work)
    return views.dropped_dict(rec)


@router.post(
    "/branches/{branch:path}/status",
    response_model=schemas.BranchStatus,
    responses=errors(400, 401, 403, 404, 409, 413, 422, 503),
    openapi_extra=OPENAPI_BODY,
    summary="A branch database with live facts: size, pending migrations, problems",
)
async def branch_status(
    request: Request,
    token: ReadToken,
    project: ProjectDep,
    branch: BranchDep,
    sha: str | None = Sha,
) -> wire.BranchStatus:
    """Read-only (a POST only to carry the optional upload: pending is computed
    against the uploaded files when given, else against the branch as committed)."""
    upload = await read_upload(request)
    _no_sha_with(upload, sha)

    def work() -> wire.BranchStatus:
        engine = project.engine()
        engine.get(branch)  # no database: 404 before any fetch
        files = _migrations(project, branch, upload, sha)
        st = engine.status(branch, files=files)
        return views.status_dict(
            st, protected=engine.is_protected(branch), ttl=ttl_of(engine, branch)
        )

    return await run_in_threadpool(work)


@router.post(
    "/branches/{branch:path}/reset",
    response_model=schemas.ResetBranch,
    responses={**_ACCEPTED, **errors(400, 401, 403, 404, 409, 413, 422, 502, 503)},
    openapi_extra=OPENAPI_BODY,
    summary="Recreate from its source and re-apply migrations; the URL stays",
)
async def reset_branch(
    request: Request,
    token: CiToken,
    daemon: DaemonDep,
    project: ProjectDep,
    branch: BranchDep,
    fresh: bool = Fresh,
    from_snapshot: str | None = FromSnapshot,
    force: bool = Query(False, description="allow resetting a protected branch"),
    sha: str | None = Sha,
    wait: bool = Wait,
) -> JSONResponse:
    upload = await read_upload(request)
    _no_sha_with(upload, sha)
    work = reset_work(
        project,
        branch,
        f"token:{token.id}",
        fresh=fresh,
        from_snapshot=from_snapshot,
        force=force,
        upload=upload,
        sha=sha,
    )
    return await branch_job(daemon, wait, "reset", project.name, branch, work)


def reset_work(
    project: ProjectRuntime,
    branch: str,
    actor: str,
    *,
    fresh: bool = False,
    from_snapshot: str | None = None,
    force: bool = False,
    upload: MigrationFiles | None = None,
    sha: str | None = None,
) -> ProgressWork:
    """The work of a reset by *actor* (``POST …/reset`` and the dashboard's button):
    Refused for a protected branch without *force*, NotFound before any fetch."""

    def work(progress: Callable[[str], None]) -> tuple[int, wire.ResetBranch]:
        engine = project.engine()
        if engine.is_protected(branch) and not force:
            raise Refused(
                f"{branch!r} is protected (branches.protected); pass force=true"
            )
        engine.get(branch)  # no database: 404 before any fetch
        files = _migrations(project, branch, upload, sha)
        with acting(actor):
            res = engine.reset(
                branch,
                fresh=fresh,
                from_snapshot=from_snapshot,
                progress=progress,
                files=files,
            )
        return 200, views.reset_dict(res)

    return work


@router.post(
    "/branches/{branch:path}/migrate",
    response_model=schemas.Migrate,
    responses={**_ACCEPTED, **errors(400, 401, 403, 404, 409, 413, 422, 502, 503)},
    openapi_extra=OPENAPI_BODY,
    summary="Apply (or with dry_run=true, list) the branch's pending migrations",
)
async def migrate_branch(
    request: Request,
    token: CiToken,
    daemon: DaemonDep,
    project: ProjectDep,
    branch: BranchDep,
    dry_run: bool = False,
    sha: str | None = Sha,
    wait: bool = Wait,
) -> JSONResponse:
    upload = await read_upload(request)
    _no_sha_with(upload, sha)
    work = migrate_work(
        project, branch, f"token:{token.id}", dry_run=dry_run, upload=upload, sha=sha
    )
    return await branch_job(daemon, wait, "migrate", project.name, branch, work)


def migrate_work(
    project: ProjectRuntime,
    branch: str,
    actor: str,
    *,
    dry_run: bool = False,
    upload: MigrationFiles | None = None,
    sha: str | None = None,
) -> ProgressWork:
    """The work of a migrate by *actor* (``POST …/migrate``, the dashboard)."""

    def work(progress: Callable[[str], None]) -> tuple[int, wire.Migrate]:
        project.engine().get(branch)  # no database: 404 before any fetch
        files = _migrations(project, branch, upload, sha)
        with acting(actor):
            res = project.engine().migrate(
                branch, dry_run=dry_run, progress=progress, files=files
            )
        return 200, views.migrate_dict(res)

    return work
