"""``GET /v1/projects/{project}/branches/{branch}/diff``: schema review over HTTP.

One adapter over :mod:`branchdb.daemon.review.review`: the branch's schema against
``?against=`` (a branch, or a snapshot ``NAME@N``; default the default branch), or
with ``?drift=true`` against what its migrations produce, and the lint of its
migrations as committed (the branch's tip after a fetch, or ``?sha=``; a project
without a repository: its directory on disk). ``?format=``: ``json`` (the
:data:`~branchdb.daemon.wire.SchemaReview`), ``text`` (what ``branchdb diff``
prints) or ``sql`` (the statements turning the base's schema into the branch's).
Read scope: it reads catalogs only, never data.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views, wire
from branchdb.daemon.api import schemas
from branchdb.daemon.api.branches import Sha
from branchdb.daemon.api.deps import BranchDep, ProjectDep, ReadToken
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.core.errors import Refused
from branchdb.daemon.review import render
from branchdb.daemon.review import review as engine_review

router = APIRouter(prefix="/v1/projects/{project}", tags=["branches"])

_TEXT: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}


@router.get(
    "/branches/{branch:path}/diff",
    response_model=schemas.SchemaReview,
    responses={200: {"content": _TEXT}, **errors(400, 401, 403, 404, 409, 502, 503)},
    summary="The branch's schema diff and the lint of its migrations",
)
async def branch_diff(
    token: ReadToken,
    project: ProjectDep,
    branch: BranchDep,
    against: str | None = Query(
        None,
        max_length=300,
        description="a branch with a database, or a snapshot NAME@N "
        "(default: the default branch)",
    ),
    drift: bool = Query(
        False, description="compare with what the branch's migrations produce"
    ),
    format: Literal["json", "text", "sql"] = Query(
        "json", description="json, text (as `branchdb diff` prints) or sql"
    ),
    sha: str | None = Sha,
) -> Response:
    if drift and against:
        raise Refused("choose one of against and drift")

    def work() -> wire.SchemaReview:
        engine = project.engine()
        engine.get(branch)  # no database: 404 before any fetch
        files = project.committed_migrations(branch, sha)
        if drift:
            d = engine_review.drift(engine, branch, files=files)
            return views.review_dict(engine_review.Review(d, None))
        return views.review_dict(
            engine_review.review(engine, branch, against, files=files)
        )

    data = await run_in_threadpool(work)
    if format == "text":
        return PlainTextResponse(render.text(data))
    if format == "sql":
        return PlainTextResponse(data["diff"]["sql"] or "")
    return JSONResponse(data)
