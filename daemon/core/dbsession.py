"""The narrow connection interface the migration runner talks to.

Backends hand the runner a :class:`DbSession`; formats only ever see an
:class:`Executor`. SQL written by branchdb itself (bookkeeping tables) uses ``?``
placeholders on every dialect; the PostgreSQL session translates them. Migration SQL
written by users is executed with ``params=None`` so it is never interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Row = tuple[Any, ...]


class Executor(Protocol):
    dialect: str  # "sqlite" | "postgres"

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        """Run one statement; return its rows (empty for statements without rows)."""
        ...


class DbSession(Executor, Protocol):
    """An open connection to one branch database, as its owner."""

    #: connection URL of this database (``DATABASE_URL`` for the ``command`` format)
    url: str

    def transaction(self) -> AbstractContextManager[Executor]:
        """Begin a transaction; commit on normal exit, roll back on exception."""
        ...

    def migration_lock(self) -> AbstractContextManager[None]:
        """Hold the per-database migration lock (PostgreSQL: session advisory lock)."""
        ...

    def close(self) -> None: ...
