"""The state-store contract: every case runs on the SQLite and the PostgreSQL store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from storesupport import KINDS, Backing, backing

from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
from branchdb.daemon.store import open_store, schema
from branchdb.daemon.store.base import AuditEntry, Store
from branchdb.daemon.store.postgres_store import PostgresStore
from branchdb.daemon.store.sqlite_store import SqliteStore

# Names that would break naive SQL text building or placeholder translation.
ODD = ["feature/x", 'it\'s "quoted" %s ? %(x)s', "ünïcødé/分支"]


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    cluster = (
        request.getfixturevalue("pg_cluster") if request.param == "postgres" else None
    )
    with backing(request.param, tmp_path, cluster) as b:
        yield b


@pytest.fixture
def store(place: Backing) -> Iterator[Store]:
    s = place.open()
    try:
        yield s
    finally:
        s.close()


def rec(branch: str, database: str | None = None, **kw: object) -> BranchRecord:
    values: dict[str, object] = {
        "project": "shop",
        "branch": branch,
        "database": database or f"db-{abs(hash(branch))}",
        "backend": "libsql",
        "source": "fresh",
        "status": "ready",
        "created_at": 100.0,
        "last_used_at": 100.5,
        "url": "postgresql://u:secret@h/db",
        "fingerprint": "fp",
        "applied": {"001.sql": "abc"},
        "info": {"k": [1, 2]},
    }
    values.update(kw)
    return BranchRecord(**values)  # type: ignore[arg-type]


def test_branch_records_round_trip(store: Store) -> None:
    for i, name in enumerate(ODD):
        store.put_branch(rec(name, f"db{i}"))
    got = store.get_branch("shop", ODD[1])
    assert got is not None
    assert (got.branch, got.database, got.applied, got.info) == (
        ODD[1],
        "db1",
        {"001.sql": "abc"},
        {"k": [1, 2]},
    )
    assert got.created_at == 100.0 and got.last_used_at == 100.5
    assert [r.branch for r in store.list_branches("shop")] == sorted(ODD)
    assert store.list_branches("other") == []
    by_db = store.branch_by_database("libsql", "db2")
    assert by_db is not None and by_db.branch == ODD[2]
    # put replaces (upsert), touch never moves backwards
    store.put_branch(rec(ODD[0], "db0", status="creating", fingerprint=""))
    again = store.get_branch("shop", ODD[0])
    assert again is not None and (again.status, again.fingerprint) == ("creating", "")
    store.touch_branch("shop", ODD[0], 500.0)
    store.touch_branch("shop", ODD[0], 200.0)
    again = store.get_branch("shop", ODD[0])
    assert again is not None and again.last_used_at == 500.0
    store.delete_branch("shop", ODD[0])
    assert store.get_branch("shop", ODD[0]) is None
    store.delete_branch("shop", ODD[0])  # idempotent


def test_database_names_are_unique_per_backend(store: Store) -> None:
    store.put_branch(rec("a", "same"))
    with pytest.raises(Exception):  # noqa: B017 - sqlite3 and psycopg raise their own
        store.put_branch(rec("b", "same"))
    assert [r.branch for r in store.list_branches("shop")] == ["a"]


def test_snapshots(store: Store) -> None:
    assert store.next_snapshot_version("shop", "prod") == 1
    for v in (1, 2):
        store.put_snapshot(
            SnapshotRecord("shop", "prod", v, "libsql", f"/s/{v}", 1.0, "src", 2**40)
        )
    store.put_snapshot(SnapshotRecord("shop", "a", 1, "libsql", "/a", 1.0, "src"))
    assert store.next_snapshot_version("shop", "prod") == 3
    assert [s.ref for s in store.list_snapshots("shop")] == ["a@1", "prod@1", "prod@2"]
    snaps = store.list_snapshots("shop", "prod")
    assert [s.size_bytes for s in snaps] == [2**40, 2**40]  # 64-bit sizes
    store.delete_snapshot("shop", "prod", 1)
    assert [s.ref for s in store.list_snapshots("shop", "prod")] == ["prod@2"]


def test_gc_marks_are_replaced_per_kind(store: Store) -> None:
    store.set_gc_marks("shop", "branch", {"a": 1.5, ODD[1]: 2.0})
    store.set_gc_marks("shop", "orphan", {"db-x": 3.0})
    assert store.gc_marks("shop", "branch") == {"a": 1.5, ODD[1]: 2.0}
    store.set_gc_marks("shop", "branch", {})
    assert store.gc_marks("shop", "branch") == {}
    assert store.gc_marks("shop", "orphan") == {"db-x": 3.0}


def test_tokens(store: Store) -> None:
    store.put_token("t1", "ci-bot", "ci", "ab" * 32, 10.0)
    store.put_token("t2", "reader", "read", "cd" * 32, 11.0)
    store.touch_token("t1", 12.0)
    rows = store.list_tokens()
    assert [(r["id"], r["scope"], r["last_used_at"]) for r in rows] == [
        ("t1", "ci", 12.0),
        ("t2", "read", None),
    ]
    assert store.delete_token("t1") is True
    assert store.delete_token("t1") is False
    assert [r["id"] for r in store.list_tokens()] == ["t2"]


def test_token_projects(store: Store) -> None:
    store.put_token("t1", "all", "ci", "ab" * 32, 10.0)
    store.put_token("t2", "two", "ci", "cd" * 32, 11.0, projects=["web", ODD[1]])
    rows = {r["id"]: r["projects"] for r in store.list_tokens()}
    assert rows == {"t1": [], "t2": sorted(["web", ODD[1]])}


def test_delivery_claims(store: Store) -> None:
    assert store.claim_delivery("github", "d1", "shop", "pull_request", 1.0)
    assert not store.claim_delivery("github", "d1", "shop", "pull_request", 2.0)
    store.finish_delivery("github", "d1", "failed", "boom", project="shop")
    # a failed delivery may be retried by its redelivery; a done one may not
    assert store.claim_delivery("github", "d1", "shop", "pull_request", 3.0)
    got = store.delivery("github", "d1", project="shop")
    assert got is not None and (got["status"], got["received_at"]) == (
        "processing",
        3.0,
    )
    store.finish_delivery("github", "d1", "done", project="shop")
    assert not store.claim_delivery("github", "d1", "shop", "pull_request", 4.0)
    assert store.delivery("github", "nope", project="shop") is None


def test_deliveries_are_keyed_per_project(store: Store) -> None:
    """One project's sender cannot pre-claim another project's delivery ids."""
    assert store.claim_delivery("github", "d1", "evil", "push", 1.0)
    store.finish_delivery("github", "d1", "done", project="evil")
    assert store.claim_delivery("github", "d1", "shop", "push", 2.0)
    store.finish_delivery("github", "d1", "failed", "boom", project="shop")
    assert (store.delivery("github", "d1", project="evil") or {})["status"] == "done"
    got = store.delivery("github", "d1", project="shop") or {}
    assert (got["status"], got["detail"]) == ("failed", "boom")
    assert not store.claim_delivery("github", "d1", "evil", "push", 3.0)


def test_concurrent_claims_of_one_delivery_have_one_winner(place: Backing) -> None:
    """Eight handles (threads or replicas) claim one delivery at once: one wins."""
    handles = [place.open() for _ in range(8)]
    start = threading.Barrier(len(handles))
    won: list[bool] = []

    def claim(s: Store) -> None:
        start.wait()
        won.append(s.claim_delivery("github", "dup", "shop", "push", 1.0))

    # A SQLite handle belongs to the thread that opened it: open inside the thread.
    if place.kind == "sqlite":
        for h in handles:
            h.close()

        def claim_sqlite() -> None:
            s = place.open()
            try:
                claim(s)
            finally:
                s.close()

        threads = [threading.Thread(target=claim_sqlite) for _ in handles]
    else:
        threads = [threading.Thread(target=claim, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if place.kind == "postgres":
        for h in handles:
            h.close()
    assert sorted(won) == [False] * 7 + [True]


def test_closed_branches(store: Store) -> None:
    store.mark_closed("shop", "feat", True, 5.0, "acme/shop#1")
    store.mark_closed("shop", "feat", False, 6.0, "acme/shop#2")  # replaces
    assert store.closed_branches("shop") == {
        "feat": {"merged": False, "closed_at": 6.0, "reference": "acme/shop#2"}
    }
    store.clear_closed("shop", "feat")
    assert store.closed_branches("shop") == {}


def test_open_pull_requests(store: Store) -> None:
    store.mark_closed("shop", "feat", False, 5.0, "acme/shop#1")
    store.mark_open("shop", "feat", 6.0, "acme/shop#1")  # reopened
    store.mark_open("shop", "feat", 7.0, "acme/shop#1")  # idempotent
    assert store.closed_branches("shop") == {}
    assert store.open_branches("shop") == {"feat": "acme/shop#1"}
    assert store.open_branches("other") == {}
    store.mark_closed("shop", "feat", True, 8.0, "acme/shop#1")  # no longer open
    assert store.open_branches("shop") == {}
    store.mark_open("shop", "feat", 9.0, "acme/shop#1")
    store.put_branch(rec("feat", "dbf"))
    store.delete_branch("shop", "feat")  # the mark goes with the record
    assert store.open_branches("shop") == {}


def test_default_heads_round_trip(store: Store) -> None:
    heads = ["a" * 40, "b" * 40]
    store.put_branch(rec("feat", "dbf", default_heads=heads))
    store.put_branch(rec("old", "dbo"))  # a record made before heads were recorded
    assert store.get_branch("shop", "feat").default_heads == heads  # type: ignore[union-attr]
    assert store.get_branch("shop", "old").default_heads == []  # type: ignore[union-attr]


def test_gc_state(store: Store) -> None:
    store.put_branch(rec(ODD[1], "db1", last_used_at=100.0))
    store.set_branch_ttl("shop", ODD[1], 3600)
    store.set_branch_ttl("shop", ODD[1], 7200)  # replaced, not duplicated
    store.set_branch_ttl("shop", "other", None)
    assert store.branch_ttls("shop") == {ODD[1]: 7200, "other": None}
    store.clear_branch_ttl("shop", "other")
    store.delete_branch("shop", ODD[1])  # the override goes with the record
    assert store.branch_ttls("shop") == {}

    store.put_branch(rec("a", "dba", last_used_at=100.0))
    store.put_branch(rec("b", "dbb", last_used_at=500.0))
    store.record_activity("shop", {"dba": 7, "dbb": 9}, {"a": 300.0, "b": 300.0}, 1.0)
    assert store.activity_samples("shop") == {"dba": 7, "dbb": 9}
    # last-used only moves forward.
    assert store.get_branch("shop", "a").last_used_at == 300.0  # type: ignore[union-attr]
    assert store.get_branch("shop", "b").last_used_at == 500.0  # type: ignore[union-attr]
    store.record_activity("shop", {"dba": 8}, {}, 2.0)
    assert store.activity_samples("shop") == {"dba": 8}

    store.bump_gc_counters("shop", {"collected": 2, "bytes": 10.5}, {"last": 5.0})
    store.bump_gc_counters("shop", {"collected": 1}, {"last": 6.0})
    assert store.gc_counters("shop") == {
        "shop": {"collected": 3.0, "bytes": 10.5, "last": 6.0}
    }

    store.add_merge_checks("shop", "m1", {"t1": True, "t2": False})
    store.add_merge_checks("shop", "m1", {"t2": True})
    assert store.merge_checks("shop", "m1") == {"t1": True, "t2": True}
    store.add_merge_checks("shop", "m2", {"t3": False})  # main moved: old answers go
    assert store.merge_checks("shop", "m1") == {}
    assert store.merge_checks("shop", "m2") == {"t3": False}


def test_audit_log_newest_first_with_filters(store: Store) -> None:
    for i, (branch, action) in enumerate(
        [("a", "create"), ("b", "create"), ("a", "migrate"), ("a", "delete")]
    ):
        store.add_audit(
            AuditEntry(float(i), "shop", branch, action, "cli:dev", "why", f"d{i}")
        )
    store.add_audit(AuditEntry(9.0, "other", "a", "create", "scheduler"))
    log = store.list_audit("shop")
    assert [(e.branch, e.action, e.detail) for e in log] == [
        ("a", "delete", "d3"),
        ("a", "migrate", "d2"),
        ("b", "create", "d1"),
        ("a", "create", "d0"),
    ]
    assert log[0].id > log[1].id > 0 and log[0].actor == "cli:dev"
    assert [e.detail for e in store.list_audit("shop", branch="a", limit=2)] == [
        "d3",
        "d2",
    ]
    assert [e.branch for e in store.list_audit("shop", action="create")] == ["b", "a"]


def test_leader_and_lock_exclude_only_when_shared(place: Backing) -> None:
    if place.kind == "sqlite":  # handles of a SQLite store live in one thread each
        one = place.open()
        with one.leader("gc") as a, one.leader("gc") as b:
            assert a and b  # one host: the engine's file locks do the excluding
        one.close()
        return
    one, two = place.open(), place.open()
    try:
        assert one.shared and two.shared
        with one.leader("gc") as first:
            assert first
            with two.leader("gc") as second:
                assert not second
            with two.leader("other") as third:
                assert third
        with two.leader("gc") as after:
            assert after
        from branchdb.daemon.core.errors import Refused

        waited: list[bool] = []
        with one.lock("branch-x"):
            busy = two.lock(
                "branch-x",
                label="shop/x",
                timeout=0.2,
                on_wait=lambda: waited.append(True),
            )
            with pytest.raises(Refused, match="still working on 'shop/x'"), busy:
                pass
            assert waited == [True]
        with two.lock("branch-x", timeout=5):
            pass
    finally:
        one.close()
        two.close()


# ------------------------------------------------------------------ versioning
def _old_store(place: Backing) -> None:
    """A store as the previous release (schema version 3) left it, with rows."""
    old = schema.SCHEMA_VERSION - 1
    rows = [
        "INSERT INTO branches (project, branch, database, backend, source, status, "
        "created_at, last_used_at) VALUES ('shop', 'old/feature', 'db-old', 'libsql', "
        "'fresh', 'ready', 1.0, 2.0)",
        "INSERT INTO api_tokens (id, name, scope, sha256, created_at) "
        "VALUES ('t0', 'old', 'admin', 'ff', 1.0)",
        "INSERT INTO webhook_deliveries (provider, delivery, project, event, status, "
        "received_at) VALUES ('github', 'd0', 'shop', 'push', 'done', 1.0)",
    ]
    if place.kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(place.path)
        for v in range(1, old + 1):
            for stmt in schema.statements(v, "sqlite"):
                db.execute(stmt)
            for stmt, args in schema.seeds(v):  # as a real older store was seeded
                db.execute(stmt, args)
        for stmt in rows:
            db.execute(stmt)
        db.execute(f"PRAGMA user_version = {old}")
        db.commit()
        db.close()
        return
    import psycopg

    assert place.url is not None
    with psycopg.connect(place.url, autocommit=True) as c, c.transaction():
        c.execute("CREATE SCHEMA branchdb")
        c.execute("SET search_path TO branchdb")
        c.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
            "upgraded_at DOUBLE PRECISION NOT NULL)"
        )
        for v in range(1, old + 1):
            for stmt in schema.statements(v, "postgres"):
                c.execute(stmt)  # type: ignore[arg-type]
            for stmt, args in schema.seeds(v):
                c.execute(stmt.replace("?", "%s"), args)  # type: ignore[arg-type]
            c.execute("INSERT INTO schema_version VALUES (%s, 0)", (v,))
        for stmt in rows:
            c.execute(stmt)  # type: ignore[arg-type]


def _version(place: Backing) -> int:
    if place.kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(place.path)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    import psycopg

    assert place.url is not None
    with psycopg.connect(place.url) as c:
        row = c.execute("SELECT max(version) FROM branchdb.schema_version").fetchone()
        assert row is not None
        return int(row[0])


def test_an_older_store_is_upgraded_in_place(place: Backing) -> None:
    _old_store(place)
    assert _version(place) == schema.SCHEMA_VERSION - 1
    s = place.open()
    try:
        kept = s.get_branch("shop", "old/feature")
        assert kept is not None and kept.database == "db-old"
        assert kept.default_heads == []  # no recorded head: GC's fallback rule
        assert [(t["id"], t["projects"]) for t in s.list_tokens()] == [("t0", [])]
        assert (s.delivery("github", "d0", project="shop") or {})["status"] == "done"
        assert not s.claim_delivery("github", "d0", "shop", "push", 2.0)
        s.add_audit(AuditEntry(3.0, "shop", "old/feature", "create", "cli:x"))
        assert len(s.list_audit("shop")) == 1
        assert len(s.store_id) == 32  # the store's id (step 7) survives upgrades
    finally:
        s.close()
    assert _version(place) == schema.SCHEMA_VERSION
    place.open().close()  # opening an up-to-date store changes nothing


def test_store_id_is_made_once_and_shared(place: Backing, tmp_path: Path) -> None:
    one, two = place.open(), place.open()
    try:
        assert len(one.store_id) == 32 and int(one.store_id, 16) >= 0
        assert two.store_id == one.store_id  # another handle (a replica): same id
    finally:
        one.close()
        two.close()
    again = place.open()
    try:
        assert again.store_id == one.store_id  # kept, not made again on open
    finally:
        again.close()
    if place.kind == "sqlite":
        other: Store = SqliteStore(tmp_path / "other" / "state.db")
    else:
        assert place.url is not None
        other = PostgresStore(place.url, "other_store")
    try:
        assert other.store_id != one.store_id
    finally:
        other.close()


def test_a_newer_store_is_refused(place: Backing) -> None:
    place.open().close()
    newer = schema.SCHEMA_VERSION + 5
    if place.kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(place.path)
        db.execute(f"PRAGMA user_version = {newer}")
        db.commit()
        db.close()
    else:
        import psycopg

        assert place.url is not None
        with psycopg.connect(place.url, autocommit=True) as c:
            c.execute("INSERT INTO branchdb.schema_version VALUES (%s, 0)", (newer,))
    with pytest.raises(ConfigError, match=f"version {newer}, newer than this branchdb"):
        place.open()


def test_open_store_picks_by_url(place: Backing) -> None:
    s = open_store(place.url, place.path)
    try:
        assert s.shared is (place.kind == "postgres")
    finally:
        s.close()
    with pytest.raises(ConfigError, match="postgresql://"):
        open_store("mysql://x@y/z", place.path)
