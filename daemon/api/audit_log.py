"""``GET /v1/projects/{project}/audit``: who created, reset, deleted, migrated or
snapshotted what, when and why — newest first, from the state store's audit log."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views, wire
from branchdb.daemon.api import schemas
from branchdb.daemon.api.deps import ProjectDep, ReadToken
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.store.base import AUDIT_ACTIONS

router = APIRouter(prefix="/v1/projects/{project}", tags=["audit"])


@router.get(
    "/audit",
    response_model=schemas.AuditEntries,
    responses=errors(401, 403, 404, 422),
    summary="The audit log: creates, resets, deletes, migrations, snapshots",
)
async def audit_log(
    token: ReadToken,
    project: ProjectDep,
    branch: str | None = Query(None, max_length=1024, description="only this branch"),
    action: str | None = Query(
        None, pattern="^(" + "|".join(AUDIT_ACTIONS).replace(".", r"\.") + ")$"
    ),
    limit: int = Query(100, ge=1, le=1000),
) -> list[wire.AuditEntry]:
    entries = await run_in_threadpool(
        lambda: project.engine().audit_log(branch=branch, action=action, limit=limit)
    )
    return [views.audit_dict(e) for e in entries]
