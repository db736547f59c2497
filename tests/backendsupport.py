"""Sessions exactly as production gets them: from a backend's ``create`` + ``connect``.

The format and runner tests run their migrations on these, so they exercise the
session class each backend really hands out (and, on PostgreSQL, the branch's own
login role rather than the admin).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from branchdb.daemon.backends.libsql_backend import LibsqlBackend
from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core.dbsession import DbSession


def libsql_backend(data_dir: Path, project: str = "matrix") -> LibsqlBackend:
    """The libsql backend keeping its files under *data_dir*."""
    raw = {"project": {"name": project}, "database": {"data_dir": str(data_dir)}}
    return LibsqlBackend(from_mapping(raw, data_dir, None))


def postgres_backend(admin_url: str, project: str = "matrix") -> PostgresBackend:
    """The postgres backend on the server at *admin_url* (whatever BRANCHDB_PG_URL
    says)."""
    raw = {"project": {"name": project}, "database": {"backend": "postgres"}}
    config = from_mapping(raw, Path("/tmp"), None)
    return PostgresBackend(
        config._replace(database=config.database._replace(server=admin_url))
    )


@contextmanager
def branch_session(
    backend: LibsqlBackend | PostgresBackend, branch: str | None = None
) -> Iterator[DbSession]:
    """A fresh branch database on *backend* and the session ``connect`` gives for
    it; the database is dropped afterwards."""
    branch = branch or f"matrix-{uuid.uuid4().hex[:8]}"
    database = backend.database_name(branch)
    info = backend.create(database, branch=branch, snapshot=None, info={})
    try:
        session = backend.connect(database, info)
        try:
            yield session
        finally:
            session.close()
    finally:
        backend.drop(database, info)
