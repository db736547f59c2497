"""Engine results as JSON: the shapes of :mod:`branchdb.daemon.wire`, built here only.

The CLI's ``--json`` (embedded mode), the API's answers (which remote mode prints) and
the checkout hook's fast path all print these, so each shape has one definition and
one builder. Light on purpose (``datetime`` only, the types named for the type checker
alone): the fast path prints :func:`up_to_date_dict`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from branchdb.daemon.core.errors import redact

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (hook path)
if TYPE_CHECKING:
    from collections.abc import Iterable

    from branchdb.daemon import wire
    from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
    from branchdb.daemon.core.results import MigrateResult, Status, UpResult
    from branchdb.daemon.gc.results import GcReport, GcTotals, Ttl
    from branchdb.daemon.review.model import SchemaDiff
    from branchdb.daemon.review.review import LintResult, Review
    from branchdb.daemon.sanitize.detect import Finding
    from branchdb.daemon.store.base import AuditEntry


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def branch_dict(rec: BranchRecord, running: bool | None = None) -> wire.Branch:
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
        "auth_token": rec.info.get("auth_token"),
        "running": running,
    }


def up_dict(res: UpResult) -> wire.UpBranch:
    return {
        **branch_dict(res.record, res.running),
        "created": res.created,
        "reset": res.reset,
        "up_to_date": res.up_to_date,
        "applied": list(res.applied),
        "evicted": list(res.evicted),
        "command": res.command,
    }


def up_to_date_dict(rec: BranchRecord) -> wire.UpBranch:
    """``up_dict(UpResult(rec, up_to_date=True))``, without importing the results
    module (``dataclasses``): what the hook's fast path prints for ``up --json``."""
    return {
        **branch_dict(rec),
        "created": False,
        "reset": False,
        "up_to_date": True,
        "applied": [],
        "evicted": [],
        "command": None,
    }


def reset_dict(res: UpResult) -> wire.ResetBranch:
    return {**branch_dict(res.record, res.running), "applied": list(res.applied)}


def dropped_dict(rec: BranchRecord) -> wire.DroppedBranch:
    return {**branch_dict(rec), "dropped": True}


def migrate_dict(res: MigrateResult) -> wire.Migrate:
    return {
        "branch": res.record.branch,
        "dry_run": res.dry_run,
        "applied": list(res.applied),
        "pending": list(res.pending),
    }


def snapshot_dict(s: SnapshotRecord) -> wire.Snapshot:
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


def created_snapshot_dict(s: SnapshotRecord) -> wire.CreatedSnapshot:
    return {**snapshot_dict(s), "sanitize": s.info.get("sanitize")}


def gc_dict(report: GcReport, *, dry_run: bool) -> wire.Gc:
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
        "missing": list(report.missing),
        "active": list(report.active),
        "freed_bytes": sum(c.size_bytes for c in report.deleted),
        "totals": gc_totals_dict(report.totals),
    }


def gc_totals_dict(t: GcTotals) -> wire.GcTotals:
    return {
        "collected_databases": t.collected_databases,
        "collected_bytes": t.collected_bytes,
        "by_reason": {
            reason: {"databases": n.databases, "bytes": n.bytes}
            for reason, n in t.by_reason.items()
        },
        "runs": t.runs,
        "last_run_at": iso(t.last_run_at) if t.last_run_at else None,
    }


def ttl_dict(t: Ttl) -> wire.Ttl:
    """What ``branchdb ttl`` and ``PATCH …/branches/{branch}`` answer (ttl_of)."""
    return {
        "branch": t.branch,
        "ttl": t.ttl,
        "ttl_source": t.ttl_source,
        "idle_after": iso(t.idle_after) if t.idle_after else None,
        "protected": t.protected,
    }


def status_dict(st: Status, *, protected: bool, ttl: Ttl) -> wire.BranchStatus:
    """``status --json``: the record plus live facts from :meth:`Engine.status`,
    with the branch's TTL (:func:`branchdb.daemon.gc.ttl.ttl_of`)."""
    return {
        **branch_dict(st.record, st.running),
        "exists": st.exists,
        "size_bytes": st.size_bytes,
        "pending": list(st.pending),
        # What the tool's ledger says when it could be read, else branchdb's record.
        "migrations_applied": len(st.record.applied)
        if st.applied is None
        else len(st.applied),
        "applied": None if st.applied is None else list(st.applied),
        "ledger": st.ledger,
        "command": st.command,  # format "command": the tool applies them
        "problem": redact(st.problem) if st.problem else None,
        "protected": protected,
        "ttl": ttl_dict(ttl),
    }


def finding_dicts(
    findings: Iterable[Finding], unreviewed: Iterable[Finding] | None
) -> list[wire.Finding]:
    """``snapshot check --json``: *unreviewed* None when no rules were given."""
    missing = None if unreviewed is None else {f.where for f in unreviewed}
    return [
        {
            "column": f.where,
            "category": f.category,
            "reason": f.reason,
            "suggestion": f"[tables.{f.table}] {f.toml()}",
            "has_rule": None if missing is None else f.where not in missing,
        }
        for f in findings
    ]


def audit_dict(e: AuditEntry) -> wire.AuditEntry:
    return {
        "id": e.id,
        "at": e.at,
        "project": e.project,
        "branch": e.branch,
        "action": e.action,
        "actor": e.actor,
        "reason": e.reason,
        "detail": e.detail,
    }


def schema_diff_dict(d: SchemaDiff) -> wire.SchemaDiff:
    return {
        "dialect": d.dialect,
        "base": d.base,
        "head": d.head,
        "changes": [
            {
                "kind": c.kind,
                "change": c.change,
                "name": c.name,
                "before": c.before,
                "after": c.after,
            }
            for c in d.changes
        ],
        "sql": d.sql,
        "ignored": list(d.ignored),
    }


def lint_dict(r: LintResult) -> wire.SchemaLint:
    return {
        "base": r.base,
        "head": r.head,
        "linter": r.linter,
        "linted": list(r.linted),
        "findings": [
            {
                "path": f.path,
                "migration": f.migration,
                "line": f.line,
                "end_line": f.end_line,
                "rule": f.rule,
                "level": f.level,
                "message": f.message,
                "help": f.help,
            }
            for f in r.findings
        ],
        "skipped": r.skipped,
    }


def review_dict(r: Review) -> wire.SchemaReview:
    return {
        "diff": schema_diff_dict(r.diff),
        "lint": None if r.lint is None else lint_dict(r.lint),
    }
