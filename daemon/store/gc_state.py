"""Garbage collection's state in the SQLite store (tables of schema version 4).

A mixin of :class:`~.sqlite_store.SqliteStore`: per-branch TTL overrides, the last
activity sample of each server database, persistent GC counters, and the
squash/rebase check's cached answers. Kept apart so the GC's part of the store is
one small file to port to another store.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager


class GcState:
    _db: sqlite3.Connection

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # SqliteStore's: BEGIN IMMEDIATE … COMMIT

    # ------------------------------------------------------- gc: ttl overrides
    def set_branch_ttl(self, project: str, branch: str, ttl: int | None) -> None:
        """Override *branch*'s TTL: seconds, or None for "never idle"."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO branch_ttl (project, branch, ttl) "
                "VALUES (?, ?, ?)",
                (project, branch, ttl),
            )

    def clear_branch_ttl(self, project: str, branch: str) -> None:
        """Back to the project's default TTL."""
        with self._write() as db:
            db.execute(
                "DELETE FROM branch_ttl WHERE project = ? AND branch = ?",
                (project, branch),
            )

    def branch_ttls(self, project: str) -> dict[str, int | None]:
        """branch -> overridden TTL in seconds (None: never) for *project*."""
        rows = self._db.execute(
            "SELECT branch, ttl FROM branch_ttl WHERE project = ?", (project,)
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    # ------------------------------------------------- gc: activity samples
    def activity_samples(self, project: str) -> dict[str, int]:
        """database -> the activity counter last sampled on the server."""
        rows = self._db.execute(
            "SELECT database, counter FROM activity_samples WHERE project = ?",
            (project,),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def record_activity(
        self,
        project: str,
        samples: dict[str, int],
        used: dict[str, float],
        when: float,
    ) -> None:
        """Replace *project*'s samples by *samples*; refresh last-used of *used*.

        *used* maps branch -> when it was seen used. One transaction.
        """
        with self._write() as db:
            db.execute("DELETE FROM activity_samples WHERE project = ?", (project,))
            db.executemany(
                "INSERT INTO activity_samples (project, database, counter, "
                "sampled_at) VALUES (?, ?, ?, ?)",
                [(project, d, c, when) for d, c in samples.items()],
            )
            db.executemany(
                "UPDATE branches SET last_used_at = max(last_used_at, ?) "
                "WHERE project = ? AND branch = ?",
                [(t, project, b) for b, t in used.items()],
            )

    # ------------------------------------------------------- gc: counters
    def gc_counters(self, project: str | None = None) -> dict[str, dict[str, float]]:
        """project -> {name: value} (every project when *project* is None)."""
        sql = "SELECT project, name, value FROM gc_counters"
        args: tuple[str, ...] = ()
        if project is not None:
            sql, args = sql + " WHERE project = ?", (project,)
        out: dict[str, dict[str, float]] = {}
        for r in self._db.execute(sql, args).fetchall():
            out.setdefault(r[0], {})[r[1]] = r[2]
        return out

    def bump_gc_counters(
        self, project: str, add: dict[str, float], put: dict[str, float]
    ) -> None:
        """Add *add* to counters and set *put* gauges, in one transaction."""
        with self._write() as db:
            for name, value in add.items():
                db.execute(
                    "INSERT INTO gc_counters (project, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (project, name) DO UPDATE SET value = value + ?",
                    (project, name, value, value),
                )
            for name, value in put.items():
                db.execute(
                    "INSERT OR REPLACE INTO gc_counters (project, name, value) "
                    "VALUES (?, ?, ?)",
                    (project, name, value),
                )

    # ------------------------------------------------- gc: squash-check cache
    def merge_checks(self, project: str, default_sha: str) -> dict[str, bool]:
        """tip -> "its changes are contained in *default_sha*" (cached answers)."""
        rows = self._db.execute(
            "SELECT tip, contained FROM merge_checks "
            "WHERE project = ? AND default_sha = ?",
            (project, default_sha),
        ).fetchall()
        return {r[0]: bool(r[1]) for r in rows}

    def add_merge_checks(
        self, project: str, default_sha: str, answers: dict[str, bool]
    ) -> None:
        """Add *answers*; answers for any other default tip are dropped (they can
        never be asked again once the default branch has moved on)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM merge_checks WHERE project = ? AND default_sha != ?",
                (project, default_sha),
            )
            db.executemany(
                "INSERT OR REPLACE INTO merge_checks "
                "(project, default_sha, tip, contained) VALUES (?, ?, ?, ?)",
                [(project, default_sha, t, int(c)) for t, c in answers.items()],
            )
