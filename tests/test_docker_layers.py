"""The docker backend's layered clones (``[docker] clone``), beyond the contract
suite (which runs them as ``docker-overlay2``): ``auto`` falls back to them on a
folder without reflinks, and says what it costs; a snapshot is an image, a branch a
container of it whose data lives in its own writable layer; reset, delete,
``snapshot rm`` and a killed daemon. Real dockerd, the image .ci/docker builds, and
a folder on the machine's ordinary file system (ext4 here)."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dockersupport import remove_project, require_docker
from pgcluster import Cluster

from branchdb.daemon.backends import cow, docker_layers, docker_runtime
from branchdb.daemon.backends.docker_backend import DockerBackend
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import recovery
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import ConfigError, Refused

pytestmark = [pytest.mark.docker, pytest.mark.postgres]


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as c:
        cur = c.execute(sql)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []


@pytest.fixture
def source(pg_cluster: Cluster) -> Iterator[str]:
    name = f"src_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_cluster.url(name), autocommit=True) as c:
        c.execute("CREATE TABLE users (id serial PRIMARY KEY, email text)")
        c.execute(
            "INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1, 3) g"
        )
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on the docker backend with ``clone`` left at ``auto`` and ``dir``
    on a folder without reflinks."""
    image, plain = require_docker(cow_dir=False)
    if cow.supports_reflink(plain):
        pytest.skip(f"{plain} has reflinks: auto would not fall back here")
    project = f"o{uuid.uuid4().hex[:10]}"
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "001.sql").write_text("CREATE TABLE orders (id int);\n")
    raw = {
        "project": {"name": project},
        "database": {"backend": "docker"},
        "migrations": {"dir": "migrations", "format": "sql"},
        "docker": {"image": image, "dir": str(plain)},
    }
    eng = Engine(from_mapping(raw, tmp_path, None))
    try:
        yield eng
    finally:
        eng.store.close()
        remove_project(project)
        shutil.rmtree(plain / project, ignore_errors=True)


def backend(eng: Engine) -> DockerBackend:
    assert isinstance(eng.backend, DockerBackend)
    return eng.backend


def images(project: str) -> list[Any]:
    flt = {"label": f"branchdb.project={project}"}
    return list(docker_runtime.client().images.list(filters=flt))


def test_auto_falls_back_to_layers_and_says_what_it_costs(
    engine: Engine, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    b = backend(engine)
    docker_layers._warned.discard(str(b.root))
    with caplog.at_level(logging.WARNING, logger="branchdb.docker"):
        fresh = engine.up("feature/fresh").record
        engine.up("feature/fresh2")
    warned = [r.getMessage() for r in caplog.records if r.name == "branchdb.docker"]
    assert len(warned) == 1 and "\n" not in warned[0]  # once, one line
    assert "overlay2" in warned[0] and "even a read, copies all" in warned[0]
    assert b.clone_mode() == "overlay2" and fresh.info["strategy"] == "fresh"
    c = docker_runtime.find(fresh.database)
    assert c is not None and docker_runtime.label(c, "clone") == "overlay2"
    assert {"orders", "_branchdb_migrations"} <= {
        r[0]
        for r in query(
            fresh.url,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public'",
        )
    }

    snap = engine.snapshot_create("prod", source)
    assert snap.info["clone"] == "overlay2"
    img = docker_runtime.client().images.get(snap.location)
    assert snap.location in img.tags and snap.location.endswith(":v1")
    assert docker_runtime.label(img, "snapshot") == "prod"
    assert not (b.snapshots / "prod" / "v1").exists()  # no directory: an image
    rec = engine.up("feature/b", from_snapshot="prod").record
    assert rec.info["strategy"] == "overlay2"
    assert query(rec.url, "SELECT count(*) FROM users") == [(3,)]  # the snapshot's

    # The data directory is in the container's own layer: its only mount is the
    # socket folder (a labelled volume), and the host holds no copy of the data.
    c = docker_runtime.find(rec.database)
    assert c is not None
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    assert set(mounts) == {docker_runtime.SOCKET_DIR}
    assert mounts[docker_runtime.SOCKET_DIR]["Name"].startswith("bdbv_")
    folder = Path(str(docker_runtime.label(c, "dir")))
    kept = {p.name for p in folder.iterdir()}
    assert "run" in kept and kept <= {"run", "wake.lock", "idle.json", "activity.json"}

    before = b.size_bytes(rec.database)
    query(rec.url, "INSERT INTO users (email) SELECT md5(g::text) FROM "
                   "generate_series(1, 20000) g")  # fmt: skip
    assert query(rec.url, "SELECT count(*) FROM users") == [(20003,)]
    assert b.size_bytes(rec.database) > before  # the container's SizeRw

    # reset: a new container from the image, same name, port and passwords.
    reset = engine.reset("feature/b").record
    assert reset.url == rec.url
    assert query(rec.url, "SELECT count(*) FROM users") == [(3,)]
    new = docker_runtime.find(rec.database)
    assert new is not None and new.id != c.id

    engine.down("feature/b")
    assert docker_runtime.find(rec.database) is None
    assert not folder.exists()
    assert rec.database not in b.list_owned()
    engine.snapshot_rm("prod")
    assert images(engine.project) == []


def test_snapshot_rm_keeps_layers_a_branch_uses_until_it_goes(
    engine: Engine, source: str
) -> None:
    """Backend level (the engine refuses to remove a snapshot a recorded branch
    came from): an orphan branch of a removed snapshot keeps working; the image
    goes with the last container that uses it."""
    b = backend(engine)
    snap = b.snapshot_create("prod", 1, source)
    running = b.database_name("feature/running")
    stopped = b.database_name("feature/stopped")
    info_r = b.create(running, branch="feature/running", snapshot=snap, info={})
    info_s = b.create(stopped, branch="feature/stopped", snapshot=snap, info={})
    c = docker_runtime.find(stopped)
    assert c is not None
    docker_runtime.stop(c)

    b.snapshot_drop(snap)
    tags = [t for i in images(engine.project) for t in i.tags]
    assert tags == []  # untagged at once: no new branch can come from it
    # Docker keeps the image a running container uses (dangling, still labelled).
    assert [docker_runtime.label(i, "kind") for i in images(engine.project)] == [
        "snapshot"
    ]
    assert query(info_r["url"], "SELECT count(*) FROM users") == [(3,)]
    assert b.wake(stopped, info_s)  # a stopped one still starts, on its layers
    assert query(info_s["url"], "SELECT count(*) FROM users") == [(3,)]
    b.drop(stopped, info_s)
    assert images(engine.project) != []  # the running one still uses it
    b.drop(running, info_r)
    assert images(engine.project) == []
    b.snapshot_drop(snap)  # idempotent


def test_a_snapshot_image_without_a_record_is_recovered(
    engine: Engine, source: str
) -> None:
    """Killed after the commit (the seal), before the record: the next start's
    recovery removes the image no record names, and the version is free again."""
    b = backend(engine)
    engine.snapshot_create("prod", source)
    b.snapshot_create("prod", 2, source)  # sealed, never recorded
    with pytest.raises(Refused, match="already exists"):
        b.snapshot_create("prod", 2, source)
    assert len(images(engine.project)) == 2
    with engine.lock("snapshot\0prod"):  # a live create would hold it
        other = Engine(engine.config, backend=b)
        try:
            assert b.recover_temps(other).busy == [_ref(engine, 2)]
        finally:
            other.store.close()
    recovery.recover(engine)
    assert [t for i in images(engine.project) for t in i.tags] == [_ref(engine, 1)]
    assert engine.snapshot_create("prod", source).version == 2
    engine.snapshot_rm("prod")
    assert images(engine.project) == []


def _ref(engine: Engine, version: int) -> str:
    from branchdb.daemon.core import naming

    return naming.docker_snapshot_image(engine.project, "prod", version)


def test_scale_to_zero_on_layers(engine: Engine) -> None:
    b = backend(engine)
    rec = engine.up("feature/idle").record
    query(rec.url, "INSERT INTO orders VALUES (7)")
    assert b.stop_idle(3600) == []
    assert b.stop_idle(0) == [rec.database]
    assert b.state(rec.database) == "stopped"
    assert engine.url("feature/idle") == rec.url
    assert query(rec.url, "SELECT id FROM orders") == [(7,)]  # its layer kept


def test_clone_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(docker: dict[str, Any]) -> Any:
        raw = {
            "project": {"name": "p"},
            "database": {"backend": "docker"},
            "docker": docker,
        }
        return from_mapping(raw, tmp_path, None).docker

    assert parse({}).clone == "auto"
    assert parse({"clone": "overlay2"}).clone == "overlay2"
    with pytest.raises(ConfigError, match=r"docker\.clone 'zfs' must be one of") as e:
        parse({"clone": "zfs"})
    assert "\n" not in str(e.value)
    monkeypatch.setenv("BRANCHDB_DOCKER_CLONE", "reflink")
    assert parse({"clone": "overlay2"}).clone == "reflink"
    monkeypatch.setenv("BRANCHDB_DOCKER_CLONE", "layers")
    with pytest.raises(ConfigError, match="BRANCHDB_DOCKER_CLONE") as e:
        parse({})
    # The wrong value is named where it was written: the variable, not the file.
    assert str(e.value).startswith("BRANCHDB_DOCKER_CLONE 'layers' must be one of")


def test_reflink_on_a_folder_without_reflinks_is_refused(tmp_path: Path) -> None:
    image, plain = require_docker(cow_dir=False)
    if cow.supports_reflink(plain):
        pytest.skip(f"{plain} has reflinks")
    raw = {
        "project": {"name": "p"},
        "database": {"backend": "docker"},
        "docker": {"image": image, "dir": str(plain), "clone": "reflink"},
    }
    b = DockerBackend(from_mapping(raw, tmp_path, None))
    for attempt in (
        lambda: b.create(b.database_name("x"), branch="x", snapshot=None, info={}),
        lambda: b.snapshot_create("prod", 1, "postgresql://127.0.0.1:1/none"),
    ):
        with pytest.raises(ConfigError, match="copy-on-write") as e:
            attempt()
        assert "\n" not in str(e.value)


def test_a_killed_build_of_the_empty_cluster_is_removed_at_start(
    engine: Engine,
) -> None:
    """What a base build killed mid-way leaves (its labelled build container and
    folder under ``base/``) goes at the next start's recovery, unless a build
    holds ``base/.lock``."""
    import fcntl
    import os

    b = backend(engine)
    base = b.root / "base"
    base.mkdir(parents=True, exist_ok=True)
    folder = base / f".tmp-{uuid.uuid4().hex[:12]}"
    (folder / "run").mkdir(parents=True)
    marks = docker_runtime.labels("-", "base", "x", dir=str(folder))
    c = docker_runtime.client().containers.create(
        engine.config.docker.image, command=["true"], labels=marks,
        name=docker_runtime.TMP + uuid.uuid4().hex[:12], network_mode="none",
    )  # fmt: skip
    try:
        fd = os.open(base / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:  # a build runs: nothing of it is touched
            fcntl.flock(fd, fcntl.LOCK_EX)
            recovery.recover(engine)
            assert folder.is_dir()
            c.reload()
        finally:
            os.close(fd)
        recovery.recover(engine)
        assert not folder.exists()
        assert docker_runtime.find(str(c.name)) is None
    finally:
        docker_runtime.remove(c)
