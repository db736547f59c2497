"""``/v1/projects/{project}/gc``: the garbage-collection plan, and a run; and
``PATCH /v1/projects/{project}/branches/{branch}``: a branch's own idle TTL.

The same :meth:`Engine.gc` as ``branchdb gc`` and the daemon's scheduler; the JSON
is what ``branchdb gc --json`` prints.

The TTL is set with PATCH on the branch itself, not with a ``…/{branch}/ttl``
sub-path: branch names contain slashes, so ``PUT …/branches/x/ttl`` is also the
create of a branch named ``x/ttl``, and a route for one shadows the other. No
other route of the API answers PATCH, so this one takes no branch name from
anyone.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views, wire
from branchdb.daemon.api import schemas
from branchdb.daemon.api.deps import (
    AdminToken,
    BranchDep,
    CiToken,
    ProjectDep,
    ReadToken,
)
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.core.audit import acting
from branchdb.daemon.gc.collector import collect
from branchdb.daemon.gc.results import GcReport
from branchdb.daemon.gc.ttl import set_ttl

router = APIRouter(prefix="/v1/projects/{project}", tags=["gc"])


@router.get(
    "/gc",
    response_model=schemas.Gc,
    summary="What garbage collection would delete, and why (changes nothing)",
    responses=errors(401, 403, 404),
)
async def gc_plan(token: ReadToken, project: ProjectDep) -> wire.Gc:
    report = await run_in_threadpool(lambda: collect(project.engine(), dry_run=True))
    return views.gc_dict(report, dry_run=True)


@router.post(
    "/gc",
    response_model=schemas.Gc,
    summary="Run garbage collection now: mark collectable databases, delete due ones",
    responses=errors(401, 403, 404),
)
async def gc_run(
    token: AdminToken,
    project: ProjectDep,
    dry_run: bool = Query(False, description="only plan, like GET"),
) -> wire.Gc:
    def work() -> GcReport:
        with acting(f"token:{token.id}", "POST /gc"):
            return collect(project.engine(), dry_run=dry_run)

    report = await run_in_threadpool(work)
    return views.gc_dict(report, dry_run=dry_run)


class TtlBody(BaseModel):
    ttl: str = Field(
        max_length=32,
        # What gc.ttl.set_ttl accepts: 1 to 99999 of a unit (at most 99999w).
        pattern=r"^(never|default|\s*0*[1-9][0-9]{0,4}\s*[smhdw]\s*)$",
        description='a duration ("3d", "12h", "90m"), "never" (not collected for '
        'being idle) or "default" (back to the project\'s branches.ttl)',
        examples=["3d"],
    )


@router.patch(
    "/branches/{branch:path}",
    tags=["branches"],
    response_model=schemas.Ttl,
    summary="Set one branch's idle TTL for garbage collection (idempotent)",
    responses=errors(400, 401, 403, 404, 422),
)
async def put_ttl(
    token: CiToken, project: ProjectDep, branch: BranchDep, body: TtlBody
) -> wire.Ttl:
    info = await run_in_threadpool(lambda: set_ttl(project.engine(), branch, body.ttl))
    return views.ttl_dict(info)
