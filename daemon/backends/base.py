"""What a backend is: how a branch database physically exists.

A backend creates, clones, drops and lists *only* what it marked as its own (name
prefix plus a marker: a directory layout for libsql files, ``COMMENT ON DATABASE`` for
PostgreSQL, a label for Docker). ``info`` is a small JSON-able dict the backend returns
from ``create``; the engine stores it and hands it back on every later call, so that
``reset`` can keep a role's password and ``status`` can say which clone strategy ran.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from branchdb.daemon.dbsession import DbSession
from branchdb.daemon.models import SnapshotRecord

Info = dict[str, Any]


class Backend(Protocol):
    name: ClassVar[str]
    dialect: ClassVar[str]  # "sqlite" | "postgres"

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
        """Drop *database* if it exists and carries branchdb's marker (idempotent)."""
        ...

    def connect(self, database: str, info: Info) -> DbSession:
        """Open a session on *database* as its owner, for migrations."""
        ...

    def list_owned(self) -> list[str]:
        """Names of every database carrying branchdb's marker for this project."""
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
