"""The JSON shapes of branchdb's answers, shared by the CLI's ``--json`` and the API.

Light on purpose (``datetime`` only): the checkout hook's fast path prints
:func:`branch_dict` too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from branchdb.daemon.core.errors import redact

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (hook path)
if TYPE_CHECKING:
    from typing import Any

    from branchdb.daemon.core.engine import MigrateResult, UpResult
    from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
    from branchdb.daemon.gc.collector import GcReport


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
        "evicted": res.evicted,
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


def gc_dict(report: GcReport, *, dry_run: bool) -> dict[str, Any]:
    deleted = {id(c) for c in report.deleted}
    return {
        "dry_run": dry_run,
        "candidates": [
            {
                "branch": c.branch,
                "database": c.database,
                "policy": c.reason,
                "evidence": c.evidence,
                "marked_at": iso(c.marked_at) if c.marked_at is not None else None,
                "due_at": iso(c.due_at) if c.marked_at is not None else None,
                "deleted": id(c) in deleted,
                "freed_bytes": c.size_bytes if id(c) in deleted else 0,
            }
            for c in report.candidates
        ],
        "missing": report.missing,
        "active": report.active,
        "freed_bytes": sum(c.size_bytes for c in report.deleted),
        "totals": {
            **report.totals,
            "last_run_at": iso(report.totals["last_run_at"])
            if report.totals.get("last_run_at")
            else None,
        },
    }


def ttl_dict(info: dict[str, Any]) -> dict[str, Any]:
    """What ``branchdb ttl`` and ``PATCH …/branches/{branch}`` answer (ttl_of)."""
    return {
        **info,
        "idle_after": iso(info["idle_after"]) if info["idle_after"] else None,
    }


def status_dict(
    st: dict[str, Any], *, protected: bool, ttl: dict[str, Any]
) -> dict[str, Any]:
    """``status --json``: the record plus live facts from :meth:`Engine.status`,
    with the branch's TTL (:func:`branchdb.daemon.gc.ttl.ttl_of`)."""
    return {
        **branch_dict(st["record"]),
        "exists": st["exists"],
        "size_bytes": st["size_bytes"],
        "pending": st["pending"],
        "problem": redact(st["problem"]) if st["problem"] else None,
        "protected": protected,
        "ttl": ttl_dict(ttl),
    }
