"""Crash recovery: a daemon killed with SIGKILL mid-provision, then restarted.

The real daemon (``branchdb serve``) runs as a subprocess; a provision that takes a
while (a clone of a large libsql snapshot, a slow migration, a clone of a PostgreSQL
snapshot) is started and the daemon is killed in the middle. After a restart there
is no orphan database or temp file, the branch record is absent (or ready after a
retry), and a new create call succeeds. Recovery itself is also run directly on
fabricated crash leftovers, next to foreign files and databases it must not touch.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from apisupport import auth, branches, free_port, setup_project
from pgcluster import Cluster
from support import BRANCHDB, git, run, tables

from branchdb.daemon.backends.pg_admin import marker, tmp_prefix
from branchdb.daemon.config.project import load
from branchdb.daemon.core import naming, recovery
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.store.sqlite_store import SqliteStore

BR = "/v1/projects/{project}/branches"


# --------------------------------------------------------------- the daemon
class Daemon:
    """``branchdb serve`` in *repo* on a free port; killable, restartable."""

    def __init__(self, repo: Path, env: dict[str, str] | None = None) -> None:
        self.repo = repo
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")
        }
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.log = repo.parent / "serve.log"

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [BRANCHDB, "serve", "--port", str(self.port)],
                cwd=self.repo,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                # Ready: start-up recovery is done (health answers before it).
                if httpx.get(f"{self.base}/v1/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(repo: Path, env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(repo, env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def token(repo: Path, env: dict[str, str] | None = None) -> str:
    r = run(repo, "token", "create", "--scope", "ci", env=env)
    assert r.code == 0, r.err
    return r.out.strip()


def wait_for(what: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def record(repo: Path, branch: str, project: str = "shop") -> BranchRecord | None:
    store = SqliteStore(repo / ".branchdb" / "state.db")
    try:
        return store.get_branch(project, branch)
    finally:
        store.close()


# ------------------------------------------------------------------ libsql
def big_sqlite(path: Path, mib: int) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
    con.executemany("INSERT INTO blobs (b) VALUES (randomblob(1048576))", [()] * mib)
    con.commit()
    con.close()


def test_sigkill_during_a_libsql_clone(
    repo: Path, daemons: Callable[..., Daemon]
) -> None:
    setup_project(repo)
    git(repo, "branch", "feature/big")
    source = repo.parent / "big.db"
    big_sqlite(source, 600)
    r = run(repo, "snapshot", "create", "big", "--source", str(source))
    assert r.code == 0, r.err
    source.unlink()
    tok = token(repo)
    branches = repo / ".branchdb" / "branches"
    # Foreign files in branchdb's folder: recovery must leave them alone.
    branches.mkdir(parents=True, exist_ok=True)
    (branches / "notes.txt").write_text("mine\n")
    (branches / "app.db").write_bytes(b"not branchdb's")
    d = daemons(repo)
    d.start()
    url = f"{d.base}{BR.format(project='shop')}/feature/big"
    r0 = httpx.put(url, params={"from": "big", "wait": "false"}, headers=auth(tok))
    assert r0.status_code == 202, r0.text
    # Killed while the clone is being written under its temp name.
    wait_for(lambda: any(branches.glob(".tmp-bdb-*")))
    d.kill()
    rec = record(repo, "feature/big")
    assert rec is not None and rec.status == "creating"  # really caught mid-way
    assert any(branches.glob(".tmp-bdb-*"))

    d.start()  # recovery runs before the first request is served
    assert not any(branches.glob(".tmp-*"))
    assert record(repo, "feature/big") is None
    assert sorted(p.name for p in branches.iterdir()) == ["app.db", "notes.txt"]
    assert (branches / "app.db").read_bytes() == b"not branchdb's"
    got = httpx.get(url, headers=auth(tok))
    assert got.status_code == 404
    again = httpx.put(url, params={"from": "big"}, headers=auth(tok), timeout=120)
    assert again.status_code == 201, again.text
    assert [p.name for p in branches.glob("bdb-*.db")] == [
        Path(again.json()["url"].removeprefix("file:")).name
    ]
    assert record(repo, "feature/big").status == "ready"  # type: ignore[union-attr]
    d.stop()
    shutil.rmtree(repo / ".branchdb" / "snapshots")  # 1.2 GB: not kept by pytest
    for p in branches.glob("bdb-*"):
        p.unlink()


SLOW = (
    "CREATE TABLE slow AS WITH RECURSIVE c(x) AS "
    "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
    "SELECT count(*) AS n FROM c;\n"
)


def test_sigkill_during_a_migration(repo: Path, daemons: Callable[..., Daemon]) -> None:
    setup_project(repo)
    (repo / "migrations" / "003_slow.sql").write_text(SLOW)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "slow")
    branches(repo, "feature/slow")
    tok = token(repo)
    d = daemons(repo)
    d.start()
    url = f"{d.base}{BR.format(project='shop')}/feature/slow"
    assert (
        httpx.put(url, params={"wait": "false"}, headers=auth(tok)).status_code == 202
    )

    def migrating() -> bool:
        # 001 and 002 committed (each its own transaction): 003 runs for seconds.
        rec = record(repo, "feature/slow")
        if rec is None or rec.status != "ready":
            return False
        try:
            con = sqlite3.connect(
                f"file:{rec.url.removeprefix('file:')}?mode=ro", uri=True
            )
            try:
                n = con.execute("SELECT count(*) FROM _branchdb_migrations").fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            return False  # not created yet, or locked for a moment
        return bool(n[0] == 2)

    wait_for(migrating)
    d.kill()
    d.start()
    rec = record(repo, "feature/slow")
    # The database was complete: kept, ready, its slow migration rolled back.
    assert rec is not None and rec.status == "ready"
    path = Path(rec.url.removeprefix("file:"))
    assert "slow" not in tables(path) and {"users", "orders"} <= tables(path)
    again = httpx.put(url, headers=auth(tok), timeout=120)
    assert again.status_code == 200, again.text
    assert again.json()["applied"] == ["003_slow.sql"]
    assert "slow" in tables(path)
    assert [p.name for p in (repo / ".branchdb" / "branches").glob("bdb-*.db")] == [
        path.name
    ]


def test_recover_fabricated_libsql_leftovers(repo: Path) -> None:
    setup_project(repo)
    engine = Engine(load(cwd=repo))
    good = engine.up("good").record
    branches = repo / ".branchdb" / "branches"
    now = time.time()

    def fake(branch: str, status: str) -> BranchRecord:
        rec = BranchRecord(
            "shop",
            branch,
            engine.database_name(branch),
            "libsql",
            "fresh",
            status,
            now,
            now,
        )
        engine.store.put_branch(rec)
        return rec

    # Killed after the rename, before the ready record; and killed mid-copy.
    done = fake("renamed", "creating")
    (branches / f"{done.database}.db").write_bytes(b"x")
    mid = fake("midcopy", "creating")
    (branches / f".tmp-{mid.database}-0badc0de").write_bytes(b"x")
    fake("vanished", "ready")  # its file was removed behind our back
    busy = fake("busy", "creating")  # a live process holds its lock
    (branches / f".tmp-{busy.database}-0000beef").write_bytes(b"x")
    stray = branches / ".tmp-bdb-nobody-1234abcd-feedf00d"  # no record at all
    stray.write_bytes(b"x")
    snaps = repo / ".branchdb" / "snapshots" / "prod"
    snaps.mkdir(parents=True)
    (snaps / ".tmp-3-cafebabe").write_bytes(b"x")
    orphan = branches / "bdb-orphan-0123456789.db"  # complete, unrecorded: GC's
    orphan.write_bytes(b"x")
    (branches / "notes.txt").write_text("foreign\n")

    with engine.lock("busy"):
        other = Engine(load(cwd=repo))  # another process's view, lock held here
        report = recovery.recover(other)
    assert sorted(report.cleaned) == ["midcopy", "renamed"]
    assert report.forgotten == ["vanished"]
    assert "busy" in report.busy
    names = {p.name for p in branches.iterdir() if "migrate-lock" not in p.name}
    assert names == {
        f"{good.database}.db",
        f"{good.database}.db.store",
        f".tmp-{busy.database}-0000beef",
        orphan.name,
        "notes.txt",
    }
    assert not any(snaps.iterdir())
    left = {r.branch: r.status for r in engine.list_branches()}
    assert left == {"good": "ready", "busy": "creating"}
    # Idempotent; once the lock is free the busy one is cleaned too.
    report = recovery.recover(engine)
    assert report.cleaned == ["busy"] and not report.forgotten
    assert engine.up("midcopy").created


# ---------------------------------------------------------------- postgres
PG_CONFIG = """\
[project]
name = "{name}"
[database]
backend = "postgres"
[migrations]
dir = "migrations"
format = "sql"
"""


def pg_databases(cluster: Cluster) -> dict[str, str | None]:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        rows = c.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
        )
        return {n: d for n, d in rows}


def pg_roles(cluster: Cluster) -> set[str]:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}


def pg_project(repo: Path, cluster: Cluster) -> tuple[str, dict[str, str]]:
    name = "r" + repo.parent.name[-12:].replace("_", "").lower()
    mig = repo / "migrations"
    mig.mkdir()
    (mig / "001_users.sql").write_text("CREATE TABLE users (id serial PRIMARY KEY);\n")
    (repo / "branchdb.toml").write_text(PG_CONFIG.format(name=name))
    (repo / ".gitignore").write_text(".branchdb/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pg")
    return name, {"BRANCHDB_PG_URL": cluster.admin_url}


def ours(cluster: Cluster, project: str) -> set[str]:
    """Databases carrying *project*'s marker (any kind), plus unmarked temps."""
    return {
        n
        for n, c in pg_databases(cluster).items()
        if (c or "").startswith("branchdb:") and f'"project": "{project}"' in c  # type: ignore[operator]
    }


@pytest.mark.postgres
def test_sigkill_during_a_postgres_clone(
    repo: Path,
    pg_cluster: Cluster,
    daemons: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, env = pg_project(repo, pg_cluster)
    branches(repo, *(f"feature/pg{attempt}" for attempt in range(8)))
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {project}_src")
        c.execute(f"CREATE DATABASE {project}_src")
        c.execute(f"CREATE DATABASE {project}_foreign")  # not branchdb's
    src = pg_cluster.url(f"{project}_src")
    with psycopg.connect(src, autocommit=True) as c:
        c.execute(
            "CREATE TABLE pad AS SELECT g AS id, repeat('x', 900) AS filler "
            "FROM generate_series(1, 100000) g"
        )
    r = run(repo, "snapshot", "create", "big", "--source", src, env=env)
    assert r.code == 0, r.err
    tok = token(repo, env)
    d = daemons(repo, env)
    d.start()
    # The window between the temp database appearing and the rename is short:
    # try again with another branch when the kill came too late.
    for attempt in range(8):
        branch = f"feature/pg{attempt}"
        url = f"{d.base}{BR.format(project=project)}/{branch}"
        r0 = httpx.put(url, params={"from": "big", "wait": "false"}, headers=auth(tok))
        assert r0.status_code == 202, r0.text
        final = naming.pg_database(project, branch)
        prefix = tmp_prefix(final)

        def started(prefix: str = prefix, final: str = final) -> bool:
            names = pg_databases(pg_cluster)
            return final in names or any(n.startswith(prefix) for n in names)

        wait_for(started)
        d.kill()
        rec = record(repo, branch, project)
        if rec is not None and rec.status == "creating":
            break
        d.start()
    else:
        pytest.fail("never caught a clone in the middle")
    d.start()
    dbs = pg_databases(pg_cluster)
    assert not any(n.startswith(prefix) for n in dbs)
    assert final not in dbs
    assert f"{project}_foreign" in dbs and f"{project}_src" in dbs
    assert record(repo, branch, project) is None
    assert naming.pg_role(project, branch) not in pg_roles(pg_cluster)
    again = httpx.put(url, params={"from": "big"}, headers=auth(tok), timeout=120)
    assert again.status_code == 201, again.text
    # Every branch database has a complete record, and the record a database.
    branch_dbs = {
        n
        for n, c in pg_databases(pg_cluster).items()
        if c and '"kind": "branch"' in c and project in c
    }
    store = SqliteStore(repo / ".branchdb" / "state.db")
    recs = store.list_branches(project)
    store.close()
    assert {r.status for r in recs} == {"ready"}
    assert branch_dbs == {r.database for r in recs} and final in branch_dbs
    assert record(repo, branch, project).status == "ready"  # type: ignore[union-attr]
    with psycopg.connect(again.json()["url"]) as c:
        assert c.execute("SELECT count(*) FROM pad").fetchone() == (100000,)
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE {project}_src")
        c.execute(f"DROP DATABASE {project}_foreign")


@pytest.mark.postgres
def test_recover_fabricated_postgres_leftovers(
    repo: Path, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = pg_project(repo, pg_cluster)
    monkeypatch.setenv("BRANCHDB_PG_URL", pg_cluster.admin_url)
    engine = Engine(load(cwd=repo))
    good = engine.up("good").record
    now = time.time()
    rec = BranchRecord(
        project,
        "crashed",
        engine.database_name("crashed"),
        "postgres",
        "fresh",
        "creating",
        now,
        now,
    )
    engine.store.put_branch(rec)
    role = naming.pg_role(project, "crashed")
    foreign_tmp = "bdbt_0000000000000000_feedf00d"
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        # What a kill leaves: the role, a marked temp, an unmarked temp (killed
        # between CREATE and COMMENT), all for the crashed branch.
        c.execute(f'CREATE ROLE "{role}" LOGIN')
        c.execute(
            f"""COMMENT ON ROLE "{role}" IS '{marker(project, "role", branch="crashed")}'"""
        )
        t1 = tmp_prefix(rec.database) + "aaaa0001"
        t2 = tmp_prefix(rec.database) + "aaaa0002"
        c.execute(f'CREATE DATABASE "{t1}" OWNER "{role}"')
        c.execute(
            f"""COMMENT ON DATABASE "{t1}" IS '{marker(project, "tmp", final=rec.database)}'"""
        )
        c.execute(f'CREATE DATABASE "{t2}"')
        # Another project's temp and a foreign database: never touched.
        c.execute(f'CREATE DATABASE "{foreign_tmp}"')
        c.execute(
            f"""COMMENT ON DATABASE "{foreign_tmp}" IS '{marker("other", "tmp", final="bdb_other_x")}'"""
        )
        c.execute(f'CREATE DATABASE "{project}_app"')
        # A temp of a branch with no record at all (nobody can be building it).
        t3 = tmp_prefix(naming.pg_database(project, "nobody")) + "aaaa0003"
        c.execute(f'CREATE DATABASE "{t3}"')
        c.execute(
            f"""COMMENT ON DATABASE "{t3}" IS '{marker(project, "tmp", final=naming.pg_database(project, "nobody"))}'"""
        )
    report = recovery.recover(engine)
    assert report.cleaned == ["crashed"]
    assert t3 in report.temps
    dbs = pg_databases(pg_cluster)
    assert not {t1, t2, t3} & set(dbs)
    assert {good.database, foreign_tmp, f"{project}_app"} <= set(dbs)
    assert role not in pg_roles(pg_cluster)
    assert [r.branch for r in engine.list_branches()] == ["good"]
    # A ready record whose database was dropped behind branchdb's back.
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{good.database}"')
    assert recovery.recover(engine).forgotten == ["good"]
    assert engine.list_branches() == []
    assert engine.up("crashed").created
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{foreign_tmp}"')
        c.execute(f'DROP DATABASE "{project}_app"')
