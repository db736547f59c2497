"""The shared state store: a schema of a PostgreSQL database the operator provides.

``[state] url = "postgresql://..."`` (or ``$BRANCHDB_STATE_URL``) selects it; daemon
replicas pointing at the same database share branches, tokens, deliveries, GC marks and
the audit log. Everything lives in one schema (``branchdb`` unless ``[state] schema``
says otherwise): the connection's ``search_path`` is that schema alone, so the shared
queries of :class:`~.sql_store.SqlStore` never name, and never touch, another object.
A schema that exists but holds other tables and no ``schema_version`` is refused.

Versioning: ``schema_version`` holds one row per applied step of :mod:`.schema`. Opening
applies the missing steps in one transaction under a transaction-scoped advisory lock,
so two replicas starting at once upgrade once; a store newer than this code is refused.

Cross-replica exclusion uses session advisory locks on a dedicated connection per
holder (released sessions are kept for reuse), keyed by a 64-bit hash of (schema,
name): :meth:`lock` waits (the engine's per-branch lock), :meth:`leader` only tries
(one garbage collector at a time). A holder that dies loses its session and with it
the lock.

Thread-safe: one connection (autocommit) shared by all threads behind a lock; each
write is one transaction. A broken connection is replaced: a read that finds it dead
is retried once; a write fails (its transaction did not commit) and the next call
reconnects.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from branchdb.daemon.core.errors import BackendError, ConfigError, Refused, redact
from branchdb.daemon.store import schema
from branchdb.daemon.store.meta import DEFAULT_SCHEMA as DEFAULT_SCHEMA
from branchdb.daemon.store.sql_store import SqlStore

SCHEMA_VERSION = schema.SCHEMA_VERSION
#: Lock sessions kept open for reuse (a new connection costs ~10 ms).
_IDLE_SESSIONS = 8


@lru_cache(maxsize=512)
def _pg(query: str) -> str:
    """``?`` placeholders → psycopg's ``%s`` (a literal ``%`` is doubled first)."""
    return query.replace("%", "%%").replace("?", "%s")


class _Result:
    """A fetched cursor: rows are read while the connection lock is held."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.rowcount = cur.rowcount
        self._rows: list[Any] = cur.fetchall() if cur.description else []

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


class _Db:
    """``execute``/``executemany`` with ``?`` placeholders over one connection."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def execute(self, query: str, args: Any = ()) -> _Result:
        with self._store._mutex:
            conn = self._store._connection()
            idle = conn.info.transaction_status == TransactionStatus.IDLE
            try:
                return _Result(conn.execute(_pg(query), args or None))
            except psycopg.OperationalError:
                # A statement outside a transaction on a connection that died
                # (server restart, idle timeout) is retried once on a new one.
                if not (idle and conn.broken):
                    raise
            return _Result(self._store._connection().execute(_pg(query), args or None))

    def executemany(self, query: str, args: Any) -> None:
        with self._store._mutex, self._store._connection().cursor() as cur:
            cur.executemany(_pg(query), args)


def advisory_key(schema_name: str, name: str) -> int:
    """A signed 64-bit advisory-lock key for *name* in the store *schema_name*."""
    digest = hashlib.sha256(f"branchdb\0{schema_name}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresStore(SqlStore):
    """The state store in schema *schema_name* of the database at *url*.

    Raises BackendError if the server cannot be reached, ConfigError if the schema
    is foreign or newer than this branchdb.
    """

    shared = True

    def __init__(
        self, url: str, schema_name: str = DEFAULT_SCHEMA, connect_timeout: int = 10
    ) -> None:
        self.url = url
        self.schema = schema_name
        self.connect_timeout = connect_timeout
        self._mutex = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._idle: list[psycopg.Connection[Any]] = []  # lock sessions, reusable
        self._db = _Db(self)
        self._connection()
        try:
            self._upgrade()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ connections
    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=self.connect_timeout,
                application_name="branchdb-state",
            )
        except psycopg.Error as e:
            raise BackendError(
                f"cannot reach the state store {redact(self.url)}: "
                f"{redact(str(e)).strip()}"
            ) from None

    def _connection(self) -> psycopg.Connection[Any]:
        with self._mutex:
            if self._conn is None or self._conn.closed or self._conn.broken:
                conn = self._connect()
                conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))
                )
                self._conn = conn
            return self._conn

    @contextmanager
    def _write(self) -> Iterator[_Db]:
        with self._mutex, self._connection().transaction():
            yield self._db

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            for conn in self._idle:
                conn.close()
            self._idle.clear()

    @contextmanager
    def _session(self, key: int) -> Iterator[psycopg.Connection[Any]]:
        """A dedicated connection for advisory lock *key*, reused when released.

        On the way out the lock is released explicitly; a session that fails to do
        so is closed instead (closing ends the session, and its locks with it).
        """
        with self._mutex:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
        try:
            yield conn
            conn.execute("SELECT pg_advisory_unlock_all()")
            conn.execute("RESET lock_timeout")
        except BaseException:
            conn.close()
            raise
        with self._mutex:
            if len(self._idle) < _IDLE_SESSIONS and self._conn is not None:
                self._idle.append(conn)
                return
        conn.close()

    # ------------------------------------------------------------- versioning
    def version(self) -> int | None:
        """The store's schema version; None before the first upgrade."""
        row = self._db.execute(
            "SELECT 1 AS ok FROM pg_tables "
            "WHERE schemaname = ? AND tablename = 'schema_version'",
            (self.schema,),
        ).fetchone()
        if row is None:
            return None
        row = self._db.execute(
            "SELECT max(version) AS v FROM schema_version"
        ).fetchone()
        return int(row["v"] or 0)

    def _too_new(self, version: int) -> ConfigError:
        return ConfigError(
            f"state store schema {self.schema!r} at {redact(self.url)} has version "
            f"{version}, newer than this branchdb understands ({SCHEMA_VERSION}); "
            "upgrade branchdb (an older branchdb must not write to it)"
        )

    def _upgrade(self) -> None:
        version = self.version()
        if version is not None and version > SCHEMA_VERSION:
            raise self._too_new(version)
        if version == SCHEMA_VERSION:
            return
        with self._write() as db:
            # Replicas starting together queue here; the later ones re-read the
            # version below and find nothing left to do.
            db.execute(
                "SELECT pg_advisory_xact_lock(?)",
                (advisory_key(self.schema, "schema"),),
            )
            self._claim_schema(db)
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, upgraded_at DOUBLE PRECISION NOT NULL)"
            )
            row = db.execute("SELECT max(version) AS v FROM schema_version").fetchone()
            version = int(row["v"] or 0)
            if version > SCHEMA_VERSION:
                raise self._too_new(version)
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in schema.statements(v, "postgres"):
                    db.execute(stmt)
                for stmt, args in schema.seeds(v):
                    db.execute(stmt, args)
                db.execute(
                    "INSERT INTO schema_version (version, upgraded_at) VALUES (?, ?)",
                    (v, time.time()),
                )

    def _claim_schema(self, db: _Db) -> None:
        """Create our schema, or check an existing one is ours (or empty)."""
        row = db.execute(
            "SELECT count(c.oid) AS n, "
            "count(c.oid) FILTER (WHERE c.relname = 'schema_version') AS ours "
            "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
            "WHERE n.nspname = ? GROUP BY n.oid",
            (self.schema,),
        ).fetchone()
        if row is None:
            with self._mutex:
                self._connection().execute(
                    sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema))
                )
        elif row["n"] and not row["ours"]:
            raise ConfigError(
                f"schema {self.schema!r} at {redact(self.url)} already holds objects "
                "that are not branchdb's; choose another with [state] schema"
            )

    # ------------------------------------------------------------------ locks
    @contextmanager
    def lock(
        self,
        name: str,
        *,
        label: str = "",
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Session advisory lock on a dedicated connection (see the module doc)."""
        key = advisory_key(self.schema, name)
        with self._session(key) as conn:
            got = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,))
            if not (got.fetchone() or {}).get("ok"):
                if on_wait is not None:
                    on_wait()
                ms = 0 if timeout is None else max(1, int(timeout * 1000))
                conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(ms)))
                try:
                    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                except psycopg.errors.LockNotAvailable:
                    raise Refused(
                        f"another branchdb replica is still working on "
                        f"{label or name!r}; try again in a moment"
                    ) from None
            yield

    @contextmanager
    def leader(self, name: str) -> Iterator[bool]:
        """Try once for the advisory lock *name*; held until the block ends."""
        key = advisory_key(self.schema, name)
        with self._session(key) as conn:
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS ok", (key,)
            ).fetchone()
            yield bool(got and got["ok"])
