"""One contract every backend passes: the in-process fake, libsql, postgres and
sqld (libsql through a libsql server), docker (a PostgreSQL container per branch).

Each test runs once per backend, through a *harness* (tests/backendsupport.py) that
sees what the backend made from outside it — files on disk, ``pg_database`` and
``pg_roles`` on a real PostgreSQL 15 cluster, the fake's dict — and fabricates real
sources, foreign databases and the leftovers of creates killed for real (a forked
child exits where the backend would rename its temp).

Adding a backend: its module, its entry in ``backends.REGISTRY``, a harness in
tests/backendsupport.py and its name in ``HARNESSES`` here;
``test_every_registered_backend_has_a_harness`` insists.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backendsupport import (
    DockerHarness,
    DockerOverlayHarness,
    FakeHarness,
    Harness,
    LibsqlHarness,
    PostgresHarness,
    SqldHarness,
)

from branchdb.daemon.backends import REGISTRY, STAT_EXISTS, fake, get_backend
from branchdb.daemon.backends.fake import FakeBackend
from branchdb.daemon.backends.libsql_layout import libsql_path
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import naming, recovery
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import ConfigError, NotFound, Refused
from branchdb.daemon.core.models import BranchRecord, SnapshotRecord


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


HARNESSES = [
    "fake",
    "libsql",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("sqld", marks=pytest.mark.node),
    pytest.param("docker", marks=[pytest.mark.postgres, pytest.mark.docker]),
    # The same backend with Docker's own layers (the fallback without btrfs/XFS).
    pytest.param("docker-overlay2", marks=[pytest.mark.postgres, pytest.mark.docker]),
]


@pytest.fixture(params=HARNESSES)
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    monkeypatch.delenv("BRANCHDB_PG_URL", raising=False)
    harness: Harness
    if request.param == "fake":
        harness = FakeHarness(tmp_path)
    elif request.param == "libsql":
        harness = LibsqlHarness(tmp_path)
    elif request.param == "sqld":
        harness = SqldHarness(tmp_path)
    elif request.param == "docker":
        harness = DockerHarness(tmp_path, request.getfixturevalue("pg_cluster"))
    elif request.param == "docker-overlay2":
        cluster = request.getfixturevalue("pg_cluster")
        harness = DockerOverlayHarness(tmp_path, cluster)
    else:
        harness = PostgresHarness(tmp_path, request.getfixturevalue("pg_cluster"))
    try:
        yield harness
    finally:
        harness.cleanup()


@pytest.fixture
def engine(h: Harness) -> Iterator[Engine]:
    eng = Engine(h.config, backend=h.backend)
    try:
        yield eng
    finally:
        eng.store.close()


def create(
    h: Harness, branch: str, snapshot: SnapshotRecord | None = None
) -> tuple[str, dict[str, Any]]:
    database = h.backend.database_name(branch)
    return database, h.backend.create(
        database, branch=branch, snapshot=snapshot, info={}
    )


# ---------------------------------------------------------------- the contract
def test_every_registered_backend_has_a_harness() -> None:
    names = {p if isinstance(p, str) else p.values[0] for p in HARNESSES}
    # A variant of a backend is named <backend>-<variant> (docker-overlay2).
    assert {str(n).partition("-")[0] for n in names} == set(REGISTRY)


def test_the_fake_is_configured_in_process_only(tmp_path: Path) -> None:
    # Its databases die with the process: branchdb.toml cannot choose it.
    raw: dict[str, Any] = {"project": {"name": "p"}, "database": {"backend": "fake"}}
    with pytest.raises(ConfigError, match="fake"):
        from_mapping(raw, tmp_path, None)
    config = from_mapping({"project": {"name": "p"}}, tmp_path, None)
    with pytest.raises(ConfigError, match=r"fake\.configure"):
        FakeBackend(config)  # records would name another backend than GC looks for
    assert isinstance(get_backend(fake.configure(config)), FakeBackend)


def test_capabilities(h: Harness) -> None:
    b = h.backend
    assert type(get_backend(h.config)) is type(b)  # the registry builds this class
    assert b.name == h.name and b.dialect in ("sqlite", "postgres")
    for flag in (b.exists_is_stat, b.samples_activity, b.copy_on_write):
        assert isinstance(flag, bool)
    # The hook's fast path decides on the name alone, without importing the class.
    assert (b.name in STAT_EXISTS) == b.exists_is_stat


def test_stat_existence_is_what_the_fast_path_sees(h: Harness) -> None:
    # The hook (cli/fast.py) stats libsql_path() for every STAT_EXISTS backend.
    if not h.backend.exists_is_stat:
        # The fast path must then never trust a file: it asks nothing of this
        # backend (a server round trip would break the hook's budget).
        assert h.name not in STAT_EXISTS
        return
    database, info = create(h, "feature/stat")

    def seen() -> bool:
        return os.path.exists(libsql_path(str(h.config.data_dir), database))

    assert seen() and h.backend.exists(database)
    h.backend.drop(database, info)
    assert not seen() and not h.backend.exists(database)


def test_database_name(h: Harness) -> None:
    b = h.backend
    again = get_backend(h.config)
    branches = [
        "main",
        "feature/x",
        "feature-x",
        "Feature/X",
        "feature/x/",
        "fix/ünïcode",
        "fix/unicode",
        "a" * 255,
        "a" * 254 + "b",
    ]
    names = [b.database_name(x) for x in branches]
    assert names == [again.database_name(x) for x in branches]  # deterministic
    assert len(set(names)) == len(names)  # distinct per branch
    for name in names:
        assert len(name.encode()) <= naming.PG_MAX_IDENT
        assert re.fullmatch(r"[a-z0-9_-]+", name) and name.startswith(naming.PREFIX)


def test_create_fresh_connect_and_drop(h: Harness) -> None:
    b = h.backend
    before = h.physical()
    database, info = create(h, "feature/fresh")
    assert isinstance(info["url"], str) and info["url"]
    assert b.exists(database) and b.list_owned() == [database]
    assert h.where(database) in h.physical() - before
    mark = h.marker(database)
    assert mark and (mark["project"], mark["kind"]) == (h.project, "branch")
    assert h.tables(database) == set()
    with pytest.raises(Refused):
        b.create(database, branch="feature/fresh", snapshot=None, info={})

    session = b.connect(database, info)
    try:
        assert session.dialect == b.dialect
        session.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        with session.transaction() as tx:
            tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", [1, "one"])
        with pytest.raises(ZeroDivisionError), session.transaction() as tx:
            tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", [2, "rolled back"])
            raise ZeroDivisionError
        assert session.execute("SELECT v FROM t") == [("one",)]
    finally:
        session.close()
    assert h.tables(database) == {"t"} and h.count(database, "t") == 1  # outside view

    b.drop(database, info)
    assert not b.exists(database) and b.list_owned() == []
    assert h.physical() == before  # nothing left: no file, database or role
    b.drop(database, info)  # idempotent
    b.drop(database, {})
    # The name is free again; a new create starts empty.
    database2, info2 = create(h, "feature/fresh")
    assert database2 == database and h.tables(database) == set()
    b.drop(database, info2)


def test_clone_from_a_snapshot(h: Harness) -> None:
    b = h.backend
    source = h.source()
    snap = b.snapshot_create("prod", 1, source)
    assert (snap.name, snap.version, snap.backend) == ("prod", 1, b.name)
    assert snap.size_bytes > 0
    assert b.list_owned() == []  # a snapshot is never a branch database
    assert not b.exists(snap.location)
    with pytest.raises(Refused):
        b.snapshot_create("prod", 1, source)

    one, info1 = create(h, "feature/one", snap)
    two, info2 = create(h, "feature/two", snap)
    assert info1["strategy"] != "fresh"
    assert h.count(one, "users") == 3 and h.count(two, "users") == 3
    s = b.connect(one, info1)
    try:
        s.execute("INSERT INTO users (email) VALUES (?)", ["only in one"])
        s.execute("CREATE TABLE extra (id INTEGER)")
    finally:
        s.close()
    # Clones are independent of each other and of the snapshot.
    assert h.count(one, "users") == 4 and h.count(two, "users") == 3
    assert "extra" not in h.tables(two)
    three, info3 = create(h, "feature/three", snap)
    assert h.count(three, "users") == 3
    assert b.list_owned() == sorted([one, two, three])

    for database, info in ((one, info1), (two, info2), (three, info3)):
        b.drop(database, info)
    b.snapshot_drop(snap)
    b.snapshot_drop(snap)  # idempotent
    before = h.physical()
    with pytest.raises(NotFound):
        create(h, "feature/late", snap)
    assert h.physical() == before  # a failed create leaves nothing
    assert b.list_owned() == []


def test_foreign_databases_are_never_listed_or_dropped(h: Harness) -> None:
    b = h.backend
    foreign = h.make_foreign()
    theirs = h.physical()
    database, info = create(h, "feature/mine")
    assert b.list_owned() == [database]
    for name in foreign:
        assert not b.exists(name)
        # It is there but not provably ours: a drop refuses rather than pretend.
        with pytest.raises(Refused, match="nothing was"):
            b.drop(name, {})
    assert set(b.activity()) <= {database}
    ctx = Engine(h.config, backend=b)
    try:
        b.recover_temps(ctx)
    finally:
        ctx.store.close()
    for name in foreign:
        b.drop_leftovers(name, "foreign", {})
    b.drop(database, info)
    assert h.physical() == theirs  # every foreign one is still there
    assert b.list_owned() == []


def test_the_marker_names_the_store_that_made_it(h: Harness) -> None:
    b = h.backend
    ours, theirs = "a" * 32, "b" * 32
    b.store_id = ours
    database, info = create(h, "feature/stored")
    b.store_id = None  # as before stores had ids
    older, older_info = create(h, "feature/older")
    assert b.list_owned() == sorted([database, older])
    assert b.list_owned(store=ours) == [database]  # never the one without a store
    assert b.list_owned(store=theirs) == []
    b.store_id = theirs
    with pytest.raises(Refused, match="another branchdb state store"):
        b.drop(database, info)
    assert b.exists(database)
    b.drop(older, older_info)  # no store in its marker: its record's holder drops it
    b.store_id = ours
    b.drop(database, info)
    assert b.list_owned() == []


def test_size_bytes_grows_with_data(h: Harness) -> None:
    b = h.backend
    database, info = create(h, "feature/size")
    empty = b.size_bytes(database)
    assert empty >= 0
    s = b.connect(database, info)
    try:
        s.execute("CREATE TABLE blobs (b TEXT)")
        for _ in range(20):
            # Random: PostgreSQL would compress a repeated character away.
            s.execute("INSERT INTO blobs (b) VALUES (?)", [os.urandom(50_000).hex()])
    finally:
        s.close()
    assert b.size_bytes(database) >= empty + 1_000_000
    b.drop(database, info)


def test_activity_matches_the_capability(h: Harness) -> None:
    b = h.backend
    database, info = create(h, "feature/busy")
    idle, _ = create(h, "feature/idle")
    h.make_foreign()
    if not b.samples_activity:
        assert b.activity() == {}
        b.drop(database, info)
        return
    start = b.activity()
    assert set(start) == {database, idle}
    assert start[database][1] == 0  # no session open
    s = b.connect(database, info)
    try:
        s.execute("CREATE TABLE t (id INTEGER)")
        for i in range(5):
            s.execute("INSERT INTO t VALUES (?)", [i])
        assert b.activity([database])[database][1] == 1  # one session open now
    finally:
        s.close()
    # The counter moves with client use only (a session begun: never autovacuum,
    # see gc.activity); PostgreSQL's statistics arrive when the process has gone.
    wait_for(lambda: b.activity()[database] >= (start[database][0] + 1, 0))
    now = b.activity()
    assert now[database][1] == 0 and now[idle][1] == 0
    assert set(b.activity([idle])) == {idle}
    b.drop(database, info)


def test_interrupted_creates_are_recovered(h: Harness, engine: Engine) -> None:
    b = h.backend
    before = h.physical()
    # A create killed with no record (the engine had not written it yet, or it
    # was forgotten since): nobody can be building it.
    lost = b.database_name("feature/lost")
    h.kill_create(lost, "feature/lost")
    lost_temps = h.temps()
    # A create killed whose branch a live process holds: its temp must stay.
    held = b.database_name("feature/held")
    now = time.time()
    engine.store.put_branch(
        BranchRecord(
            h.project, "feature/held", held, b.name, "fresh", "creating", now, now
        )
    )
    h.kill_create(held, "feature/held")
    held_temps = h.temps() - lost_temps
    assert lost_temps and held_temps
    assert not b.exists(lost) and not b.exists(held)
    assert b.list_owned() == []  # a temp is never a branch database

    with engine.lock("feature/held"):
        other = Engine(h.config, backend=b)  # another process's view
        try:
            got = b.recover_temps(other)
        finally:
            other.store.close()
    assert (set(got.dropped), set(got.busy)) == (lost_temps, held_temps)
    assert h.temps() == held_temps

    # What recovery does for each branch, under the branch's lock.
    for branch, database in (("feature/held", held), ("feature/lost", lost)):
        with engine.lock(branch):
            b.drop(database, b.drop_leftovers(database, branch, {}))
    assert h.physical() == before  # temps, and whatever else a create made first
    assert b.recover_temps(engine) == ([], [])  # idempotent

    # The name is free: the database can be built again.
    database, info = create(h, "feature/lost")
    assert database == lost and b.exists(lost)
    b.drop(lost, info)
    assert h.physical() == before


def test_interrupted_snapshot_is_recovered_under_its_lock(
    h: Harness, engine: Engine
) -> None:
    b = h.backend
    before = h.physical()
    source = h.source()
    engine.snapshot_create("prod", source)
    h.kill_snapshot("prod", 2, source)
    temps = h.temps()
    assert temps
    with engine.lock("snapshot\0prod"):
        other = Engine(h.config, backend=b)
        try:
            assert b.recover_temps(other) == ([], list(temps))
        finally:
            other.store.close()
    assert b.recover_temps(engine) == (list(temps), [])
    assert h.temps() == set()
    v2 = engine.snapshot_create("prod", source)  # the version is free again
    assert v2.version == 2
    engine.snapshot_rm("prod")
    assert h.physical() == before


def test_sanitized_snapshot(h: Harness, engine: Engine) -> None:
    (h.root / "sanitize.toml").write_text(
        'salt = "pepper"\n[tables.users]\ncolumns.email = "email"\n'
    )
    snap = engine.snapshot_create("safe", h.source(), rules_path="sanitize.toml")
    assert snap.info["sanitize"]["rules_applied"]
    rec = engine.up("feature/safe", from_snapshot="safe").record
    s = h.backend.connect(rec.database, rec.info)
    try:
        emails = {r[0] for r in s.execute("SELECT email FROM users")}
    finally:
        s.close()
    originals = {f"user{i}@example.com" for i in range(1, 4)}
    assert len(emails) == 3 and not emails & originals
    engine.down("feature/safe")
    engine.snapshot_rm("safe")


# ------------------------------------------------------------ the engine on it
def test_engine_verbs(h: Harness, engine: Engine) -> None:
    before = h.physical()
    up = engine.up("feature/a")
    rec = up.record
    assert up.created and up.applied == ("001_orders.sql",)
    assert rec.status == "ready" and rec.backend == h.name
    assert {"orders", "_branchdb_migrations"} <= h.tables(rec.database)
    again = engine.up("feature/a")
    assert not again.created and again.applied == ()

    s = h.backend.connect(rec.database, rec.info)
    try:
        s.execute("INSERT INTO orders (id, total) VALUES (?, ?)", [1, 5])
    finally:
        s.close()
    assert h.count(rec.database, "orders") == 1
    reset = engine.reset("feature/a")
    assert reset.applied == ("001_orders.sql",)
    assert reset.record.url == rec.url  # same name, same credentials
    assert h.count(rec.database, "orders") == 0

    engine.snapshot_create("prod", h.source())
    b = engine.up("feature/b", from_snapshot="prod").record
    assert h.count(b.database, "users") == 3
    assert {"users", "orders"} <= h.tables(b.database)

    engine.down("feature/a")
    assert not h.backend.exists(rec.database)
    assert engine.store.get_branch(h.project, "feature/a") is None
    assert h.backend.list_owned() == [b.database]

    # Recovery: an `up` killed inside the backend's create.
    with_b = h.physical()
    h.kill_up(engine, "feature/crashed")
    crashed = engine.store.get_branch(h.project, "feature/crashed")
    assert crashed is not None and crashed.status == "creating"
    assert h.physical() != with_b
    report = recovery.recover(engine)
    assert report.cleaned == ["feature/crashed"]
    assert h.physical() == with_b
    assert engine.store.get_branch(h.project, "feature/crashed") is None
    assert not recovery.recover(engine)  # nothing more to do
    assert engine.up("feature/crashed").created

    engine.down("feature/b")
    engine.down("feature/crashed")
    engine.snapshot_rm("prod")
    assert h.physical() == before
