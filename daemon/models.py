"""Plain data passed between the engine and its callees. No behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Migration:
    """One migration as a format read it from a directory or a git tree.

    ``key`` is the identity the format's own bookkeeping uses (drizzle: the journal's
    ``when``; golang-migrate/flyway/dbmate: the version; plain sql/prisma: the name).
    ``order`` sorts migrations the way the team's tool applies them.

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
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Applied:
    """One entry of the format's own ledger in a branch database.

    ``checksum`` is None when the tool does not record one (golang-migrate, dbmate);
    the engine then compares against the checksum it recorded itself in the store.
    """

    key: str
    checksum: str | None = None
    label: str = ""  # how to name it when the branch has no file for it


@dataclass
class MigrationPlan:
    """What ``migrate`` would do: pending migrations in order, and known applied."""

    pending: list[Migration]
    applied: list[Applied]


@dataclass
class BranchRecord:
    """A branch database as the store knows it."""

    project: str
    branch: str
    database: str  # backend-specific physical name (file stem or database name)
    backend: str
    source: str  # "fresh" or "snapshot:NAME@N"
    status: str  # "creating" | "ready" | "failed"
    created_at: float
    last_used_at: float
    url: str = ""
    fingerprint: str = ""  # hash of the migrations last applied successfully
    applied: dict[str, str] = field(default_factory=dict)  # key -> checksum
    info: dict[str, Any] = field(default_factory=dict)  # backend extras (strategy…)


@dataclass
class SnapshotRecord:
    project: str
    name: str
    version: int
    backend: str
    location: str  # file path or database name
    created_at: float
    source: str  # redacted description of where it came from
    size_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
