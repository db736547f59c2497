"""The docker backend beyond the shared contract (tests/test_backend_contract.py):
scale to zero, stable ports and URLs, what a killed daemon leaves and who finds it,
the owner role, its settings. Real dockerd, the image .ci/docker builds, a btrfs
loop mount (.ci/cowfs)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backendsupport import KILLED, _die_at_docker_seal, killed
from dockersupport import remove_project, require_docker

from branchdb.daemon.backends import docker_runtime
from branchdb.daemon.backends.docker_backend import DockerBackend
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import recovery
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.gc.collector import collect

pytestmark = [pytest.mark.docker]

MIGRATION = "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER);\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    image, cow = require_docker()
    project = f"d{uuid.uuid4().hex[:10]}"
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "001_orders.sql").write_text(MIGRATION)
    raw = {
        "project": {"name": project},
        "database": {"backend": "docker"},
        "migrations": {"dir": "migrations", "format": "sql"},
        "docker": {"image": image, "dir": str(cow / "contract")},
    }
    eng = Engine(from_mapping(raw, tmp_path, None))
    try:
        yield eng
    finally:
        eng.store.close()
        remove_project(project)
        shutil.rmtree(cow / "contract" / project, ignore_errors=True)


def backend(eng: Engine) -> DockerBackend:
    assert isinstance(eng.backend, DockerBackend)
    return eng.backend


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as c:
        cur = c.execute(sql)
        return list(cur.fetchall()) if cur.description else []


def test_scale_to_zero_and_back(engine: Engine) -> None:
    b = backend(engine)
    rec = engine.up("feature/idle").record
    url = rec.url
    query(url, "INSERT INTO orders VALUES (1, 42)")
    assert engine.running(rec) is True
    assert engine.status("feature/idle").running is True

    # An open session keeps it running however long ago anything began.
    with psycopg.connect(url):
        assert b.stop_idle(0) == [] and b.stop_idle(0) == []
    # The first idle sample starts the clock; the next one past stop_after stops.
    assert b.stop_idle(3600) == []
    assert b.stop_idle(0) == [rec.database]
    assert b.state(rec.database) == "stopped"
    with pytest.raises(psycopg.OperationalError):
        query(url, "SELECT 1")
    st = engine.status("feature/idle")
    assert st.exists and st.running is False and st.problem
    assert "stopped" in st.problem
    assert engine.running(rec) is False  # status did not start it
    assert b.activity([rec.database])[rec.database][1] == 0

    # url (and up, env, the API's GET/PUT: Engine.use and Engine.up) start it.
    assert engine.url("feature/idle") == url
    assert b.state(rec.database) == "running"
    assert query(url, "SELECT total FROM orders") == [(42,)]  # data kept
    b.stop_idle(0)
    b.stop_idle(0)
    assert b.state(rec.database) == "stopped"
    up = engine.up("feature/idle")
    assert up.up_to_date or up.applied == ()
    assert b.state(rec.database) == "running"
    assert query(url, "SELECT count(*) FROM orders") == [(1,)]


def test_handing_the_url_out_restarts_the_idle_clock(engine: Engine) -> None:
    b = backend(engine)
    rec = engine.up("feature/clock").record
    t0 = time.time()
    assert b.stop_idle(3600, t0 - 3700) == []  # idle since over an hour ago
    engine.url("feature/clock")  # a client is about to connect
    assert b.stop_idle(3600, t0 + 10) == []
    assert b.state(rec.database) == "running"
    # Without a hand-out, the same hour of idleness stops it.
    assert b.stop_idle(3600, t0 + 3700) == [rec.database]
    assert b.state(rec.database) == "stopped"


def test_the_url_is_an_owner_not_a_superuser_and_survives_resets(
    engine: Engine,
) -> None:
    b = backend(engine)
    rec = engine.up("feature/roles").record
    conn = psycopg.conninfo.conninfo_to_dict(rec.url)
    assert conn["user"] == "app" and conn["host"] == "127.0.0.1"
    low, high = engine.config.docker.ports
    assert low <= int(conn["port"]) <= high == 55999
    assert rec.info["port"] == int(conn["port"])
    assert query(rec.url, "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'") == [
        (False,)
    ]
    # The superuser has a password of its own, kept in the record only.
    su = dict(conn, user="postgres", password=rec.info["superuser_password"])
    assert query(psycopg.conninfo.make_conninfo(**su), "SELECT 1") == [(1,)]
    with pytest.raises(psycopg.OperationalError):
        query(psycopg.conninfo.make_conninfo(**dict(su, password="wrong")), "SELECT 1")
    # The branch's role cannot reach what marks it: the container's labels.
    c = docker_runtime.find(rec.database)
    assert c is not None and docker_runtime.label(c, "port") == conn["port"]
    reset = engine.reset("feature/roles").record
    assert reset.url == rec.url and reset.info["port"] == rec.info["port"]
    # A restarted daemon (a new backend) sees the same branch and URL.
    again = Engine(engine.config)
    try:
        assert again.url("feature/roles") == rec.url
        assert again.backend.exists(rec.database)
    finally:
        again.store.close()
    assert query(rec.url, "SELECT count(*) FROM orders") == [(0,)]
    assert b.list_owned() == [rec.database]


def test_a_killed_daemon_leaves_nothing_unfound(engine: Engine) -> None:
    """Killed between the container's start and its seal: the next start's
    recovery removes the temp; a sealed container without a record (killed after
    the seal, before the record) is an orphan garbage collection deletes."""
    b = backend(engine)
    config = engine.config
    killed(_die_at_docker_seal, lambda: Engine(config).up("feature/killed"))
    left = docker_runtime.containers(engine.project)
    assert [docker_runtime.name_of(c)[:5] for c in left] == ["bdbt_"]
    report = recovery.recover(engine)
    assert report.cleaned == ["feature/killed"]
    assert docker_runtime.containers(engine.project) == []
    assert docker_runtime.volumes(engine.project) == []
    assert list(b.branches.iterdir()) == []

    # Killed earlier: its labelled volume and folder exist, no container yet.
    def die_at_container() -> None:
        def create(*a: Any, **kw: Any) -> None:
            os._exit(KILLED)

        docker_runtime.create_postgres = create  # type: ignore[assignment]

    killed(die_at_container, lambda: Engine(config).up("feature/early"))
    assert docker_runtime.containers(engine.project) == []
    assert [v.name[:5] for v in docker_runtime.volumes(engine.project)] == ["bdbv_"]
    assert len(list(b.branches.iterdir())) == 1
    assert recovery.recover(engine).cleaned == ["feature/early"]
    assert docker_runtime.volumes(engine.project) == []
    assert list(b.branches.iterdir()) == []

    # Sealed, never recorded: what the store does not know, GC finds.
    database = b.database_name("feature/unrecorded")
    b.store_id = engine.store.store_id
    b.create(database, branch="feature/unrecorded", snapshot=None, info={})
    start = time.time()
    first = collect(engine, dry_run=False)
    assert [(c.reason, c.database) for c in first.candidates] == [("orphan", database)]
    engine.clock = lambda: start + 2 * 86400  # past the grace period
    second = collect(engine, dry_run=False)
    assert [c.database for c in second.deleted] == [database]
    assert docker_runtime.containers(engine.project) == []
    assert docker_runtime.volumes(engine.project) == []


def test_unlabelled_containers_are_never_touched(engine: Engine) -> None:
    b = backend(engine)
    name = b.database_name("feature/theirs")
    client = docker_runtime.client()
    c = client.containers.create(
        engine.config.docker.image, command=["true"], name=name, network_mode="none"
    )
    try:
        assert not b.exists(name) and b.list_owned() == []
        with pytest.raises(Exception, match="never touches it"):
            b.create(name, branch="feature/theirs", snapshot=None, info={})
        b.stop_idle(0)
        engine.stop_idle()
        c.reload()
        assert c.status == "created"  # still there, untouched
    finally:
        c.remove(force=True)


def test_docker_settings_are_checked(tmp_path: Path) -> None:
    def parse(docker: dict[str, Any], backend: str = "docker") -> Any:
        raw = {
            "project": {"name": "p"},
            "database": {"backend": backend},
            "docker": docker,
        }
        return from_mapping(raw, tmp_path, None)

    got = parse({"ports": "60000-60010", "stop_after": "30m", "dir": "cow"})
    assert got.docker.ports == (60000, 60010) and got.docker.stop_after == 1800
    assert got.docker.dir == (tmp_path / "cow").resolve()
    assert parse({}).docker.image == "postgres:15"
    for bad, msg in (
        ({"ports": "1-2"}, "docker.ports"),
        ({"ports": "60010-60000"}, "docker.ports"),
        ({"listen": "localhost"}, "docker.listen"),
        ({"stop_after": "soon"}, "stop_after"),
        ({"image": "bad image"}, "docker.image"),
        ({"port": "1"}, "unknown key"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse(bad)
    with pytest.raises(ConfigError, match=r"\[docker\] needs"):
        parse({"stop_after": "1m"}, backend="postgres")


def test_quota_evicts_a_container(tmp_path: Path) -> None:
    image, cow = require_docker()
    project = f"q{uuid.uuid4().hex[:10]}"
    raw = {
        "project": {"name": project},
        "database": {"backend": "docker"},
        "branches": {"max_branches": 1, "on_limit": "evict", "protected": []},
        "docker": {"image": image, "dir": str(cow / "contract")},
    }
    eng = Engine(from_mapping(raw, tmp_path, None))
    try:
        first = eng.up("feature/old").record
        second = eng.up("feature/new")
        assert second.evicted == ("feature/old",)
        assert backend(eng).list_owned() == [second.record.database]
        assert not backend(eng).exists(first.database)
    finally:
        eng.store.close()
        remove_project(project)
        shutil.rmtree(cow / "contract" / project, ignore_errors=True)


def test_the_daemon_schedules_stopping_idle_branches(repo: Path) -> None:
    import asyncio

    from branchdb.daemon.api import settings as daemon_config
    from branchdb.daemon.api.deps import Daemon
    from branchdb.daemon.api.scheduler import start_scheduler

    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[database]\nbackend = "docker"\n'
        '[docker]\nstop_after = "30m"\n'
    )
    settings = daemon_config.load(cwd=repo)

    async def jobs() -> list[tuple[str, float]]:
        scheduler = start_scheduler(Daemon(settings), 0)
        try:
            return sorted(
                (j.id, j.trigger.interval.total_seconds()) for j in scheduler.get_jobs()
            )
        finally:
            scheduler.shutdown(wait=False)

    # Sampled every stop_after / 10 (at most a minute): the clock starts at the
    # first sample that sees a branch idle.
    assert asyncio.run(jobs()) == [("stop-idle:shop", 60.0)]
