"""``GET /v1/projects/{project}/audit``: who created, reset, deleted, migrated or
snapshotted what, when and why — newest first, from the state store's audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api.deps import ProjectDep, ReadToken
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.store.base import AUDIT_ACTIONS

router = APIRouter(prefix="/v1/projects/{project}", tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: float  # unix time
    project: str
    branch: str  # "" for snapshot actions
    action: str
    actor: str  # token:<id>, github:<delivery>, cli:<user>, scheduler
    reason: str  # why, as the actor said
    detail: str  # what was done


@router.get(
    "/audit",
    response_model=list[AuditEntry],
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
) -> list[dict[str, Any]]:
    entries = await run_in_threadpool(
        lambda: project.engine().audit_log(branch=branch, action=action, limit=limit)
    )
    return [e._asdict() for e in entries]
