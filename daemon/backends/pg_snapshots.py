"""Snapshots of the postgres backend: a live database copied into a sealed template
(:meth:`PostgresBackend.snapshot_create`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import pg_copy
from branchdb.daemon.backends.pg_admin import content_role
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import Refused, redact
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from branchdb.daemon.backends.base import Progress
    from branchdb.daemon.backends.postgres_backend import PostgresBackend
    from branchdb.daemon.sanitize.rules import Rules


def create(
    backend: PostgresBackend,
    name: str,
    version: int,
    source: str,
    *,
    progress: Progress | None,
    rules: Rules | None,
    allow_unreviewed: bool,
) -> SnapshotRecord:
    """Copy the live database at *source* into a sealed template database.

    ``pg_dump`` reads one consistent snapshot and writes nothing to the
    source. The copy is built under a temp name, vacuumed (frozen, analysed),
    owned by the admin, closed to PUBLIC, sealed (a template refusing
    connections) and only then renamed to its final name.
    """
    from psycopg import sql

    final = naming.pg_snapshot_database(backend.project, name, version)
    owner = content_role(final)
    extra: dict[str, Any] = {}
    with backend._admin() as admin:
        if admin.db_comment(final) is not None:
            raise Refused(
                f"snapshot database {final} already exists on {backend.server}"
            )
        admin.drop_leftovers(final)
        admin.ensure_role(owner, None, snapshot=name, version=version)
        tmp = admin.new_tmp(
            final,
            "CREATE DATABASE {tmp} OWNER {} TEMPLATE template0 ENCODING {} "
            "LC_COLLATE {} LC_CTYPE {}",
            sql.Identifier(owner),
            *(sql.Literal(v) for v in pg_copy.source_encoding(source)),
        )
        try:
            bindir = pg_copy.find_bin(admin.conn.info.server_version // 10000)
            if rules is None:
                pg_copy.copy(source, backend._db_url(tmp), owner, bindir, progress)
            else:
                # Imported here only: importing sanitize takes ~30 ms, which
                # nothing but a sanitized snapshot should pay.
                from branchdb.daemon.sanitize.pg import stream
                from branchdb.daemon.sanitize.report import line_progress

                report = stream.build(
                    pg_copy.Client(bindir, owner), source, backend.admin_url, tmp,
                    rules, allow_unreviewed=allow_unreviewed,
                    progress=line_progress(progress),
                    say=progress if callable(progress) else (lambda _m: None),
                )  # fmt: skip
                extra["sanitize"] = report.info()
            with backend._admin(tmp) as inner:
                inner.run(
                    sql.SQL("SET ROLE {}").format(sql.Identifier(owner)),
                    f"switch to role {owner}",
                )
                # Frozen, analysed pages: clones never rewrite hint bits.
                inner.run("VACUUM (FREEZE, ANALYZE)", f"vacuum {final}")
            ident = sql.Identifier(tmp)
            admin.run(
                sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(ident),
                f"take ownership of {final}",
            )
            admin.run(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident),
                f"revoke access to {final}",
            )
            admin.comment_on(
                tmp, admin.mark("snapshot", snapshot=name, version=version)
            )
            # Sealed before it gets its final name: a database under that name
            # is always a complete template refusing connections.
            admin.run(
                sql.SQL(
                    "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"
                ).format(ident),
                f"seal {final}",
            )
            admin.rename(tmp, final)
        except BaseException:
            admin.drop_database(tmp)
            raise
        size = admin.size(final)
    return SnapshotRecord(
        project=backend.project,
        name=name,
        version=version,
        backend=backend.name,
        location=final,
        created_at=time.time(),
        source=redact(source),
        size_bytes=size,
        info={"content_role": owner, **extra},
    )
