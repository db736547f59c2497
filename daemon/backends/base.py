"""What a backend is: how a branch database physically exists.

A backend creates, clones, drops and lists *only* what it can prove is its own (name
prefix plus a marker that the branch's own credentials cannot rewrite: a directory
layout for libsql files, an admin-owned database with a ``COMMENT`` for PostgreSQL, a
label for Docker). The marker also names the state store that made it (``store_id``,
given to the backend's constructor), so that garbage collection never takes another
store's database for an orphan. ``info`` is a small JSON-able dict the backend
returns from ``create``; the engine stores it and hands it back on every later call,
so that ``reset`` can keep a role's password and ``status`` can say which clone
strategy ran.

Adding a backend is adding a module that implements :class:`Backend` and registering
it in :data:`branchdb.daemon.backends.REGISTRY`; tests/test_backend_contract.py runs
the same suite on every backend (an in-process fake, :mod:`.fake`, included).
Capabilities are class attributes, never ``isinstance`` checks:

- ``exists_is_stat``: ``exists`` is a file-system ``stat()`` (no server round trip),
  so the checkout hook's fast path may call it (keep
  :data:`~branchdb.daemon.backends.STAT_EXISTS` in step);
- ``samples_activity``: ``activity()`` reports real connections (GC counts them as
  use, :mod:`branchdb.daemon.gc.activity`);
- ``copy_on_write``: clones share unchanged blocks with their snapshot;
- ``scales_to_zero``: idle branches are stopped and started again on use; the
  backend is then also a :class:`Sleeper` (the engine wakes a branch before it
  hands out its URL).

A backend that can keep clones of a snapshot made ahead of time (the postgres
backend's warm pool) also has a ``spare_pool`` attribute, a :class:`SparePool`; its
``create`` then takes a spare when one is ready. The others have none (the engine
reads it with ``getattr(backend, "spare_pool", None)``), so the protocol every
backend implements stays as it is. Likewise ``retire(database, info)``, which
``reset`` calls instead of ``drop`` when a backend has it: the name is free on
return, the old database may still be going away (the postgres backend lets its
server drop it, :mod:`.pg_retire`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from branchdb.daemon.core.dbsession import DbSession
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from branchdb.daemon.core.context import ProjectContext
    from branchdb.daemon.sanitize.rules import Rules

Info = dict[str, Any]
#: Progress lines for long operations (snapshot copies): called with one line each.
Progress = Callable[[str], None]


class Recovered(NamedTuple):
    """What :meth:`Backend.recover_temps` did: temps dropped, temps left (busy)."""

    dropped: list[str]
    busy: list[str]


class Backend(Protocol):
    name: ClassVar[str]
    dialect: ClassVar[str]  # "sqlite" | "postgres"
    exists_is_stat: ClassVar[bool]
    samples_activity: ClassVar[bool]
    copy_on_write: ClassVar[bool]
    scales_to_zero: ClassVar[bool]
    #: The state store this backend works for (None: not known, marks name none).
    store_id: str | None

    def database_name(self, branch: str) -> str:
        """The name *branch*'s database gets (pure; from :mod:`~..core.naming`)."""
        ...

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

    def exists(self, database: str) -> bool:
        """True if *database* exists and is provably this project's branch database
        (a foreign one of that name is not: :meth:`drop` refuses it)."""
        ...

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

    def activity(
        self, databases: list[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        """Each of this project's databases (or of *databases*) -> (a counter only
        client use moves — never autovacuum or other maintenance —, client sessions
        open now). Only if ``samples_activity``; else ``{}``."""
        ...

    # ---------------------------------------------------------------- recovery
    def drop_leftovers(self, database: str, branch: str, info: Info) -> Info:
        """Undo what an interrupted create of *database* left beside the database
        itself (temp copies). Returns the info :meth:`drop` needs to remove the rest
        (e.g. a login role a first create made before its database). Idempotent;
        the caller holds the branch's lock."""
        ...

    def recover_temps(self, ctx: ProjectContext) -> Recovered:
        """Drop this project's temp databases/files that no live create owns: each
        under the lock of the branch or snapshot it was for (taken without waiting;
        a busy one is left and reported)."""
        ...

    def snapshot_create(
        self,
        name: str,
        version: int,
        source: str,
        *,
        progress: Progress | None = None,
        rules: Rules | None = None,
        allow_unreviewed: bool = False,
    ) -> SnapshotRecord:
        """Copy *source* consistently (read-only) into a new sealed snapshot.

        With *rules* (:class:`branchdb.daemon.sanitize.rules.Rules`) the staging
        copy is sanitized and verified before it is sealed; the report goes to
        ``info["sanitize"]``. A failure publishes nothing and leaves no staging copy.
        """
        ...

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None: ...


class SparePool(Protocol):
    """Clones of snapshots made ahead of time (``backend.spare_pool``).

    A spare is invisible and unusable until ``create`` hands it out; it belongs to
    one snapshot version and goes with it (``snapshot_drop``); an interrupted
    build is removed by ``recover_temps``.
    """

    def count(self, snapshot: SnapshotRecord) -> int:
        """Spares of *snapshot* ready to be handed out now."""
        ...

    def warm(
        self, snapshot: SnapshotRecord, count: int, progress: Progress | None = None
    ) -> int:
        """Build spares until *count* are ready (never drops); how many were
        built. The caller holds the ``spares`` lock of the snapshot's name."""
        ...

    def prune(self, keep: list[SnapshotRecord]) -> list[str]:
        """Drop this store's spares of snapshot versions not in *keep*."""
        ...


class Sleeper(Protocol):
    """What a backend with ``scales_to_zero`` adds."""

    def state(self, database: str) -> str | None:
        """``"running"`` or ``"stopped"``; None if there is no such database."""
        ...

    def wake(self, database: str, info: Info) -> bool:
        """Start *database* if it is stopped; return once it takes connections.
        True if it had to be started. Idempotent."""
        ...

    def stop_idle(self, idle_for: float, now: float | None = None) -> list[str]:
        """Stop the running databases idle for *idle_for* seconds; their names."""
        ...
