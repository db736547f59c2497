"""A :class:`~branchdb.daemon.core.dbsession.DbSession` over libsql-client.

libsql-client is imported here, never on the fast path: only when a branch database is
actually opened (it pulls in aiohttp).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from branchdb.daemon.backends.sqlite_session import migration_lock
from branchdb.daemon.core.dbsession import Row
from branchdb.daemon.core.errors import BackendError, DatabaseError


class _TxExecutor:
    dialect = "sqlite"

    def __init__(self, tx: Any) -> None:
        self._tx = tx

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        return _run(self._tx, sql, params)


def _run(target: Any, sql: str, params: Sequence[Any] | None) -> list[Row]:
    import libsql_client

    try:
        rs = target.execute(sql, list(params) if params is not None else None)
    except libsql_client.LibsqlError as e:
        raise DatabaseError(_clean(str(e))) from None
    return [tuple(r) for r in rs.rows]


def _clean(message: str) -> str:
    # libsql-client prefixes "SQLITE_ERROR: "; keep the database's own words.
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("SQLITE") else message


class LibsqlSession:
    """Owner session on one libsql/SQLite database file."""

    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        import libsql_client

        self.url = url
        self._path = url.removeprefix("file:")
        try:
            self._client = libsql_client.create_client_sync(url)
        except libsql_client.LibsqlError as e:
            raise BackendError(f"cannot open {self._path}: {_clean(str(e))}") from None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        return _run(self._client, sql, params)

    @contextmanager
    def transaction(self) -> Iterator[_TxExecutor]:
        import libsql_client

        try:
            tx = self._client.transaction()
        except libsql_client.LibsqlError as e:
            raise DatabaseError(_clean(str(e))) from None
        try:
            yield _TxExecutor(tx)
        except BaseException:
            tx.rollback()
            raise
        else:
            try:
                tx.commit()
            except libsql_client.LibsqlError as e:
                tx.close()
                raise DatabaseError(_clean(str(e))) from None

    def migration_lock(self) -> AbstractContextManager[None]:
        return migration_lock(self._path)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LibsqlSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
