"""What a backend is: how a branch database physically exists.

A backend creates, clones, drops and lists *only* what it can prove is its own (name
prefix plus a marker that the branch's own credentials cannot rewrite: a directory
layout for libsql files, an admin-owned database with a ``COMMENT`` for PostgreSQL, a
label for Docker). The marker also names the state store that made it
(``store_id``, given to the backend's constructor), so that garbage collection never
takes another store's database for an orphan. ``info`` is a small JSON-able dict the
backend returns from ``create``; the engine stores it and hands it back on every later
call, so that ``reset`` can keep a role's password and ``status`` can say which clone
strategy ran.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from branchdb.daemon.dbsession import DbSession
from branchdb.daemon.models import SnapshotRecord

Info = dict[str, Any]


class Backend(Protocol):
    name: ClassVar[str]
    dialect: ClassVar[str]  # "sqlite" | "postgres"
    #: The state store this backend works for (None: not known, marks name none).
    store_id: str | None

    def create(
        self,
        database: str,
        *,
        branch: str,
        snapshot: SnapshotRecord | None,
        info: Info,
    ) -> Info:
        """Create *database* fresh (``snapshot is None``) or as a clone of *snapshot*.

        *info* is the previous info of this database when it is being re-created by
        ``reset`` (keep credentials), else ``{}``. Leaves nothing behind on failure and
        never exposes a half-made database under its final name. Raises Refused if
        *database* already exists. Returns the info to store (must include ``url``).
        """
        ...

    def exists(self, database: str) -> bool: ...

    def drop(self, database: str, info: Info) -> None:
        """Drop *database*; returns only once it no longer exists (idempotent).

        Raises Refused, dropping nothing, if *database* exists but is not provably
        branchdb's, or was made by another state store than ``store_id``.
        """
        ...

    def connect(self, database: str, info: Info) -> DbSession:
        """Open a session on *database* with the branch's own credentials, for
        migrations."""
        ...

    def list_owned(self, store: str | None = None) -> list[str]:
        """Names of every database of this project that is provably branchdb's;
        with *store*, only those whose marker names that state store (what has no
        store in its marker, e.g. made before stores had ids, is never listed then).
        """
        ...

    def size_bytes(self, database: str) -> int: ...

    def snapshot_create(
        self,
        name: str,
        version: int,
        source: str,
        *,
        progress: Any = None,
        rules: Any = None,
        allow_unreviewed: bool = False,
    ) -> SnapshotRecord:
        """Copy *source* consistently (read-only) into a new sealed snapshot.

        With *rules* (:class:`branchdb.daemon.sanitize.rules.Rules`) the staging
        copy is sanitized and verified before it is sealed; the report goes to
        ``info["sanitize"]``. A failure publishes nothing and leaves no staging copy.
        """
        ...

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None: ...
