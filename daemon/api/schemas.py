"""The API's JSON shapes: the CLI's ``--json`` output, documented as OpenAPI models.

The dicts come from :mod:`branchdb.daemon.views`, the same functions the CLI's
``--json`` output uses; the pydantic models here document them in OpenAPI.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Branch(BaseModel):
    branch: str
    database: str
    backend: str
    url: str
    source: str
    status: str
    created_at: str
    last_used_at: str
    migrations_applied: int
    strategy: str | None


class UpBranch(Branch):
    created: bool
    reset: bool
    up_to_date: bool
    applied: list[str]
    evicted: list[str] = []


class ResetBranch(Branch):
    applied: list[str]


class DroppedBranch(Branch):
    dropped: bool


class Migrate(BaseModel):
    branch: str
    dry_run: bool
    applied: list[str]
    pending: list[str]


class Snapshot(BaseModel):
    name: str
    version: int
    ref: str
    backend: str
    location: str
    source: str
    size_bytes: int
    created_at: str


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


class Ttl(BaseModel):
    """A branch's idle TTL for garbage collection (``branchdb ttl --json``)."""

    branch: str
    ttl: int | None  # seconds; None: never collected for being idle
    ttl_source: str  # "branch" (its own) or "project" (branches.ttl)
    idle_after: str | None
    protected: bool


class BranchStatus(Branch):
    exists: bool
    size_bytes: int
    pending: list[str]
    problem: str | None
    protected: bool
    ttl: Ttl


class CreatedSnapshot(Snapshot):
    sanitize: dict[str, Any] | None = None


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
    }
    return {c: {"model": ErrorBody, "description": what[c]} for c in codes}
