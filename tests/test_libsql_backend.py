"""The libsql backend on real files: fresh, clone, snapshots, markers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from branchdb.daemon.backends.libsql_backend import LibsqlBackend, clone_file
from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.errors import BackendError, NotFound, Refused


def backend(tmp_path: Path, store: str | None = None) -> LibsqlBackend:
    cfg = config_mod.from_mapping({"project": {"name": "shop"}}, tmp_path, None)
    return LibsqlBackend(cfg, store_id=store)


def make_source(path: Path, rows: int = 1000) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    db.commit()
    db.close()


def test_fresh_database_is_a_real_sqlite_file(tmp_path: Path) -> None:
    b = backend(tmp_path)
    info = b.create("bdb-x", branch="x", snapshot=None, info={})
    path = b.path("bdb-x")
    assert info["url"] == f"file:{path}"
    assert path.is_absolute()
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert b.list_owned() == ["bdb-x"]
    with pytest.raises(Refused):
        b.create("bdb-x", branch="x", snapshot=None, info={})
    b.drop("bdb-x", info)
    assert not path.exists()
    assert b.list_owned() == []


def test_snapshot_then_clone(tmp_path: Path) -> None:
    b = backend(tmp_path)
    src = tmp_path / "prod.db"
    make_source(src)
    before = src.read_bytes()
    snap = b.snapshot_create("prod", 1, str(src))
    assert src.read_bytes() == before  # the source is only read
    assert Path(snap.location).stat().st_mode & 0o222 == 0  # sealed read-only
    info = b.create("bdb-feat", branch="feat", snapshot=snap, info={})
    assert info["strategy"] in {"reflink", "copy_file_range", "copy"}
    db = sqlite3.connect(b.path("bdb-feat"))
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1000
    db.execute("INSERT INTO t (v) VALUES ('branch only')")
    db.commit()
    db.close()
    # Writing the clone never changes the snapshot.
    snapdb = sqlite3.connect(f"file:{snap.location}?mode=ro", uri=True)
    assert snapdb.execute("SELECT count(*) FROM t").fetchone()[0] == 1000
    snapdb.close()


def test_snapshot_is_consistent_while_source_is_written(tmp_path: Path) -> None:
    b = backend(tmp_path)
    src = tmp_path / "live.db"
    make_source(src, rows=0)
    stop = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(src, timeout=30)
        n = 0
        while not stop.is_set():
            # Each transaction inserts a pair: a consistent copy has an even count.
            db.execute("INSERT INTO t (v) VALUES ('a')")
            db.execute("INSERT INTO t (v) VALUES ('b')")
            db.commit()
            n += 1
        db.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        snaps = [b.snapshot_create("live", v, str(src)) for v in range(1, 6)]
    finally:
        stop.set()
        t.join()
    for s in snaps:
        db = sqlite3.connect(f"file:{s.location}?mode=ro", uri=True)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] % 2 == 0
        db.close()


def test_bad_sources(tmp_path: Path) -> None:
    b = backend(tmp_path)
    with pytest.raises(NotFound):
        b.snapshot_create("x", 1, str(tmp_path / "missing.db"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(BackendError, match="not a SQLite database"):
        b.snapshot_create("x", 1, str(text))


def test_interrupted_clone_leaves_no_final_file(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.branches.mkdir(parents=True)
    leftover = b.branches / ".tmp-bdb-y-deadbeef"
    leftover.write_bytes(b"half written")
    assert b.list_owned() == []  # a temp file is never a database
    b.create("bdb-y", branch="y", snapshot=None, info={})
    assert not leftover.exists()


def test_foreign_files_are_never_touched(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b.branches.mkdir(parents=True)
    foreign = b.branches / "mine.db"
    foreign.write_bytes(b"user data")
    b.create("bdb-z", branch="z", snapshot=None, info={})
    assert b.list_owned() == ["bdb-z"]
    b.drop("bdb-z", {})
    assert foreign.read_bytes() == b"user data"


def test_the_store_that_made_a_file_is_beside_it(tmp_path: Path) -> None:
    a, b = backend(tmp_path, "a" * 32), backend(tmp_path, "b" * 32)
    info = a.create("bdb-a", branch="a", snapshot=None, info={})
    b.create("bdb-b", branch="b", snapshot=None, info={})
    older = a.branches / "bdb-older.db"  # made before stores had ids
    older.write_bytes(b"")
    assert a.made_by("bdb-a") == "a" * 32 and a.made_by("bdb-older") is None
    assert a.list_owned() == ["bdb-a", "bdb-b", "bdb-older"]
    assert a.list_owned(store="a" * 32) == ["bdb-a"]
    with pytest.raises(Refused, match="another branchdb state store"):
        b.drop("bdb-a", info)
    assert a.path("bdb-a").exists()
    a.drop("bdb-a", info)
    a.drop("bdb-older", {})
    assert a.list_owned() == ["bdb-b"]
    assert sorted(p.name for p in a.branches.iterdir()) == [
        "bdb-b.db",
        "bdb-b.db.store",
    ]


def test_clone_file_copies_bytes(tmp_path: Path) -> None:
    src = tmp_path / "a"
    src.write_bytes(b"x" * 3_000_000)
    method = clone_file(src, tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == src.read_bytes()
    assert method in {"reflink", "copy_file_range", "copy"}
    with pytest.raises(FileExistsError):
        clone_file(src, tmp_path / "b")
