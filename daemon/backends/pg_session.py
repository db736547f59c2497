"""A :class:`~branchdb.daemon.core.dbsession.DbSession` over psycopg 3.

psycopg is imported here, never on the fast path (it costs ~120 ms): only when a branch
database is actually opened. The connection is in autocommit mode outside
:meth:`PgSession.transaction`, so statements that cannot run in a transaction block
(``CREATE INDEX CONCURRENTLY``, ``VACUUM``) run as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.dbsession import Row
from branchdb.daemon.core.errors import BackendError, DatabaseError, Refused, redact

if TYPE_CHECKING:
    import psycopg


def translate_placeholders(sql: str) -> str:
    """``?`` → ``%s`` and ``%`` → ``%%``, outside quoted strings and identifiers."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def describe_error(e: Exception) -> str:
    """The server's own words (primary message, detail, hint), never a password."""
    diag = getattr(e, "diag", None)
    fields = ("message_primary", "message_detail", "message_hint")
    parts = [str(getattr(diag, f, None) or "") for f in fields]
    if not parts[0]:
        return redact(str(e).strip())
    return redact(". ".join(p.rstrip(".") for p in parts if p))


def lock_key(database: str) -> int:
    """A stable signed 64-bit advisory-lock key for *database*'s migrations."""
    digest = hashlib.sha256(b"branchdb-migrate\0" + database.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect(url: str, *, what: str = "database") -> psycopg.Connection[Any]:
    """Open an autocommit connection; failures become one clear BackendError."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name="branchdb"
        )
    except psycopg.Error as e:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            params = {}
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        who = params.get("user", "?")
        db = params.get("dbname", "?")
        raise BackendError(
            f"cannot connect to PostgreSQL server {where} as role {who} "
            f"({what} {db}): {connection_reason(e)}"
        ) from None


def connection_reason(e: Exception) -> str:
    text = redact(str(e))
    if "password authentication failed" in text:
        return "wrong password for this role (or the role does not exist)"
    if "Connection refused" in text:
        return "connection refused: is the server running and listening on TCP?"
    if "timeout expired" in text:
        return "no answer within 10 s: check the host, port and firewall"
    # libpq prefixes every line with 'connection to server at "...", port N failed:'.
    lines = [ln.split("failed: ", 1)[-1].strip() for ln in text.splitlines()]
    return "; ".join(ln for ln in lines if ln) or "unknown error"


class _TxExecutor:
    dialect = "postgres"

    def __init__(self, session: PgSession) -> None:
        self._session = session

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        return self._session.execute(sql, params)


class PgSession:
    """Owner session on one PostgreSQL branch database."""

    dialect = "postgres"

    def __init__(self, url: str, *, lock_timeout: float = 600.0) -> None:
        self.url = url
        self.lock_timeout = lock_timeout
        self._conn = connect(url)
        self.database: str = self._conn.info.dbname

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        """Run one statement (or, with ``params=None``, a script) and return rows.

        With ``params=None`` the SQL is sent as written: no placeholder is
        interpreted, so migration files containing ``?`` or ``%`` run unchanged.
        """
        import psycopg

        try:
            with self._conn.cursor() as cur:
                if params is None:
                    cur.execute(sql.encode())  # bytes: never treated as a template
                else:
                    cur.execute(translate_placeholders(sql).encode(), list(params))
                rows: list[Row] = []
                # A script's result sets: keep the last one that returned rows.
                while True:
                    if cur.description is not None:
                        rows = [tuple(r) for r in cur.fetchall()]
                    if not cur.nextset():
                        break
                return rows
        except psycopg.Error as e:
            raise DatabaseError(describe_error(e)) from None

    @contextmanager
    def transaction(self) -> Iterator[_TxExecutor]:
        """BEGIN … COMMIT; any exception rolls back and propagates."""
        import psycopg

        try:
            tx = self._conn.transaction()
            tx.__enter__()
        except psycopg.Error as e:
            raise DatabaseError(describe_error(e)) from None
        try:
            yield _TxExecutor(self)
        except BaseException as exc:
            # A broken connection cannot roll back; the original error says why.
            with contextlib.suppress(psycopg.Error):
                tx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            try:
                tx.__exit__(None, None, None)
            except psycopg.Error as e:
                raise DatabaseError(describe_error(e)) from None

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Hold a session advisory lock keyed on this database's name.

        Waits up to ``lock_timeout`` seconds, then raises Refused. The lock is
        released on exit, and by the server if the connection dies.
        """
        key = lock_key(self.database)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while not self.execute("SELECT pg_try_advisory_lock(?)", [key])[0][0]:
            if time.monotonic() >= deadline:
                raise Refused(
                    f"another migration of database {self.database} is running "
                    f"(advisory lock {key} held for over {self.lock_timeout:g} s); "
                    "retry when it has finished"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        try:
            yield
        finally:
            if not self._conn.closed:
                # If the session is unusable the server releases the lock on close.
                with contextlib.suppress(DatabaseError):
                    self.execute("SELECT pg_advisory_unlock(?)", [key])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
