"""Every query of the state store, written once for SQLite and PostgreSQL.

A subclass provides two things: ``self._db``, whose ``execute(sql, args)`` answers a
cursor (``fetchone``, ``fetchall``, ``rowcount``) with rows readable by column name,
and ``_write()``, a context manager holding one write transaction. Queries use ``?``
placeholders and the portable SQL listed in :mod:`.schema`; the PostgreSQL store
translates the placeholders. A method written for :class:`SqliteStore` in this style
can move here unchanged and then works on both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
from branchdb.daemon.store.base import AuditEntry
from branchdb.daemon.store.gc_state import GcState

_BRANCH_COLS = (
    "project, branch, database, backend, source, status, created_at, last_used_at, "
    "url, fingerprint, applied, info, default_heads"
)
_AUDIT_COLS = "id, at, project, branch, action, actor, reason, detail"


def _branch(row: Mapping[str, Any]) -> BranchRecord:
    return BranchRecord(
        project=row["project"],
        branch=row["branch"],
        database=row["database"],
        backend=row["backend"],
        source=row["source"],
        status=row["status"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        url=row["url"],
        fingerprint=row["fingerprint"],
        applied=json.loads(row["applied"]),
        info=json.loads(row["info"]),
        default_heads=row["default_heads"].split(),
    )


def _snapshot(row: Mapping[str, Any]) -> SnapshotRecord:
    return SnapshotRecord(
        project=row["project"],
        name=row["name"],
        version=row["version"],
        backend=row["backend"],
        location=row["location"],
        created_at=row["created_at"],
        source=row["source"],
        size_bytes=row["size_bytes"],
        info=json.loads(row["info"]),
    )


def _audit(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=row["at"],
        project=row["project"],
        branch=row["branch"],
        action=row["action"],
        actor=row["actor"],
        reason=row["reason"],
        detail=row["detail"],
        id=row["id"],
    )


class SqlStore(GcState):
    """The queries; see the module docstring for what a subclass provides."""

    _db: Any
    _store_id: str | None = None

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    @property
    def store_id(self) -> str:
        """This store's identity (see :class:`~.base.Store`); read once, cached."""
        if self._store_id is None:
            row = self._db.execute(
                "SELECT value FROM store_meta WHERE name = 'store_id'"
            ).fetchone()
            self._store_id = str(row["value"])
        return self._store_id

    # ------------------------------------------------------------------ branches
    def get_branch(self, project: str, branch: str) -> BranchRecord | None:
        row = self._db.execute(
            f"SELECT {_BRANCH_COLS} FROM branches WHERE project = ? AND branch = ?",
            (project, branch),
        ).fetchone()
        return _branch(row) if row else None

    def branch_by_database(self, backend: str, database: str) -> BranchRecord | None:
        row = self._db.execute(
            f"SELECT {_BRANCH_COLS} FROM branches WHERE backend = ? AND database = ?",
            (backend, database),
        ).fetchone()
        return _branch(row) if row else None

    def list_branches(self, project: str) -> list[BranchRecord]:
        rows = self._db.execute(
            f"SELECT {_BRANCH_COLS} FROM branches WHERE project = ? ORDER BY branch",
            (project,),
        ).fetchall()
        return [_branch(r) for r in rows]

    def put_branch(self, rec: BranchRecord) -> None:
        """Insert or replace the record of ``(rec.project, rec.branch)``."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in _BRANCH_COLS.split(", ")[2:])
        with self._write() as db:
            db.execute(
                f"INSERT INTO branches ({_BRANCH_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"ON CONFLICT (project, branch) DO UPDATE SET {updates}",
                (
                    rec.project,
                    rec.branch,
                    rec.database,
                    rec.backend,
                    rec.source,
                    rec.status,
                    rec.created_at,
                    rec.last_used_at,
                    rec.url,
                    rec.fingerprint,
                    json.dumps(rec.applied, sort_keys=True),
                    json.dumps(rec.info, sort_keys=True),
                    " ".join(rec.default_heads),
                ),
            )

    def touch_branch(self, project: str, branch: str, when: float) -> None:
        """Refresh last-used time (never moves it backwards)."""
        with self._write() as db:
            db.execute(
                "UPDATE branches SET last_used_at = ? "
                "WHERE project = ? AND branch = ? AND last_used_at < ?",
                (when, project, branch, when),
            )

    def delete_branch(self, project: str, branch: str) -> None:
        """Delete the record and everything keyed by (project, branch) with it, in
        one transaction: its TTL override, a closed- or open-pull-request mark, a GC
        mark. A later database for the same branch name starts with none of them."""
        with self._write() as db:
            for stmt in (
                "DELETE FROM branches WHERE project = ? AND branch = ?",
                "DELETE FROM branch_ttl WHERE project = ? AND branch = ?",
                "DELETE FROM closed_branches WHERE project = ? AND branch = ?",
                "DELETE FROM open_pull_requests WHERE project = ? AND branch = ?",
                "DELETE FROM gc_marks WHERE project = ? AND kind = 'branch' "
                "AND name = ?",
            ):
                db.execute(stmt, (project, branch))

    # ----------------------------------------------------------------- snapshots
    def list_snapshots(
        self, project: str, name: str | None = None
    ) -> list[SnapshotRecord]:
        sql = "SELECT * FROM snapshots WHERE project = ?"
        args: list[Any] = [project]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        rows = self._db.execute(sql + " ORDER BY name, version", args).fetchall()
        return [_snapshot(r) for r in rows]

    def next_snapshot_version(self, project: str, name: str) -> int:
        row = self._db.execute(
            "SELECT coalesce(max(version), 0) AS v FROM snapshots "
            "WHERE project = ? AND name = ?",
            (project, name),
        ).fetchone()
        return int(row["v"]) + 1

    def put_snapshot(self, rec: SnapshotRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO snapshots (project, name, version, backend, location, "
                "created_at, source, size_bytes, info) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    rec.project,
                    rec.name,
                    rec.version,
                    rec.backend,
                    rec.location,
                    rec.created_at,
                    rec.source,
                    rec.size_bytes,
                    json.dumps(rec.info, sort_keys=True),
                ),
            )

    def delete_snapshot(self, project: str, name: str, version: int) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM snapshots WHERE project = ? AND name = ? AND version = ?",
                (project, name, version),
            )

    # ------------------------------------------------------------------ gc marks
    def gc_marks(self, project: str, kind: str) -> dict[str, float]:
        rows = self._db.execute(
            "SELECT name, marked_at FROM gc_marks WHERE project = ? AND kind = ?",
            (project, kind),
        ).fetchall()
        return {r["name"]: r["marked_at"] for r in rows}

    def set_gc_marks(self, project: str, kind: str, marks: dict[str, float]) -> None:
        """Replace every mark of *kind* for *project* by *marks*."""
        with self._write() as db:
            db.execute(
                "DELETE FROM gc_marks WHERE project = ? AND kind = ?", (project, kind)
            )
            if marks:
                db.executemany(
                    "INSERT INTO gc_marks (project, kind, name, marked_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(project, kind, n, t) for n, t in marks.items()],
                )

    # ---------------------------------------------------------------- api tokens
    def put_token(
        self,
        token_id: str,
        name: str,
        scope: str,
        sha256: str,
        when: float,
        projects: Sequence[str] = (),
    ) -> None:
        """Store a token; *projects* limits it to those projects (empty: all)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO api_tokens (id, name, scope, sha256, created_at, "
                "projects) VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, name, scope, sha256, when, json.dumps(sorted(projects))),
            )

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token as a dict (id, name, scope, sha256, created_at, last_used_at,
        projects: a sorted list, empty for a token of every project)."""
        rows = self._db.execute(
            "SELECT id, name, scope, sha256, created_at, last_used_at, projects "
            "FROM api_tokens ORDER BY created_at"
        ).fetchall()
        return [{**dict(r), "projects": json.loads(r["projects"])} for r in rows]

    def delete_token(self, token_id: str) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
            return bool(cur.rowcount > 0)

    def touch_token(self, token_id: str, when: float) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (when, token_id)
            )

    # --------------------------------------------------------- webhook deliveries
    def claim_delivery(
        self, provider: str, delivery: str, project: str, event: str, when: float
    ) -> bool:
        """Record a delivery as being processed; False if it was seen before.

        Keyed by (provider, project, delivery): each project has its own secret, so
        one project's sender cannot claim another project's delivery ids. A
        delivery whose processing failed may be claimed again (a redelivery is how
        a provider retries), one that succeeded or is in progress may not. One
        statement: of two replicas claiming at once, exactly one gets True.
        """
        with self._write() as db:
            row = db.execute(
                "INSERT INTO webhook_deliveries "
                "(provider, delivery, project, event, status, received_at, detail) "
                "VALUES (?, ?, ?, ?, 'processing', ?, '') "
                "ON CONFLICT (provider, project, delivery) DO UPDATE SET "
                "event = excluded.event, "
                "status = 'processing', received_at = excluded.received_at, "
                "detail = '' WHERE webhook_deliveries.status = 'failed' "
                "RETURNING status",
                (provider, delivery, project, event, when),
            ).fetchone()
        return row is not None

    def finish_delivery(
        self,
        provider: str,
        delivery: str,
        status: str,
        detail: str = "",
        *,
        project: str,
    ) -> None:
        """Set a claimed delivery's outcome: ``done``, ``ignored`` or ``failed``."""
        with self._write() as db:
            db.execute(
                "UPDATE webhook_deliveries SET status = ?, detail = ? "
                "WHERE provider = ? AND project = ? AND delivery = ?",
                (status, detail, provider, project, delivery),
            )

    def delivery(
        self, provider: str, delivery: str, *, project: str
    ) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT provider, delivery, project, event, status, received_at, detail "
            "FROM webhook_deliveries "
            "WHERE provider = ? AND project = ? AND delivery = ?",
            (provider, project, delivery),
        ).fetchone()
        return dict(row) if row else None

    # ----------------------------------------------------------- closed branches
    def mark_closed(
        self, project: str, branch: str, merged: bool, when: float, reference: str
    ) -> None:
        """Record *branch*'s pull request as closed (and no longer open)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM open_pull_requests WHERE project = ? AND branch = ?",
                (project, branch),
            )
            db.execute(
                "INSERT INTO closed_branches "
                "(project, branch, merged, closed_at, reference) VALUES (?,?,?,?,?) "
                "ON CONFLICT (project, branch) DO UPDATE SET merged = excluded.merged, "
                "closed_at = excluded.closed_at, reference = excluded.reference",
                (project, branch, int(merged), when, reference),
            )

    def clear_closed(self, project: str, branch: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM closed_branches WHERE project = ? AND branch = ?",
                (project, branch),
            )

    def mark_open(self, project: str, branch: str, when: float, reference: str) -> None:
        """Record that *branch* has an open pull request; clears a closed mark."""
        with self._write() as db:
            db.execute(
                "DELETE FROM closed_branches WHERE project = ? AND branch = ?",
                (project, branch),
            )
            db.execute(
                "INSERT INTO open_pull_requests (project, branch, reference, "
                "opened_at) VALUES (?, ?, ?, ?) ON CONFLICT (project, branch) "
                "DO UPDATE SET reference = excluded.reference",
                (project, branch, reference, when),
            )

    def open_branches(self, project: str) -> dict[str, str]:
        """branch -> reference of its open pull request, for *project*."""
        rows = self._db.execute(
            "SELECT branch, reference FROM open_pull_requests WHERE project = ?",
            (project,),
        ).fetchall()
        return {r["branch"]: r["reference"] for r in rows}

    def closed_branches(self, project: str) -> dict[str, dict[str, Any]]:
        """branch -> {merged, closed_at, reference} for *project*."""
        rows = self._db.execute(
            "SELECT branch, merged, closed_at, reference FROM closed_branches "
            "WHERE project = ?",
            (project,),
        ).fetchall()
        return {
            r["branch"]: {
                "merged": bool(r["merged"]),
                "closed_at": r["closed_at"],
                "reference": r["reference"],
            }
            for r in rows
        }

    # ----------------------------------------------------------------- audit log
    def add_audit(self, entry: AuditEntry) -> None:
        """Append *entry* (its ``id`` is ignored: the store numbers entries)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO audit_log "
                "(at, project, branch, action, actor, reason, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.at,
                    entry.project,
                    entry.branch,
                    entry.action,
                    entry.actor,
                    entry.reason,
                    entry.detail,
                ),
            )

    def list_audit(
        self,
        project: str,
        *,
        branch: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """*project*'s newest entries first, at most *limit*, optionally filtered."""
        sql = f"SELECT {_AUDIT_COLS} FROM audit_log WHERE project = ?"
        args: list[Any] = [project]
        if branch is not None:
            sql += " AND branch = ?"
            args.append(branch)
        if action is not None:
            sql += " AND action = ?"
            args.append(action)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_audit(r) for r in self._db.execute(sql, args).fetchall()]
