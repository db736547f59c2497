"""``/v1/projects/{project}/snapshots``: list, create (a background job), remove.

Creating a snapshot reads a source database *as the daemon sees it* (a path on the
daemon's machine, or a URL it can reach) — so it needs the admin scope, like removing
one. Without ``source`` the project's ``[snapshots.NAME]`` definition is used (what
``branchdb snapshot refresh NAME`` does). Rules travel as TOML text, never as a path
on the daemon's disk, with ``rules_name`` (the client's file) for error messages to
name; they are parsed from the text, so no message names a file of the daemon's.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views, wire
from branchdb.daemon.api import schemas
from branchdb.daemon.api.branches import Wait, run_long
from branchdb.daemon.api.deps import (
    AdminToken,
    BadRequest,
    DaemonDep,
    ProjectDep,
    ReadToken,
)
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.models import SnapshotRecord
from branchdb.daemon.sanitize.rules import parse_rules

router = APIRouter(prefix="/v1/projects/{project}", tags=["snapshots"])

#: Rules files larger than this are refused (413 is for bodies; this is 400).
MAX_RULES = 1024 * 1024


@router.get(
    "/snapshots",
    response_model=schemas.Snapshots,
    responses=errors(401, 403, 404),
    summary="Every snapshot version of the project",
)
async def list_snapshots(token: ReadToken, project: ProjectDep) -> list[wire.Snapshot]:
    snaps = await run_in_threadpool(lambda: project.engine().snapshot_list())
    return [views.snapshot_dict(s) for s in snaps]


@router.post(
    "/snapshots",
    status_code=201,
    response_model=schemas.CreatedSnapshot,
    responses={
        202: {"model": schemas.Job, "description": "Started (wait=false)"},
        **errors(400, 401, 403, 404, 409, 422, 502),
    },
    summary="Create the next version of a snapshot (sanitized when rules are given)",
)
async def create_snapshot(
    body: schemas.SnapshotCreate,
    token: AdminToken,
    daemon: DaemonDep,
    project: ProjectDep,
    wait: bool = Wait,
) -> JSONResponse:
    """Without *source*: rebuild from ``[snapshots.NAME]`` (404 if not defined).

    Fail closed like the CLI: a column that looks personal without a rule refuses
    the snapshot (409) unless *allow_unreviewed*. Nothing is published on failure.
    """
    if body.source is None and (body.rules is not None or body.allow_unreviewed):
        raise BadRequest("rules and allow_unreviewed need a source")
    if body.rules is not None and len(body.rules) > MAX_RULES:
        raise BadRequest(f"rules over {MAX_RULES} characters")

    def build(progress: Callable[[str], None]) -> tuple[int, wire.CreatedSnapshot]:
        engine = project.engine()
        if body.source is None:
            snap = engine.snapshot_refresh(body.name, progress=progress)
            return 201, views.created_snapshot_dict(snap)
        if body.rules is None:
            snap = engine.snapshot_create(
                body.name,
                body.source,
                allow_unreviewed=body.allow_unreviewed,
                progress=progress,
            )
            return 201, views.created_snapshot_dict(snap)
        rules = parse_rules(body.rules, source=body.rules_name or "the sent rules")
        snap = engine.snapshot_create(
            body.name,
            body.source,
            rules=rules,
            allow_unreviewed=body.allow_unreviewed,
            progress=progress,
        )
        return 201, views.created_snapshot_dict(snap)

    def work(progress: Callable[[str], None]) -> tuple[int, wire.CreatedSnapshot]:
        with acting(f"token:{token.id}"):
            return build(progress)

    key = f"{project.name}\0snapshot\0{body.name}"
    return await run_long(daemon, wait, "snapshot", project.name, None, key, work)


@router.delete(
    "/snapshots/{ref}",
    response_model=schemas.Snapshots,
    responses=errors(401, 403, 404, 409, 502),
    summary="Remove NAME@N (or every version of NAME); refused while a branch uses it",
)
async def delete_snapshot(
    token: AdminToken, project: ProjectDep, ref: str
) -> list[wire.Snapshot]:
    def rm() -> list[SnapshotRecord]:
        with acting(f"token:{token.id}"):
            return project.engine().snapshot_rm(ref)

    removed = await run_in_threadpool(rm)
    return [views.snapshot_dict(s) for s in removed]
