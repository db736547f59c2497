"""The embedded state store: one SQLite file under the data directory.

Uses only the stdlib ``sqlite3`` (14 ms to import) so the hook path stays fast. The
schema is versioned with ``PRAGMA user_version``; :meth:`SqliteStore.open` upgrades an
older file in place. Writers take SQLite's write lock with ``BEGIN IMMEDIATE``;
cross-process serialisation of a branch's lifecycle is the engine's per-branch lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from branchdb.daemon import light
from branchdb.daemon.models import BranchRecord, SnapshotRecord
from branchdb.daemon.store.gc_state import GcState

SCHEMA_VERSION = light.STORE_SCHEMA_VERSION

_MIGRATIONS = {
    1: """
    CREATE TABLE branches (
        project TEXT NOT NULL,
        branch TEXT NOT NULL,
        database TEXT NOT NULL,
        backend TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_used_at REAL NOT NULL,
        url TEXT NOT NULL DEFAULT '',
        fingerprint TEXT NOT NULL DEFAULT '',
        applied TEXT NOT NULL DEFAULT '{}',
        info TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (project, branch)
    );
    CREATE UNIQUE INDEX branches_database ON branches (backend, database);
    CREATE TABLE snapshots (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        backend TEXT NOT NULL,
        location TEXT NOT NULL,
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        size_bytes INTEGER NOT NULL DEFAULT 0,
        info TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (project, name, version)
    );
    """,
    # GC marks: when a garbage-collection run first saw a branch ("branch") or an
    # unrecorded database ("orphan") collectable. Deletion waits a grace period.
    2: """
    CREATE TABLE gc_marks (
        project TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        marked_at REAL NOT NULL,
        PRIMARY KEY (project, kind, name)
    );
    """,
    # The daemon: API tokens (only their sha256 is kept), webhook deliveries (a
    # redelivered event is recognised by its id), and branches whose pull request
    # was closed (garbage collection's hint; cleared when it is reopened).
    3: """
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        last_used_at REAL
    );
    CREATE TABLE webhook_deliveries (
        provider TEXT NOT NULL,
        delivery TEXT NOT NULL,
        project TEXT NOT NULL,
        event TEXT NOT NULL,
        status TEXT NOT NULL,
        received_at REAL NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (provider, delivery)
    );
    CREATE TABLE closed_branches (
        project TEXT NOT NULL,
        branch TEXT NOT NULL,
        merged INTEGER NOT NULL,
        closed_at REAL NOT NULL,
        reference TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (project, branch)
    );
    """,
    # Garbage collection, version 4: per-branch TTL overrides (ttl NULL: never idle),
    # the last activity sample of each server database (a change means it was used),
    # persistent counters (collected databases/bytes by reason, runs, last run), and
    # the squash/rebase check's answers for the default branch's current tip.
    4: """
    CREATE TABLE branch_ttl (
        project TEXT NOT NULL,
        branch TEXT NOT NULL,
        ttl INTEGER,
        PRIMARY KEY (project, branch)
    );
    CREATE TABLE activity_samples (
        project TEXT NOT NULL,
        database TEXT NOT NULL,
        counter INTEGER NOT NULL,
        sampled_at REAL NOT NULL,
        PRIMARY KEY (project, database)
    );
    CREATE TABLE gc_counters (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (project, name)
    );
    CREATE TABLE merge_checks (
        project TEXT NOT NULL,
        default_sha TEXT NOT NULL,
        tip TEXT NOT NULL,
        contained INTEGER NOT NULL,
        PRIMARY KEY (project, default_sha, tip)
    );
    """,
}

_BRANCH_COLS = (
    "project, branch, database, backend, source, status, created_at, last_used_at, "
    "url, fingerprint, applied, info"
)


def _branch(row: sqlite3.Row) -> BranchRecord:
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
    )


def _snapshot(row: sqlite3.Row) -> SnapshotRecord:
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


class SqliteStore(GcState):
    """Branch and snapshot records in a SQLite file (0600: URLs hold secrets).

    Garbage collection's own state (TTL overrides, activity samples, counters,
    squash-check cache: schema version 4) is in :class:`GcState`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        # WAL + NORMAL: commits do not fsync (the hook path writes last-used on every
        # checkout); a power cut may lose the last timestamps, never corrupt the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._upgrade()

    def _upgrade(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._write():
            # Re-read under the write lock: another process may have upgraded.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version = {v}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

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
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO branches ({_BRANCH_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )

    def touch_branch(self, project: str, branch: str, when: float) -> None:
        """Refresh last-used time (never moves it backwards)."""
        with self._write() as db:
            db.execute(
                "UPDATE branches SET last_used_at = max(last_used_at, ?) "
                "WHERE project = ? AND branch = ?",
                (when, project, branch),
            )

    def delete_branch(self, project: str, branch: str) -> None:
        """Delete the record and what hangs off it (its TTL override)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM branches WHERE project = ? AND branch = ?",
                (project, branch),
            )
            db.execute(
                "DELETE FROM branch_ttl WHERE project = ? AND branch = ?",
                (project, branch),
            )

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
            "SELECT coalesce(max(version), 0) FROM snapshots "
            "WHERE project = ? AND name = ?",
            (project, name),
        ).fetchone()
        return int(row[0]) + 1

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
        return {r[0]: r[1] for r in rows}

    def set_gc_marks(self, project: str, kind: str, marks: dict[str, float]) -> None:
        """Replace every mark of *kind* for *project* by *marks*."""
        with self._write() as db:
            db.execute(
                "DELETE FROM gc_marks WHERE project = ? AND kind = ?", (project, kind)
            )
            db.executemany(
                "INSERT INTO gc_marks (project, kind, name, marked_at) "
                "VALUES (?, ?, ?, ?)",
                [(project, kind, n, t) for n, t in marks.items()],
            )

    # ---------------------------------------------------------------- api tokens
    def put_token(
        self, token_id: str, name: str, scope: str, sha256: str, when: float
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO api_tokens (id, name, scope, sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (token_id, name, scope, sha256, when),
            )

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token as a dict (id, name, scope, sha256, created_at, last_used_at)."""
        rows = self._db.execute("SELECT * FROM api_tokens ORDER BY created_at")
        return [dict(r) for r in rows.fetchall()]

    def delete_token(self, token_id: str) -> bool:
        with self._write() as db:
            cur = db.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
        return cur.rowcount > 0

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

        A delivery whose processing failed may be claimed again (a redelivery is
        how a provider retries), one that succeeded or is in progress may not.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT status FROM webhook_deliveries "
                "WHERE provider = ? AND delivery = ?",
                (provider, delivery),
            ).fetchone()
            if row is not None and row[0] != "failed":
                return False
            db.execute(
                "INSERT OR REPLACE INTO webhook_deliveries "
                "(provider, delivery, project, event, status, received_at) "
                "VALUES (?, ?, ?, ?, 'processing', ?)",
                (provider, delivery, project, event, when),
            )
        return True

    def finish_delivery(
        self, provider: str, delivery: str, status: str, detail: str = ""
    ) -> None:
        """Set a claimed delivery's outcome: ``done``, ``ignored`` or ``failed``."""
        with self._write() as db:
            db.execute(
                "UPDATE webhook_deliveries SET status = ?, detail = ? "
                "WHERE provider = ? AND delivery = ?",
                (status, detail, provider, delivery),
            )

    def delivery(self, provider: str, delivery: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM webhook_deliveries WHERE provider = ? AND delivery = ?",
            (provider, delivery),
        ).fetchone()
        return dict(row) if row else None

    # ----------------------------------------------------------- closed branches
    def mark_closed(
        self, project: str, branch: str, merged: bool, when: float, reference: str
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO closed_branches "
                "(project, branch, merged, closed_at, reference) VALUES (?,?,?,?,?)",
                (project, branch, int(merged), when, reference),
            )

    def clear_closed(self, project: str, branch: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM closed_branches WHERE project = ? AND branch = ?",
                (project, branch),
            )

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
