"""An in-process backend that keeps every database in memory: the fake for tests.

It implements the whole :class:`~branchdb.daemon.backends.base.Backend` contract the
way the real backends do — temp name first, marker, rename last; only marked
databases are listed or dropped; temps recovered under the branch's lock — so engine,
GC and recovery tests can run without files or a server, and the contract suite
(tests/test_backend_contract.py) holds it to the same rules as libsql and postgres.

Each database is one SQLite ``:memory:`` connection held by the backend; a
:class:`FakeSession` talks to it (closing a session leaves the database). Sessions of
one database share that connection, like one client: the engine opens one at a time,
under the branch's lock. Every database, temp and foreign one included, lives in
:attr:`FakeBackend.databases` with its marker (``None``: not branchdb's), so tests
can look at all of it, as they would list files or ``pg_database``.

Registered as ``fake`` in :data:`branchdb.daemon.backends.REGISTRY`, but not
accepted in ``branchdb.toml`` (its databases die with the process): tests build a
configuration with :func:`configure`. The ``command`` migration format cannot reach
these databases (its URL, ``fake:<name>``, means nothing to another process).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from branchdb.daemon.backends.base import Info, Progress, Recovered
from branchdb.daemon.core import naming
from branchdb.daemon.core.dbsession import Row
from branchdb.daemon.core.errors import (
    BackendError,
    ConfigError,
    DatabaseError,
    NotFound,
    Refused,
)
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from branchdb.daemon.backends.base import Backend
    from branchdb.daemon.config.project import Config
    from branchdb.daemon.core.context import ProjectContext
    from branchdb.daemon.sanitize.rules import Rules

_SQLITE_MAGIC = b"SQLite format 3\x00"


def configure(config: Config) -> Config:
    """*config* with ``[database] backend = "fake"`` (what branchdb.toml refuses)."""
    return config._replace(database=config.database._replace(backend="fake"))


class _Database:
    """One in-memory database, its marker and what :meth:`activity` reports."""

    def __init__(self, mark: dict[str, Any] | None) -> None:
        # One connection used from whichever thread runs the engine (API workers).
        self.conn = sqlite3.connect(
            ":memory:", isolation_level=None, check_same_thread=False
        )
        self.mark = mark
        self.transactions = 0
        self.sessions = 0
        self.migrating = threading.Lock()

    def close(self) -> None:
        self.conn.close()


class FakeSession:
    """Owner session on one in-memory database (``fake:<name>``)."""

    dialect = "sqlite"

    def __init__(self, db: _Database, url: str) -> None:
        self.url = url
        self._db = db
        self._closed = False
        db.sessions += 1

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        if self._closed:
            raise BackendError(f"session on {self.url} is closed")
        conn = self._db.conn
        if not conn.in_transaction:
            self._db.transactions += 1  # autocommit: one transaction per statement
        try:
            cur = conn.execute(sql, tuple(params) if params is not None else ())
            rows = cur.fetchall()
            cur.close()
        except sqlite3.ProgrammingError as e:  # the database was dropped
            raise BackendError(f"{self.url}: {e}") from None
        except sqlite3.Error as e:
            raise DatabaseError(str(e)) from None
        return rows

    @contextmanager
    def transaction(self) -> Iterator[FakeSession]:
        self.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self._db.conn.in_transaction:
                self._db.conn.execute("ROLLBACK")
            raise
        else:
            self._db.conn.execute("COMMIT")

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        with self._db.migrating:
            yield

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.sessions -= 1

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeBackend:
    """Branch databases of one project, in this process's memory."""

    name: ClassVar[str] = "fake"
    dialect: ClassVar[str] = "sqlite"
    exists_is_stat: ClassVar[bool] = False
    samples_activity: ClassVar[bool] = True  # sessions and transactions are counted
    copy_on_write: ClassVar[bool] = False
    scales_to_zero: ClassVar[bool] = False

    def __init__(self, config: Config, *, store_id: str | None = None) -> None:
        if config.database.backend != self.name:
            # Records carry the configured backend's name and recovery and GC look
            # them up by this backend's name: the two must agree.
            raise ConfigError(
                'the fake backend needs [database] backend = "fake"; '
                "build its configuration with fake.configure(config)"
            )
        self.config = config
        self.project = config.project.name
        self.store_id = store_id
        #: every database by name: branch databases, temps, snapshots, foreign ones
        self.databases: dict[str, _Database] = {}
        self._mutex = threading.RLock()

    # -------------------------------------------------------------- plumbing
    def _ours(self, name: str, kind: str) -> _Database | None:
        db = self.databases.get(name)
        if db is None or db.mark is None:
            return None
        if db.mark.get("project") != self.project or db.mark.get("kind") != kind:
            return None
        return db

    def _new_tmp(self, final: str, **mark: Any) -> tuple[str, _Database]:
        tmp = f"tmp-{final}-{os.urandom(4).hex()}"
        db = _Database({"project": self.project, "kind": "tmp", "final": final, **mark})
        self.databases[tmp] = db
        return tmp, db

    def _discard(self, name: str) -> None:
        db = self.databases.pop(name, None)
        if db is not None:
            db.close()

    def _seal(self, tmp: str, final: str, mark: dict[str, Any]) -> _Database:
        """Mark *tmp* and rename it to *final*: the last step of every build."""
        db = self.databases.pop(tmp)
        db.mark = {"project": self.project, **mark}
        if self.store_id:
            db.mark["store"] = self.store_id
        self.databases[final] = db
        return db

    # -------------------------------------------------------------- databases
    def database_name(self, branch: str) -> str:
        return f"{naming.PREFIX}-{naming.branch_key(branch)}"

    def exists(self, database: str) -> bool:
        return self._ours(database, "branch") is not None

    def create(
        self,
        database: str,
        *,
        branch: str,
        snapshot: SnapshotRecord | None,
        info: Info,
    ) -> Info:
        with self._mutex:
            if database in self.databases:
                raise Refused(f"database {database} already exists")
            self.drop_leftovers(database, branch, info)
            tmp, db = self._new_tmp(database, branch=branch)
            try:
                if snapshot is None:
                    strategy = "fresh"
                else:
                    src = self._ours(snapshot.location, "snapshot")
                    if src is None:
                        raise NotFound(
                            f"snapshot {snapshot.ref} ({snapshot.location}) is "
                            "missing; recreate it with "
                            f"`branchdb snapshot create {snapshot.name}`"
                        )
                    src.conn.backup(db.conn)
                    strategy = "copy"
                self._seal(tmp, database, {"kind": "branch", "branch": branch})
            except BaseException:
                self._discard(tmp)
                raise
        return {"url": f"fake:{database}", "strategy": strategy}

    def drop(self, database: str, info: Info) -> None:
        with self._mutex:
            if database not in self.databases:
                return
            db = self._ours(database, "branch")
            if db is None:
                raise Refused(
                    f"database {database} is not a branch database branchdb made "
                    f"for project {self.project!r}; nothing was dropped"
                )
            made_by = (db.mark or {}).get("store")
            if made_by and self.store_id and made_by != self.store_id:
                raise Refused(
                    f"database {database} was made by another branchdb state store "
                    f"(id {made_by}); nothing was dropped"
                )
            self._discard(database)

    def connect(self, database: str, info: Info) -> FakeSession:
        db = self._ours(database, "branch")
        if db is None:
            raise NotFound(f"database {database} does not exist")
        return FakeSession(db, f"fake:{database}")

    def list_owned(self, store: str | None = None) -> list[str]:
        with self._mutex:
            return sorted(
                n
                for n, db in self.databases.items()
                if self._ours(n, "branch")
                and (store is None or (db.mark or {}).get("store") == store)
            )

    def size_bytes(self, database: str) -> int:
        db = self.databases.get(database)
        if db is None:
            return 0
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        return int(pages * db.conn.execute("PRAGMA page_size").fetchone()[0])

    def activity(
        self, databases: list[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        with self._mutex:
            return {
                n: (db.transactions, db.sessions)
                for n, db in self.databases.items()
                if self._ours(n, "branch") and (databases is None or n in databases)
            }

    # --------------------------------------------------------------- recovery
    def drop_leftovers(self, database: str, branch: str, info: Info) -> Info:
        with self._mutex:
            for name in [n for n in self.databases if self._is_temp_of(n, database)]:
                self._discard(name)
        return info

    def _is_temp_of(self, name: str, final: str) -> bool:
        db = self._ours(name, "tmp")
        return db is not None and db.mark is not None and db.mark["final"] == final

    def recover_temps(self, ctx: ProjectContext) -> Recovered:
        """Temps of this project no live build owns: each dropped under the lock of
        the branch (or snapshot) it was for, taken without waiting."""
        out = Recovered([], [])
        with self._mutex:
            temps = {
                n: db.mark for n, db in self.databases.items() if self._ours(n, "tmp")
            }
        for tmp, mark in sorted(temps.items()):
            assert mark is not None
            key: str | None
            if "snapshot" in mark:
                key = f"snapshot\0{mark['snapshot']}"
            else:
                owner = ctx.store.branch_by_database(self.name, mark["final"])
                key = owner.branch if owner else None
            try:
                lock = ctx.lock(key, timeout=0) if key else contextlib.nullcontext()
                with lock, self._mutex:
                    self._discard(tmp)
                out.dropped.append(tmp)
            except Refused:
                out.busy.append(tmp)
        return out

    # ------------------------------------------------------------- test hooks
    def leave_temp(self, final: str, **mark: Any) -> str:
        """What a build of *final* killed mid-copy leaves: a marked temp, for
        ``branch=`` (a branch database) or ``snapshot=`` (a snapshot's name).

        (A real kill takes this process's memory with it; tests of recovery use
        this to stand for the leftovers a file or a server would keep.)
        """
        with self._mutex:
            return self._new_tmp(final, **mark)[0]

    def add_foreign(self, name: str, mark: dict[str, Any] | None = None) -> None:
        """A database branchdb did not make (*mark* None) or another project's."""
        with self._mutex:
            if name in self.databases:
                raise Refused(f"database {name} already exists")
            self.databases[name] = _Database(mark)

    # -------------------------------------------------------------- snapshots
    def snapshot_name(self, name: str, version: int) -> str:
        return f"{naming.PREFIX}s-{naming.snapshot_key(name)}-v{version}"

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
        """Copy *source* — a SQLite file (``file:`` optional) or ``fake:<database>``
        of this backend — into a sealed in-memory snapshot."""
        final = self.snapshot_name(name, version)
        with self._mutex:
            if final in self.databases:
                raise Refused(f"snapshot database {final} already exists")
            for stale in [n for n in self.databases if self._is_temp_of(n, final)]:
                self._discard(stale)
            tmp, db = self._new_tmp(final, snapshot=name)
            try:
                info: dict[str, Any] = {}
                self._copy_source(source, db)
                if rules is not None:
                    info["sanitize"] = _sanitize(db, rules, allow_unreviewed, progress)
                self._seal(
                    tmp,
                    final,
                    {"kind": "snapshot", "snapshot": name, "version": version},
                )
            except BaseException:
                self._discard(tmp)
                raise
        return SnapshotRecord(
            project=self.project,
            name=name,
            version=version,
            backend=self.name,
            location=final,
            created_at=time.time(),
            source=source,
            size_bytes=self.size_bytes(final),
            info=info,
        )

    def _copy_source(self, source: str, db: _Database) -> None:
        if source.startswith("fake:"):
            src = self._ours(source.removeprefix("fake:"), "branch")
            if src is None:
                raise NotFound(f"snapshot source {source} does not exist")
            src.conn.backup(db.conn)
            return
        path = Path(source.removeprefix("file:")).expanduser()
        if not path.is_file():
            raise NotFound(f"snapshot source {path} does not exist")
        with open(path, "rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                raise BackendError(f"snapshot source {path} is not a SQLite database")
        file_db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            file_db.backup(db.conn)
        finally:
            file_db.close()

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None:
        with self._mutex:
            if self._ours(snapshot.location, "snapshot") is not None:
                self._discard(snapshot.location)


def _sanitize(
    db: _Database, rules: Rules, allow_unreviewed: bool, progress: Progress | None
) -> dict[str, Any]:
    """Run the SQLite sanitizer on *db* through a temporary file; its report."""
    from branchdb.daemon.sanitize.report import line_progress
    from branchdb.daemon.sanitize.sqlite.pipeline import sanitize_sqlite

    with tempfile.TemporaryDirectory(prefix="branchdb-fake-") as folder:
        path = Path(folder) / "snapshot.db"
        file_db = sqlite3.connect(path)
        try:
            db.conn.backup(file_db)
        finally:
            file_db.close()
        report = sanitize_sqlite(
            path,
            rules,
            allow_unreviewed=allow_unreviewed,
            progress=line_progress(progress),
        )
        file_db = sqlite3.connect(path)
        try:
            file_db.backup(db.conn)
        finally:
            file_db.close()
    info: dict[str, Any] = report.info()
    return info


if TYPE_CHECKING:

    def _is_a_backend(backend: FakeBackend) -> Backend:
        return backend  # mypy checks the fake against the whole Protocol
