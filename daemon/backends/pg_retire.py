"""``reset`` without waiting for ``DROP DATABASE``: the old database is moved aside
and dropped by the server while the new one is built.

Dropping a 1 GiB database takes 0.3-0.6 s here (its files unlinked, a forced
checkpoint), more than handing out a spare (:mod:`.pg_pool`). ``reset`` only needs
the name back, so the old database is *retired*: closed to new connections, its
sessions ended (as ``DROP … WITH (FORCE)`` would), renamed to a temp name of its own
(:func:`trash_name`) and marked as that branch's temp in the same transaction, then
``DROP DATABASE`` is sent on a connection of its own that is closed without waiting
for the answer: PostgreSQL finishes a statement whose client has gone.

If that drop never completes (the server restarted), the trash is a marked temp of
the branch: crash recovery drops it under the branch's lock, like any temp.
``down`` and garbage collection never retire: they wait for the drop (GC paces
itself by how long drops take).
"""

from __future__ import annotations

from branchdb.daemon.backends.pg_admin import Admin, tmp_prefix
from branchdb.daemon.backends.pg_session import connect


def trash_name(database: str, suffix: str) -> str:
    """A temp name for retired *database*: never one of the build temps that the
    next create of *database* drops (and waits for) first."""
    return tmp_prefix(f"retired\0{database}") + suffix


def retire(admin: Admin, database: str) -> str:
    """Move *database* (branchdb's, checked by the caller) out of the way; its
    trash name. Raises BackendError, having changed at most its
    ``ALLOW_CONNECTIONS``, if it cannot be renamed."""
    import secrets

    from psycopg import sql

    ident = sql.Identifier(database)
    admin.run(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident),
        f"close {database} to new connections",
    )
    admin.run(  # as DROP … WITH (FORCE) does; refused without pg_signal_backend
        sql.SQL(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = {} AND pid <> pg_backend_pid()"
        ).format(sql.Literal(database)),
        f"end the sessions on {database}",
    )
    trash = trash_name(database, secrets.token_hex(4))
    with admin.conn.transaction():
        admin.rename(database, trash)  # waits (5 s at most) for ended sessions
        admin.comment_on(trash, admin.mark("tmp", final=database, retired=True))
    return trash


def drop_detached(admin_url: str, trash: str) -> None:
    """Send ``DROP DATABASE trash`` and hang up without waiting for it."""
    from psycopg import sql

    conn = connect(admin_url, what="admin connection to database")
    try:
        stmt = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(trash)
        )
        conn.pgconn.send_query(stmt.as_bytes(conn))
        while conn.pgconn.flush():  # the whole statement is on the wire
            pass
    finally:
        conn.close()
