"""The API's JSON shapes: the CLI's ``--json`` output, documented as OpenAPI models.

The dicts built here are exactly what ``branchdb ... --json`` prints
(:mod:`branchdb.cli.output`; the daemon may not import the CLI, so
tests/test_api.py checks that the two agree field for field).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from branchdb.daemon.engine import MigrateResult, UpResult
from branchdb.daemon.errors import redact
from branchdb.daemon.models import BranchRecord, SnapshotRecord


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def branch_dict(rec: BranchRecord) -> dict[str, Any]:
    return {
        "branch": rec.branch,
        "database": rec.database,
        "backend": rec.backend,
        "url": rec.url,
        "source": rec.source,
        "status": rec.status,
        "created_at": iso(rec.created_at),
        "last_used_at": iso(rec.last_used_at),
        "migrations_applied": len(rec.applied),
        "strategy": rec.info.get("strategy"),
    }


def up_dict(res: UpResult) -> dict[str, Any]:
    return {
        **branch_dict(res.record),
        "created": res.created,
        "reset": res.reset,
        "up_to_date": res.up_to_date,
        "applied": res.applied,
    }


def migrate_dict(res: MigrateResult) -> dict[str, Any]:
    return {
        "branch": res.record.branch,
        "dry_run": res.dry_run,
        "applied": res.applied,
        "pending": res.pending,
    }


def snapshot_dict(s: SnapshotRecord) -> dict[str, Any]:
    return {
        "name": s.name,
        "version": s.version,
        "ref": s.ref,
        "backend": s.backend,
        "location": s.location,
        "source": redact(s.source),
        "size_bytes": s.size_bytes,
        "created_at": iso(s.created_at),
    }


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
