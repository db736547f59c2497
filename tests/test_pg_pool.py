"""The postgres backend's warm pool (spares) on a real PostgreSQL 15 server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from apisupport import wait_up
from pgcluster import Cluster, free_port
from support import BRANCHDB, git, run

from branchdb.daemon.backends import pg_pool
from branchdb.daemon.backends.pg_admin import marker
from branchdb.daemon.config.project import load
from branchdb.daemon.core import naming, recovery, spares
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import ConfigError

pytestmark = pytest.mark.postgres

CONFIG = """\
[project]
name = "{name}"
[database]
backend = "postgres"
[migrations]
dir = "migrations"
format = "sql"
{extra}"""


def admin(cluster: Cluster, db: str = "postgres") -> psycopg.Connection[tuple]:  # type: ignore[type-arg]
    return psycopg.connect(cluster.url(db), autocommit=True)


def spare_rows(cluster: Cluster) -> dict[str, tuple[object, ...]]:
    """Every bdbp_ database -> (comment, owner, datallowconn, datacl)."""
    with admin(cluster) as c:
        rows = c.execute(
            "SELECT d.datname, shobj_description(d.oid, 'pg_database'), r.rolname, "
            "d.datallowconn, d.datacl::text FROM pg_database d "
            "JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname LIKE 'bdbp\\_%'"
        ).fetchall()
    return {str(r[0]): tuple(r[1:]) for r in rows}


@pytest.fixture
def project(
    repo: Path, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str, str]]:
    """A postgres project with one migration and a source database of 2000 rows:
    (repo, project name, source URL)."""
    name = "pool" + repo.parent.name[-10:].replace("_", "").lower()
    mig = repo / "migrations"
    mig.mkdir()
    (mig / "001_notes.sql").write_text("CREATE TABLE notes (id int);\n")
    (repo / "branchdb.toml").write_text(CONFIG.format(name=name, extra=""))
    (repo / ".gitignore").write_text(".branchdb/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pg")
    monkeypatch.setenv("BRANCHDB_PG_URL", pg_cluster.admin_url)
    monkeypatch.delenv("BRANCHDB_PG_SPARES", raising=False)
    src = f"{name}_src"
    with admin(pg_cluster) as c:
        c.execute(f'CREATE DATABASE "{src}"')
    with admin(pg_cluster, src) as c:
        c.execute(
            "CREATE TABLE users AS SELECT g AS id FROM generate_series(1, 2000) g"
        )
    yield repo, name, pg_cluster.url(src)
    with admin(pg_cluster) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{src}" WITH (FORCE)')


def engine_for(repo: Path, spares_n: int = 0) -> Engine:
    if spares_n:
        text = (repo / "branchdb.toml").read_text()
        (repo / "branchdb.toml").write_text(
            text.split("[postgres]")[0] + f"[postgres]\nspares = {spares_n}\n"
        )
    return Engine(load(cwd=repo))


def count(url: str, table: str = "users") -> int:
    with psycopg.connect(url) as c:
        row = c.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


# ------------------------------------------------------------------ hand-out
def test_a_spare_is_handed_out_closed_until_then(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, name, src = project
    engine = engine_for(repo)
    snap = engine.snapshot_create("prod", src)
    warmed = engine.snapshot_warm("prod", 2)
    assert (warmed.snapshot, warmed.built, warmed.ready) == ("prod@1", 2, 2)
    assert engine.snapshot_warm("prod", 2).built == 0  # idempotent
    made = {n: r for n, r in spare_rows(pg_cluster).items() if name in str(r[0])}
    assert len(made) == 2
    for spare, (comment, owner, allow_conn, acl) in made.items():
        assert spare.startswith(pg_pool.spare_prefix(snap.location))
        assert '"kind": "spare"' in str(comment) and owner == "postgres"
        # Nobody connects before hand-out: not even PUBLIC's CONNECT is left.
        assert allow_conn is False and "=c" not in str(acl).replace("postgres=", "")

    other = engine.up("other", from_snapshot="prod").record
    assert other.info["strategy"] == "spare"
    feature = engine.up("feature/x", from_snapshot="prod").record
    assert feature.info["strategy"] == "spare"
    assert not [n for n, r in spare_rows(pg_cluster).items() if name in str(r[0])]
    # The branch has the snapshot's data and its migration, through its own URL.
    assert count(feature.url) == 2000 and count(feature.url, "notes") == 0
    with psycopg.connect(feature.url) as c:
        owners = c.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert owners == [(feature.info["role"],)]
        c.execute("INSERT INTO users VALUES (0)")  # it owns what it was given
    with admin(pg_cluster) as c:
        row = c.execute(
            "SELECT r.rolname, d.datallowconn FROM pg_database d "
            "JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s",
            [feature.database],
        ).fetchone()
        assert row == ("postgres", True)
    # Another branch's role cannot connect to it.
    theirs = psycopg.conninfo.conninfo_to_dict(other.url)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            pg_cluster.url(
                feature.database, str(theirs["user"]), str(theirs["password"])
            )
        )
    # Pool empty: the next one is a plain template clone.
    third = engine.up("third", from_snapshot="prod").record
    assert third.info["strategy"] in ("WAL_LOG", "FILE_COPY")
    assert count(third.url) == 2000


def test_reset_takes_a_spare_and_keeps_the_url(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, _, src = project
    engine = engine_for(repo)
    engine.snapshot_create("prod", src)
    first = engine.up("feature/r", from_snapshot="prod").record
    url = first.url
    assert first.info["strategy"] != "spare"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DELETE FROM users")
    engine.snapshot_warm("prod", 1)
    again = engine.reset("feature/r").record
    assert again.info["strategy"] == "spare" and again.url == url
    assert count(url) == 2000 and count(url, "notes") == 0
    # Pool empty again: reset falls back to the template.
    assert engine.reset("feature/r").record.info["strategy"] != "spare"
    assert count(url) == 2000


# --------------------------------------------------------- refill and drop
def test_refill_tops_up_the_newest_version_and_drops_gone_ones(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, _, src = project
    engine = engine_for(repo, spares_n=2)
    v1 = engine.snapshot_create("prod", src)
    pool = spares.pool_of(engine)
    assert pool is not None
    assert [w.built for w in spares.refill(engine)] == [2]
    assert spares.refill(engine)[0].built == 0
    engine.up("a", from_snapshot="prod")
    assert pool.count(v1) == 1
    assert spares.refill(engine)[0].built == 1 and pool.count(v1) == 2
    # A new version: the refill fills it; v1's spares stay while v1 does.
    v2 = engine.snapshot_create("prod", src)
    assert [(w.snapshot, w.built) for w in spares.refill(engine)] == [("prod@2", 2)]
    assert pool.count(v1) == 2
    # v1 is removed: its spares go with it.
    engine.down("a")
    engine.snapshot_rm("prod@1")
    assert pool.count(v1) == 0
    assert not [
        n
        for n in spare_rows(pg_cluster)
        if n.startswith(pg_pool.spare_prefix(v1.location))
    ]
    # A version the store forgot without the backend (another tool, a lost
    # write): the next refill drops its spares.
    engine.store.delete_snapshot(engine.project, "prod", 2)
    spares.refill(engine)
    assert pool.count(v2) == 0
    engine.backend.snapshot_drop(v2)


def test_snapshot_prune_drops_its_spares(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, _, src = project
    text = (repo / "branchdb.toml").read_text()
    (repo / "branchdb.toml").write_text(text + "[snapshots]\nkeep = 1\n")
    engine = engine_for(repo)
    v1 = engine.snapshot_create("prod", src)
    engine.snapshot_warm("prod", 1)
    engine.snapshot_create("prod", src)  # v1 is pruned (keep = 1)
    assert not [
        n
        for n in spare_rows(pg_cluster)
        if n.startswith(pg_pool.spare_prefix(v1.location))
    ]


def test_warm_and_refill_refuse_on_other_backends(tmp_path: Path, repo: Path) -> None:
    r = run(repo, "init")
    assert r.code == 0, r.err
    r = run(repo, "snapshot", "warm", "nosuch", "--spares", "1")
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1, r.err
    db = tmp_path / "src.db"
    import sqlite3

    sqlite3.connect(db).execute("CREATE TABLE t (a)").connection.commit()
    assert run(repo, "snapshot", "create", "s", "--source", str(db)).code == 0
    r = run(repo, "snapshot", "warm", "s")
    assert r.code != 0 and "keeps no spares" in r.err, r.err
    assert "Traceback" not in r.err
    # Remote mode: the daemon keeps its own pool; nothing is sent anywhere.
    r = run(
        repo, "snapshot", "warm", "s", env={"BRANCHDB_SERVER": "http://127.0.0.1:9"}
    )
    assert r.code == 1 and "[postgres] spares" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1


def test_cli_snapshot_warm(project: tuple[Path, str, str], pg_cluster: Cluster) -> None:
    repo, _, src = project
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    assert run(repo, "snapshot", "create", "prod", "--source", src, env=env).code == 0
    r = run(repo, "snapshot", "warm", "prod", "--spares", "2", env=env)
    assert r.code == 0, r.err
    assert r.out.strip() == "snapshot prod@1: 2 spares ready (2 made now)"
    r = run(repo, "snapshot", "warm", "prod", "--spares", "3", "--json", env=env)
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"snapshot": "prod@1", "ready": 3, "built": 1}
    r = run(repo, "snapshot", "warm", "prod", "--spares", "1000", env=env)
    assert r.code == 2 and "Traceback" not in r.err
    r = run(repo, "snapshot", "warm", "missing", env=env)
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1, r.err
    r = run(repo, "up", "--from", "prod", "--json", env=env)
    assert r.code == 0, r.err
    r = run(repo, "status", "--json", env=env)
    assert '"spare"' in r.out or "spare" in r.out, r.out


def test_config_spares(
    project: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, name, _ = project
    assert load(cwd=repo).postgres.spares == 0
    monkeypatch.setenv("BRANCHDB_PG_SPARES", "3")
    assert load(cwd=repo).postgres.spares == 3
    for bad in ("-1", "x", "101"):
        monkeypatch.setenv("BRANCHDB_PG_SPARES", bad)
        with pytest.raises(ConfigError, match=r"postgres\.spares"):
            load(cwd=repo)
    monkeypatch.delenv("BRANCHDB_PG_SPARES")
    (repo / "branchdb.toml").write_text(
        CONFIG.format(name=name, extra="[postgres]\nspares = -2\n")
    )
    with pytest.raises(ConfigError, match=r"postgres\.spares"):
        load(cwd=repo)


# ------------------------------------------------------------------- forging
def test_a_branch_role_cannot_forge_a_spare(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, name, src = project
    engine = engine_for(repo)
    snap = engine.snapshot_create("prod", src)
    rec = engine.up("mallory").record
    forged_mark = marker(
        name, "spare", snapshot=snap.location, store=engine.store.store_id
    )
    with psycopg.connect(rec.url, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f'CREATE DATABASE "{pg_pool.spare_prefix(snap.location)}evil"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f"COMMENT ON DATABASE \"{rec.database}\" IS '{forged_mark}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f'ALTER DATABASE "{rec.database}" RENAME TO "bdbp_x"')
    # The worst case, made by hand: a database the branch role owns, with a spare's
    # name and a perfect marker. It is neither handed out nor dropped.
    forged = pg_pool.spare_prefix(snap.location) + "deadbeef"
    role = rec.info["role"]
    with admin(pg_cluster) as c:
        c.execute(
            f'CREATE DATABASE "{forged}" OWNER "{role}" TEMPLATE "{snap.location}" '
            "ALLOW_CONNECTIONS false"
        )
        c.execute(f"COMMENT ON DATABASE \"{forged}\" IS '{forged_mark}'")
    pool = spares.pool_of(engine)
    assert pool is not None and pool.count(snap) == 0
    got = engine.up("victim", from_snapshot="prod").record
    assert got.info["strategy"] != "spare"
    engine.snapshot_warm("prod", 1)  # a real one beside it
    assert pool.count(snap) == 1
    assert forged not in recovery.recover(engine).temps
    dropped = pool.prune([])  # as if the snapshot were gone
    assert len(dropped) == 1 and forged not in dropped
    assert forged in spare_rows(pg_cluster)
    engine.down("victim")
    # (It holds objects of the snapshot's content role: snapshot rm would now
    # fail to drop that role, and say so, rather than touch the database.)
    with admin(pg_cluster) as c:
        c.execute(f'DROP DATABASE "{forged}"')
    engine.snapshot_rm("prod")
    engine.down("mallory")


# ------------------------------------------------------------------ recovery
def test_recovery_drops_half_made_spares(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, name, src = project
    engine = engine_for(repo)
    snap = engine.snapshot_create("prod", src)
    gone = naming.pg_snapshot_database(name, "old", 1)  # a version the store lost
    prefix = pg_pool.spare_prefix(snap.location)
    half, orphan, foreign = (
        prefix + "00000001",
        pg_pool.spare_prefix(gone) + "02",
        "bdbp_foreign",
    )
    with admin(pg_cluster) as c:
        # Killed between CREATE and its marker: no comment at all.
        c.execute(
            f'CREATE DATABASE "{half}" TEMPLATE "{snap.location}" ALLOW_CONNECTIONS false'
        )
        c.execute(f'CREATE DATABASE "{orphan}" ALLOW_CONNECTIONS false')
        c.execute(
            f'COMMENT ON DATABASE "{orphan}" IS '
            f"'{marker(name, 'spare', snapshot=gone, store=engine.store.store_id)}'"
        )
        c.execute(f'CREATE DATABASE "{foreign}"')  # not ours: no digest, no marker
    # A live builder of that snapshot holds its lock: its half-made spare stays.
    with engine.lock(naming.spares_lock("prod")):
        report = recovery.recover(engine)
        assert orphan in report.temps and half in report.busy
    report = recovery.recover(engine)
    assert half in report.temps
    left = spare_rows(pg_cluster)
    assert half not in left and orphan not in left and foreign in left
    with admin(pg_cluster) as c:
        c.execute(f'DROP DATABASE "{foreign}"')


def serve(repo: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")}
    return subprocess.Popen(
        [BRANCHDB, "serve", "--port", str(port)],
        cwd=repo,
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def wait_for(what: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_daemon_refills_and_a_killed_daemon_leaves_no_half_spare(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    repo, _, src = project
    with admin(pg_cluster, src.rsplit("/", 1)[1]) as c:  # slower clones to kill in
        c.execute(
            "CREATE TABLE pad AS SELECT g, repeat('x', 900) AS f "
            "FROM generate_series(1, 60000) g"
        )
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url, "BRANCHDB_PG_SPARES": "2"}
    assert run(repo, "snapshot", "create", "prod", "--source", src, env=env).code == 0
    engine = engine_for(repo)
    snap = engine.resolve_snapshot("prod")
    pool = spares.pool_of(engine)
    assert pool is not None
    port = free_port()
    proc = serve(repo, env, port)
    try:
        wait_up(f"http://127.0.0.1:{port}", path="/v1/ready")  # recovery done
        wait_for(lambda: pool.count(snap) == 2)
        # A hand-out (here by the CLI) is refilled by the daemon.
        r = run(repo, "up", "feature/d", "--from", "prod", env=env)
        assert r.code == 0, r.err
        assert pool.count(snap) <= 2
        wait_for(lambda: pool.count(snap) == 2)
        # Killed while it copies a spare: the server finishes the CREATE, the
        # marker never comes.
        engine.up("x1", from_snapshot="prod")
        engine.up("x2", from_snapshot="prod")

        def copying() -> bool:
            with admin(pg_cluster) as c:
                return bool(
                    c.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE query LIKE "
                        "'CREATE DATABASE \"bdbp\\_%%'"
                    ).fetchall()
                )

        wait_for(copying)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not copying())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    prefix = pg_pool.spare_prefix(snap.location)
    half = [n for n, r in spare_rows(pg_cluster).items() if r[0] is None]
    assert half and all(n.startswith(prefix) for n in half)  # what the kill left
    proc = serve(repo, {**env, "BRANCHDB_PG_SPARES": "0"}, port)
    try:
        wait_up(f"http://127.0.0.1:{port}", path="/v1/ready")  # recovery done
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not set(half) & set(spare_rows(pg_cluster))
    for spare, (comment, owner, allow_conn, _) in spare_rows(pg_cluster).items():
        if spare.startswith(prefix):  # only complete, closed, marked spares left
            assert comment and '"kind": "spare"' in str(comment), spare
            assert owner == "postgres" and allow_conn is False


# ------------------------------------------------------------------- retire
def test_reset_retires_the_old_database_in_the_background(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    from branchdb.daemon.backends.pg_retire import trash_name

    repo, name, src = project
    engine = engine_for(repo)
    engine.snapshot_create("prod", src)
    rec = engine.up("feature/t", from_snapshot="prod").record
    trash = trash_name(rec.database, "")
    held = psycopg.connect(rec.url, autocommit=True)  # a preview still connected
    held.execute("DELETE FROM users")
    engine.snapshot_warm("prod", 1)
    again = engine.reset("feature/t").record
    assert again.url == rec.url and count(again.url) == 2000
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")  # its session was ended, as DROP … FORCE does

    def trashed() -> list[str]:
        with admin(pg_cluster) as c:
            rows = c.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                [trash],
            ).fetchall()
        return [str(r[0]) for r in rows]

    wait_for(lambda: not trashed(), timeout=30)  # the server dropped it
    # A retired database whose drop never ran (server restarted): recovery drops
    # it under the branch's lock.
    left = trash + "0badf00d"
    with admin(pg_cluster) as c:
        c.execute(f'CREATE DATABASE "{left}" ALLOW_CONNECTIONS false')
        c.execute(
            f'COMMENT ON DATABASE "{left}" IS \''
            f"{marker(name, 'tmp', final=rec.database, retired=True, store=engine.store.store_id)}'"
        )
    with engine.lock("feature/t"):
        assert left in recovery.recover(engine).busy
    assert left in recovery.recover(engine).temps
    assert trashed() == []


def test_two_creates_never_get_the_same_spare(
    project: tuple[Path, str, str], pg_cluster: Cluster
) -> None:
    import threading

    repo, _, src = project
    engine = engine_for(repo)
    engine.snapshot_create("prod", src)
    engine.snapshot_warm("prod", 2)
    got: dict[str, str] = {}
    errors: list[BaseException] = []

    def up(branch: str) -> None:
        try:
            mine = engine_for(repo)  # an engine per thread, as the daemon has
            got[branch] = mine.up(branch, from_snapshot="prod").record.info["strategy"]
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=up, args=(f"race/{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(got.values()).count("spare") == 2 and len(got) == 3
    for rec in engine.list_branches():
        assert count(rec.url) == 2000
