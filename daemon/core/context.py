"""One project's parts and what every layer does alike: lock, audit, delete.

:class:`ProjectContext` holds what the engine, garbage collection, the quota and crash
recovery all need — the configuration, the state store, the backend, the clock — and
the three things they must do the same way:

- **lock** a branch (an ``flock`` on this host, then the state store's lock for
  replicas sharing it), see :meth:`ProjectContext.lock`;
- **audit** a change, attributed to the actor of :mod:`.audit`;
- **delete** a branch database, see :meth:`ProjectContext.drop_branch`: every path
  that deletes one (``down``, garbage collection, quota eviction, recovery) goes
  through it, so each one drops the database, forgets every record keyed by the
  branch in one store transaction, writes an audit row and, when asked, counts it.

The engine (:mod:`.engine`) extends the context with the branch verbs; garbage
collection (:mod:`branchdb.daemon.gc`) sits above and takes a context, never the
engine's internals.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from branchdb.daemon.config import locate
from branchdb.daemon.core import audit, branchname
from branchdb.daemon.core.errors import NotFound, Refused
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.store.base import AuditEntry
from branchdb.daemon.store.meta import STATE_FILE

if TYPE_CHECKING:
    from pathlib import Path

    from branchdb.daemon.backends.base import Backend
    from branchdb.daemon.config.project import Config
    from branchdb.daemon.store.base import Store
    from branchdb.daemon.vcs.tree import Mirror

Progress = Callable[[str], None]
#: Told of each timed operation: (operation, backend name, seconds). The daemon's
#: metrics; the engine itself records nothing.
Observer = Callable[[str, str, float], None]
log = logging.getLogger("branchdb.gc")


def no_progress(_: str) -> None:
    """A :data:`Progress` callback that reports nothing."""


class ProjectContext:
    """The parts of one project (one ``branchdb.toml``). Store and backend are built
    on first use (the hook's fast path needs neither).

    *mirror*: the daemon's fetched mirror of the project's ``repository``, when one
    is configured; garbage collection then reads git facts there, not in the
    project folder's checkout (:attr:`repository`).

    *heads*: what the default branch points at now, in that repository (the layer
    above the core supplies it: ``vcs.repo.default_heads`` bound to the checkout or
    the mirror). A create records it with the branch (the merge rule of
    garbage collection); without it nothing is recorded, and GC falls back to
    commit times for that branch.
    """

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
        mirror: Mirror | None = None,
        heads: Callable[[], list[str]] | None = None,
    ) -> None:
        self.config = config
        self.project = config.project.name
        self._store = store
        self._backend = backend
        self.clock = clock
        self.mirror = mirror
        self._heads = heads
        self.observer: Observer | None = None

    # ------------------------------------------------------------------ parts
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.config_store()
        return self._store

    def config_store(self) -> Store:
        """A new connection to the state store the configuration names: ``[state]
        url`` (PostgreSQL, shared with a daemon), else the SQLite file in the data
        directory."""
        from branchdb.daemon.store import open_store

        state = self.config.state
        return open_store(state.url, self.config.data_dir / STATE_FILE, state.schema)

    @property
    def repository(self) -> Path:
        """Where git facts about branches are read: the mirror, else the checkout."""
        return self.mirror.path if self.mirror is not None else self.config.root

    def default_heads(self) -> list[str]:
        """The default branch's head(s) now (see *heads*); [] if not supplied."""
        return self._heads() if self._heads is not None else []

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from branchdb.daemon.backends import get_backend

            self._backend = get_backend(self.config, store_id=self.store.store_id)
        return self._backend

    def is_protected(self, branch: str) -> bool:
        """True if *branch* matches ``branches.protected`` (never collected)."""
        return branchname.is_protected(branch, self.config.branches.protected)

    def get(self, branch: str) -> BranchRecord:
        """*branch*'s record. Raises NotFound."""
        rec = self.store.get_branch(self.project, branch)
        if rec is None:
            raise NotFound(
                f"branch {branch!r} has no database; "
                f"create it with `branchdb up {branch}`"
            )
        return rec

    def list_branches(self) -> list[BranchRecord]:
        return self.store.list_branches(self.project)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Tell the observer how long the block took (if it finished)."""
        if self.observer is None:
            yield
            return
        started = time.monotonic()
        yield
        self.observer(
            operation, self.config.database.backend, time.monotonic() - started
        )

    # ------------------------------------------------------------------ audit
    def audit(self, action: str, branch: str, detail: str = "") -> None:
        """Append an audit entry for *action* by the current actor (see audit)."""
        actor = audit.current()
        self.store.add_audit(
            AuditEntry(
                self.clock(), self.project, branch, action, actor.who, actor.why, detail
            )
        )

    def audit_log(
        self, *, branch: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """This project's audit entries, newest first. Read-only."""
        return self.store.list_audit(
            self.project, branch=branch, action=action, limit=limit
        )

    # ------------------------------------------------------------------ locks
    @contextmanager
    def file_lock(
        self,
        name: str,
        *,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
        busy: str = "",
    ) -> Iterator[None]:
        """Hold ``locks/<name>.lock`` under the data directory (this host only).

        Waits, calling *on_wait* once; raises Refused(*busy*) after *timeout* s.
        """
        locate.make_data_dir(str(self.config.data_dir))
        locks = self.config.data_dir / "locks"
        locks.mkdir(exist_ok=True)
        fd = os.open(locks / f"{name}.lock", os.O_CREAT | os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if deadline is not None and time.monotonic() > deadline:
                            raise Refused(busy or f"{name} is busy") from None
                        time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def lock(
        self,
        branch: str,
        *,
        timeout: float | None = None,
        progress: Progress = no_progress,
    ) -> Iterator[None]:
        """Hold the per-branch lock; raise Refused after *timeout* seconds.

        The lock is a file lock on this host and, with a shared state store, the
        store's lock too (other replicas), taken in that order.
        """
        from branchdb.daemon.core import naming

        with (
            self.file_lock(
                naming.branch_key(branch),
                timeout=timeout,
                on_wait=lambda: progress(
                    f"waiting for another branchdb working on {branch!r}"
                ),
                busy=f"another branchdb is still working on {branch!r}; "
                "try again in a moment",
            ),
            self.store.lock(
                f"branch\0{self.project}\0{branch}",
                label=f"{self.project}/{branch.replace(chr(0), ' ')}",
                timeout=timeout,
                on_wait=lambda: progress(
                    f"waiting for another replica working on {branch!r}"
                ),
            ),
        ):
            yield

    # ----------------------------------------------------------------- delete
    def drop_branch(
        self,
        rec: BranchRecord,
        *,
        detail: str,
        count_as: str | None = None,
        force: bool = False,
    ) -> int:
        """Drop *rec*'s database and forget the branch; the one way to delete one.

        The caller holds the branch's lock and has re-read *rec* under it. Drops the
        database (idempotent: a database already gone is fine), deletes every record
        keyed by (project, branch) in one store transaction (the branch, its TTL,
        pull-request and GC marks), writes a ``delete`` audit row with *detail*, and
        with *count_as* adds the deletion to the persistent GC counters under that
        reason. Returns the bytes freed (0 if already gone).

        A protected branch's ready database is dropped only with *force* (``down
        --force``): whatever path asks, it raises Refused and changes nothing.
        Raises what the backend raises (Refused for a database it cannot prove is
        branchdb's); then nothing is forgotten, nor while the database still exists.
        """
        backend = self.backend
        exists = backend.exists(rec.database)
        if (
            exists
            and rec.status == "ready"
            and not force
            and self.is_protected(rec.branch)
        ):
            raise Refused(
                f"{rec.branch!r} is protected (branches.protected); its database "
                "is dropped only by `branchdb down --force`"
            )
        size = backend.size_bytes(rec.database) if exists else 0
        backend.drop(rec.database, rec.info)
        if backend.exists(rec.database):  # a delete that dropped nothing
            raise Refused(
                f"database {rec.database} still exists after the drop; the record "
                f"of {rec.branch!r} is kept"
            )
        self.store.delete_branch(self.project, rec.branch)
        # A collection's row says what it freed: the dashboard's GC history reads it.
        self.audit("delete", rec.branch, _freed(detail, size, count_as))
        if count_as is not None:
            self.count_deletion(count_as, size)
        log.debug(
            "deleted database %s of branch %r (%s), freed %d bytes",
            rec.database,
            rec.branch,
            detail,
            size,
        )
        return size

    def drop_orphan(self, database: str, *, detail: str, count_as: str) -> int | None:
        """Drop *database*, which this state store made and has no record of.

        Re-checks both under no lock (an orphan has no branch to lock): answers
        None, dropping nothing, if it got a record or is no longer ours meanwhile.
        Audits and counts like :meth:`drop_branch`; returns the bytes freed.
        """
        backend = self.backend
        if self.store.branch_by_database(backend.name, database) is not None:
            return None
        if database not in backend.list_owned(store=self.store.store_id):
            return None
        size = backend.size_bytes(database)
        backend.drop(database, {})
        self.audit("delete", "", _freed(detail, size, count_as))
        self.count_deletion(count_as, size)
        log.info(
            "deleted orphan database %s (%s), freed %d bytes", database, detail, size
        )
        return size

    def count_deletion(self, reason: str, size: int) -> None:
        """Add one deletion of *size* bytes to the persistent counters of *reason*."""
        self.store.bump_gc_counters(
            self.project, {f"databases:{reason}": 1, f"bytes:{reason}": size}, {}
        )


def _freed(detail: str, size: int, count_as: str | None) -> str:
    """*detail* of a deletion's audit row; a counted (GC) one ends with
    ``; freed N bytes``."""
    return detail if count_as is None else f"{detail}; freed {size} bytes"
