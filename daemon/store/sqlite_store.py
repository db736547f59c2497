"""The embedded state store: one SQLite file under the data directory.

Uses only the stdlib ``sqlite3`` (14 ms to import) so the hook path stays fast. The
schema (:mod:`.schema`) is versioned with ``PRAGMA user_version``; opening upgrades an
older file in place and refuses a newer one. Writers take SQLite's write lock with
``BEGIN IMMEDIATE``; cross-process serialisation of a branch's lifecycle is the
engine's per-branch file lock, so :meth:`lock` and :meth:`leader` exclude nothing
more. The queries live in :class:`~.sql_store.SqlStore`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from branchdb.daemon.config import locate
from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.store import schema
from branchdb.daemon.store.sql_store import SqlStore

SCHEMA_VERSION = schema.SCHEMA_VERSION


def too_new(where: str, version: int) -> ConfigError:
    return ConfigError(
        f"state store {where} has schema version {version}, newer than this "
        f"branchdb understands ({SCHEMA_VERSION}); upgrade branchdb (an older "
        "branchdb must not write to it)"
    )


class SqliteStore(SqlStore):
    """Branch and snapshot records in a SQLite file (0600: URLs hold secrets).

    One connection, usable only from the thread that opened it.
    """

    shared = False

    def __init__(self, path: Path) -> None:
        self.path = path
        locate.make_data_dir(str(path.parent))
        if not path.exists():
            path.touch(mode=0o600)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        # WAL + NORMAL: commits do not fsync (the hook path writes last-used on every
        # checkout); a power cut may lose the last timestamps, never corrupt the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._upgrade()
        except BaseException:
            self._db.close()
            raise

    def _upgrade(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise too_new(str(self.path), version)
        if version == SCHEMA_VERSION:
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._write():
            # Re-read under the write lock: another process may have upgraded.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise too_new(str(self.path), version)
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in schema.statements(v, "sqlite"):
                    self._db.execute(stmt)
                for stmt, args in schema.seeds(v):
                    self._db.execute(stmt, args)
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

    def lock(
        self,
        name: str,
        *,
        label: str = "",
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> nullcontext[None]:
        """No-op: a SQLite store is local; the engine's file lock excludes."""
        return nullcontext()

    def leader(self, name: str) -> nullcontext[bool]:
        """Always the leader: the SQLite store has one host."""
        return nullcontext(True)
