"""``/v1/projects/{project}/gc``: the garbage-collection plan, and a run.

The same :meth:`Engine.gc` as ``branchdb gc`` and the daemon's scheduler; the JSON
is what ``branchdb gc --json`` prints.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views
from branchdb.daemon.api.deps import AdminToken, ProjectDep, ReadToken
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.audit import acting

router = APIRouter(prefix="/v1/projects/{project}", tags=["gc"])


@router.get(
    "/gc",
    summary="What garbage collection would delete, and why (changes nothing)",
    responses=errors(401, 403, 404),
)
async def gc_plan(token: ReadToken, project: ProjectDep) -> dict[str, Any]:
    report = await run_in_threadpool(lambda: project.engine().gc(dry_run=True))
    return views.gc_dict(report, dry_run=True)


@router.post(
    "/gc",
    summary="Run garbage collection now: mark collectable databases, delete due ones",
    responses=errors(401, 403, 404),
)
async def gc_run(
    token: AdminToken,
    project: ProjectDep,
    dry_run: bool = Query(False, description="only plan, like GET"),
) -> dict[str, Any]:
    def work() -> Any:
        with acting(f"token:{token.id}", "POST /gc"):
            return project.engine().gc(dry_run=dry_run)

    report = await run_in_threadpool(work)
    return views.gc_dict(report, dry_run=dry_run)
