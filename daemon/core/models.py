"""Plain data passed between the engine and its callees. No behaviour, no I/O.

These are NamedTuples and plain classes rather than dataclasses on purpose: the
checkout hook imports this module, and ``import dataclasses`` (it pulls in ``inspect``)
plus generating each class costs ~20 ms of the hook's 120 ms budget.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Migration(NamedTuple):
    """One migration as a format read it from a directory or a git tree.

    ``key`` is the identity the format's own bookkeeping uses (drizzle: the journal's
    ``when``; golang-migrate/flyway/dbmate: the version; plain sql/prisma: the name).
    ``order`` sorts migrations the way the team's tool applies them.

    ``meta["also_matches"]``, when a format sets it, lists other checksums its tool
    accepts for the same file (prisma: the file with its line endings converted).

    ``statements`` is filled only by formats whose files carry their own breakpoints
    (drizzle's ``--> statement-breakpoint``); each entry is run as it is. When it is
    empty the runner splits ``sql`` itself with
    :func:`branchdb.daemon.migrations.sqlsplit.split` for the database's dialect,
    because a format does not know the dialect when it loads files.
    """

    key: str
    name: str  # path relative to the migrations directory, shown to users
    sql: str
    checksum: str
    statements: tuple[str, ...]
    order: tuple[Any, ...]
    transactional: bool = True
    meta: dict[str, Any] = {}  # noqa: RUF012 - shared default, never mutated


class Applied(NamedTuple):
    """One entry of the format's own ledger in a branch database.

    ``checksum`` is None when the tool does not record one (golang-migrate, dbmate);
    the engine then compares against the checksum it recorded itself in the store.
    """

    key: str
    checksum: str | None = None
    label: str = ""  # how to name it when the branch has no file for it


class MigrationPlan:
    """What ``migrate`` would do: pending migrations in order, and known applied."""

    def __init__(self, pending: list[Migration], applied: list[Applied]) -> None:
        self.pending = pending
        self.applied = applied


class BranchRecord:
    """A branch database as the store knows it (mutable: the engine updates it)."""

    def __init__(
        self,
        project: str,
        branch: str,
        database: str,  # backend-specific physical name (file stem or db name)
        backend: str,
        source: str,  # "fresh" or "snapshot:NAME@N"
        status: str,  # "creating" | "ready"
        created_at: float,
        last_used_at: float,
        url: str = "",
        fingerprint: str = "",  # hash of the migrations last applied successfully
        applied: dict[str, str] | None = None,  # key -> checksum
        info: dict[str, Any] | None = None,  # backend extras (role, strategy…)
        # the default branch's head(s) when the database was made (the merge rule,
        # see vcs.repo.BranchFacts); empty for records made before it was recorded
        default_heads: list[str] | None = None,
    ) -> None:
        self.project = project
        self.branch = branch
        self.database = database
        self.backend = backend
        self.source = source
        self.status = status
        self.created_at = created_at
        self.last_used_at = last_used_at
        self.url = url
        self.fingerprint = fingerprint
        self.applied: dict[str, str] = applied if applied is not None else {}
        self.info: dict[str, Any] = info if info is not None else {}
        self.default_heads: list[str] = default_heads or []

    def __repr__(self) -> str:
        return f"BranchRecord({self.project!r}, {self.branch!r}, {self.database!r})"


class SnapshotRecord:
    """One sealed version of a snapshot."""

    def __init__(
        self,
        project: str,
        name: str,
        version: int,
        backend: str,
        location: str,  # file path or database name
        created_at: float,
        source: str,  # redacted description of where it came from
        size_bytes: int = 0,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.project = project
        self.name = name
        self.version = version
        self.backend = backend
        self.location = location
        self.created_at = created_at
        self.source = source
        self.size_bytes = size_bytes
        self.info: dict[str, Any] = info if info is not None else {}

    def __repr__(self) -> str:
        return f"SnapshotRecord({self.project!r}, {self.ref!r})"

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
