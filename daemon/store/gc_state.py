"""Garbage collection's state in the store (tables of schema step 5).

A mixin of :class:`~.sql_store.SqlStore` (so of both stores): per-branch TTL
overrides, the last activity sample of each server database, persistent GC counters,
and the squash/rebase check's cached answers. Portable SQL, rows read by name.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


class GcState:
    _db: Any

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError  # the store's write transaction

    # ------------------------------------------------------- gc: ttl overrides
    def set_branch_ttl(self, project: str, branch: str, ttl: int | None) -> None:
        """Override *branch*'s TTL: seconds, or None for "never idle"."""
        with self._write() as db:
            db.execute(
                "INSERT INTO branch_ttl (project, branch, ttl) VALUES (?, ?, ?) "
                "ON CONFLICT (project, branch) DO UPDATE SET ttl = excluded.ttl",
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
        return {r["branch"]: r["ttl"] for r in rows}

    # ------------------------------------------------- gc: activity samples
    def activity_samples(self, project: str) -> dict[str, int]:
        """database -> the activity counter last sampled on the server."""
        rows = self._db.execute(
            "SELECT database, counter FROM activity_samples WHERE project = ?",
            (project,),
        ).fetchall()
        return {r["database"]: r["counter"] for r in rows}

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
                "UPDATE branches SET last_used_at = ? "
                "WHERE project = ? AND branch = ? AND last_used_at < ?",
                [(t, project, b, t) for b, t in used.items()],
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
            out.setdefault(r["project"], {})[r["name"]] = r["value"]
        return out

    def bump_gc_counters(
        self, project: str, add: dict[str, float], put: dict[str, float]
    ) -> None:
        """Add *add* to counters and set *put* gauges, in one transaction."""
        with self._write() as db:
            for name, value in add.items():
                db.execute(
                    "INSERT INTO gc_counters (project, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (project, name) "
                    "DO UPDATE SET value = gc_counters.value + excluded.value",
                    (project, name, value),
                )
            for name, value in put.items():
                db.execute(
                    "INSERT INTO gc_counters (project, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (project, name) DO UPDATE SET value = excluded.value",
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
        return {r["tip"]: bool(r["contained"]) for r in rows}

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
                "INSERT INTO merge_checks (project, default_sha, tip, contained) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (project, default_sha, tip) "
                "DO UPDATE SET contained = excluded.contained",
                [(project, default_sha, t, int(c)) for t, c in answers.items()],
            )
