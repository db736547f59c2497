"""What the PostgreSQL build needs from the back-end, handed in rather than imported.

:func:`stream.build` opens connections, dumps and restores the source's schema and
pipes rows between two databases through a :class:`PgClient` its caller gives it;
the PostgreSQL back-end implements one over its own connection and ``pg_dump`` /
``pg_restore`` / ``psql`` helpers (``branchdb.daemon.backends.pg_copy.Client``). So
dependencies point one way: the back-end calls sanitize, sanitize never imports a
back-end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class CopyJob:
    """Rows piped from one database into another, never through Python.

    On *source*: the statements *before* (e.g. joining an exported snapshot), then
    *out*, a ``COPY … TO STDOUT``. On *target*, in one transaction: *setup*, then
    *into*, a ``COPY … FROM STDIN`` (so that a ``TRUNCATE`` or ``CREATE`` in *setup*
    allows ``COPY … FREEZE``). *what* names the copy in an error.
    """

    source: str
    before: Sequence[str]
    out: str
    target: str
    setup: Sequence[str]
    into: str
    what: str


class PgClient(Protocol):
    """The client side of a PostgreSQL build: connections and the client programs."""

    def connect(self, url: str, *, what: str) -> psycopg.Connection[Any]:
        """An autocommit connection to *url*; BackendError naming *what* if none."""
        ...

    def describe_error(self, e: Exception) -> str:
        """The server's own words for a failed statement, never a password."""
        ...

    def dump_schema(self, source: str, path: str, *, snapshot: str) -> None:
        """``pg_dump`` of *source* into the file *path*, reading the exported
        *snapshot*: the schema, sequence values and large objects, no table rows."""
        ...

    def restore(
        self,
        path: str,
        target: str,
        sections: tuple[str, ...],
        say: Callable[[str], Any],
    ) -> None:
        """Restore *sections* (``pre-data``, ``data``, ``post-data``) of the dump at
        *path* into the database at *target*, owned by the snapshot's role."""
        ...

    def copy(self, jobs: Sequence[CopyJob]) -> list[int]:
        """Run *jobs* concurrently; the rows each wrote. On any failure every job is
        stopped and BackendError names the side that failed."""
        ...
