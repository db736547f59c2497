"""A :class:`~branchdb.daemon.core.dbsession.DbSession` on a local SQLite/libsql file.

For ``file:`` URLs libsql-client is itself a wrapper over the stdlib ``sqlite3``
module, opening a new connection for every statement, behind an import of aiohttp that
costs ~270 ms (see ``python -X importtime -c "import libsql_client"``) — more than the
whole budget of a checkout hook. This session talks to the same file through one
stdlib connection. (A session over libsql-client for libsql *server* URLs —
``libsql://``, ``http(s)://``, ``ws(s)://`` — was written once and removed while
nothing used it: ``git log --diff-filter=D -- daemon/backends/libsql_session.py``.)
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from branchdb.daemon.core.dbsession import Row
from branchdb.daemon.core.errors import BackendError, DatabaseError


@contextmanager
def migration_lock(path: str) -> Iterator[None]:
    """Exclusive lock for migrating the SQLite file *path*, across processes.

    SQLite has no advisory locks; an ``flock`` on a side file serialises runners
    (the engine also holds its per-branch lock).
    """
    fd = os.open(path + ".migrate-lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class SqliteFileSession:
    """Owner session on one SQLite/libsql database file (``file:/abs/path``)."""

    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self._path = url.removeprefix("file:")
        try:
            # autocommit outside explicit transactions; wait for other writers
            # (the app under development may hold the file) instead of failing.
            self._db = sqlite3.connect(self._path, isolation_level=None, timeout=10)
            self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.Error as e:
            raise BackendError(f"cannot open {self._path}: {e}") from None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        try:
            cur = self._db.execute(sql, tuple(params) if params is not None else ())
            rows = cur.fetchall()
            cur.close()
        except sqlite3.Error as e:
            raise DatabaseError(str(e)) from None
        return rows

    @contextmanager
    def transaction(self) -> Iterator[SqliteFileSession]:
        # IMMEDIATE takes the write lock up front, so a migration never fails half
        # way with SQLITE_BUSY because a reader upgraded first.
        self.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        else:
            self.execute("COMMIT")

    def migration_lock(self) -> AbstractContextManager[None]:
        return migration_lock(self._path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteFileSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
