"""The API's JSON shapes as pydantic models, for OpenAPI and response validation.

The answers' models are generated from :mod:`branchdb.daemon.wire` (one definition
of each shape, shared with the CLI's ``--json``): same names, fields, types and
docstrings. The routes answer with the dicts of :mod:`branchdb.daemon.views`. Written
here by hand: what only the API has — errors, jobs, request bodies.
"""

from __future__ import annotations

import functools
import operator
import types
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from pydantic import BaseModel, Field, create_model

from branchdb.daemon import wire


@functools.cache
def model_of(shape: type) -> type[BaseModel]:
    """The pydantic model of the wire TypedDict *shape*: same name, fields, types
    and docstring (cached: a shape nested in others is one OpenAPI component)."""
    fields: dict[str, Any] = {
        name: (_with_models(tp), ...) for name, tp in get_type_hints(shape).items()
    }
    model: type[BaseModel] = create_model(
        shape.__name__, __doc__=shape.__doc__, __module__=__name__, **fields
    )
    return model


def _with_models(tp: Any) -> Any:
    """*tp* with every TypedDict in it replaced by its model."""
    if is_typeddict(tp):
        return model_of(tp)
    args = get_args(tp)
    if not args:
        return tp
    new = tuple(_with_models(a) for a in args)
    if get_origin(tp) in (Union, types.UnionType):
        return functools.reduce(operator.or_, new)
    return get_origin(tp)[new]


Branch = model_of(wire.Branch)
UpBranch = model_of(wire.UpBranch)
ResetBranch = model_of(wire.ResetBranch)
DroppedBranch = model_of(wire.DroppedBranch)
Migrate = model_of(wire.Migrate)
Snapshot = model_of(wire.Snapshot)
CreatedSnapshot = model_of(wire.CreatedSnapshot)
Ttl = model_of(wire.Ttl)
BranchStatus = model_of(wire.BranchStatus)
Gc = model_of(wire.Gc)
AuditEntry = model_of(wire.AuditEntry)
SchemaReview = model_of(wire.SchemaReview)
# A list of a generated model, spelled so that mypy does not take it for a type.
Branches: Any = types.GenericAlias(list, (Branch,))
Snapshots: Any = types.GenericAlias(list, (Snapshot,))
AuditEntries: Any = types.GenericAlias(list, (AuditEntry,))


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Job(BaseModel):
    id: str
    kind: str
    project: str
    branch: str | None
    status: str
    created_at: float
    finished_at: float | None
    http_status: int | None
    result: dict[str, Any] | None
    error: ErrorDetail | None
    progress: list[str] = []


class SnapshotCreate(BaseModel):
    """``POST /snapshots``: without *source*, the ``[snapshots.NAME]`` definition."""

    name: str
    source: str | None = None
    rules: str | None = None  # the rules file's TOML text (not a path)
    #: What errors call the rules: the client's own file (never a daemon path).
    rules_name: str | None = Field(None, max_length=1024)
    allow_unreviewed: bool = False


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error *codes* (all share ErrorBody)."""
    what = {
        400: "Malformed request (bad JSON, hostile branch name, missing header)",
        401: "Missing or invalid token / webhook signature",
        403: "The token's scope does not allow this",
        404: "No such project, branch, snapshot or job",
        409: "Refused (protected branch, busy lock, conflicting source)",
        413: "Request body too large",
        422: "Invalid parameters, or a migration failed / drifted / was edited",
        502: "The database server or file system failed",
        503: "The database server or the repository cannot be reached; try again",
    }
    return {c: {"model": ErrorBody, "description": what[c]} for c in codes}
