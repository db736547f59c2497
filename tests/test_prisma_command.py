"""The prisma and command migration formats, on PostgreSQL and SQLite."""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backendsupport import branch_session, libsql_backend
from pgcluster import Cluster

from branchdb.daemon.backends.pg_session import PgSession
from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import naming
from branchdb.daemon.core.dbsession import DbSession
from branchdb.daemon.core.errors import DatabaseError, MigrationError, MigrationFailed
from branchdb.daemon.migrations import runner
from branchdb.daemon.migrations.base import DirFiles
from branchdb.daemon.migrations.formats.command import CommandFormat
from branchdb.daemon.migrations.formats.prisma import PrismaFormat

INIT = 'CREATE TABLE "User" ("id" INTEGER NOT NULL PRIMARY KEY, "email" TEXT);\n'
ADD = 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n-- a comment; with a semicolon\n'


def write_prisma(root: Path) -> Path:
    d = root / "prisma" / "migrations"
    for name, body in (("20240101000000_init", INIT), ("20240202000000_add", ADD)):
        (d / name).mkdir(parents=True)
        (d / name / "migration.sql").write_text(body)
    (d / "migration_lock.toml").write_text('provider = "postgresql"\n')
    return d


@pytest.fixture
def pg_backend(pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> PostgresBackend:
    monkeypatch.delenv("BRANCHDB_PG_URL", raising=False)
    raw = {"project": {"name": "fmt"}, "database": {"backend": "postgres"}}
    raw["database"]["server"] = pg_cluster.admin_url
    return PostgresBackend(from_mapping(raw, Path("/tmp"), None))


@pytest.fixture(params=["postgres", "sqlite"])
def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DbSession]:
    """A branch database opened by its backend's ``connect``, as in production."""
    backend = (
        libsql_backend(tmp_path_factory.mktemp("data"))
        if request.param == "sqlite"
        else request.getfixturevalue("pg_backend")
    )
    with branch_session(backend, f"prisma-{time.monotonic_ns()}") as s:
        yield s


def apply(fmt: PrismaFormat, db: DbSession, files: DirFiles) -> list[str]:
    """Plan and apply with the real runner; the keys applied now."""
    done = runner.apply(fmt, runner.plan(fmt, fmt.load(files), db), db)
    return [m.key for m in done]


def test_prisma_layout_and_checksums(tmp_path: Path) -> None:
    files = DirFiles(write_prisma(tmp_path))
    fmt = PrismaFormat()
    assert fmt.detect(files)
    ms = fmt.load(files)
    assert [m.key for m in ms] == ["20240101000000_init", "20240202000000_add"]
    assert ms[0].checksum == hashlib.sha256(INIT.encode()).hexdigest()
    assert ms[1].sql == ADD and ms[1].name == "20240202000000_add/migration.sql"
    (tmp_path / "prisma/migrations/20240404000000_empty").mkdir()
    (tmp_path / "prisma/migrations/20240404000000_empty/README.md").write_text("x")
    with pytest.raises(MigrationError, match="P3015"):
        fmt.load(files)


def test_prisma_ledger_rows(session: DbSession, tmp_path: Path) -> None:
    files = DirFiles(write_prisma(tmp_path))
    fmt = PrismaFormat()
    assert fmt.applied(session) == []
    assert apply(fmt, session, files) == ["20240101000000_init", "20240202000000_add"]
    assert apply(fmt, session, files) == []  # idempotent
    rows = session.execute(
        "SELECT migration_name, checksum, finished_at IS NOT NULL, rolled_back_at, "
        "applied_steps_count, length(id) FROM _prisma_migrations ORDER BY migration_name"
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("20240101000000_init", hashlib.sha256(INIT.encode()).hexdigest()),
        ("20240202000000_add", hashlib.sha256(ADD.encode()).hexdigest()),
    ]
    assert all(r[2] and r[3] is None and r[4] == 1 and r[5] == 36 for r in rows)
    applied = fmt.applied(session)
    assert [a.checksum for a in applied] == [m.checksum for m in fmt.load(files)]


def test_prisma_failed_migration_blocks_like_p3009(
    session: DbSession, tmp_path: Path
) -> None:
    files = DirFiles(write_prisma(tmp_path))
    fmt = PrismaFormat()
    apply(fmt, session, files)
    bad = tmp_path / "prisma/migrations/20240505000000_bad"
    bad.mkdir()
    (bad / "migration.sql").write_text('ALTER TABLE "Nope" ADD COLUMN "x" TEXT;')
    # In a transaction: rolled back, no ledger row, nothing blocks.
    with pytest.raises(MigrationFailed, match="Nope"):
        apply(fmt, session, files)
    assert "20240505000000_bad" not in {a.key for a in fmt.applied(session)}
    # Outside a transaction, as prisma runs it: the started row stays unfinished.
    m = fmt.load(files)[-1]
    fmt.before(session, m)
    with pytest.raises(DatabaseError, match="Nope"):
        session.execute('ALTER TABLE "Nope" ADD COLUMN "x" TEXT')
    with pytest.raises(MigrationError, match=r"20240505000000_bad.*P3009"):
        fmt.applied(session)
    # `prisma migrate resolve --rolled-back` marks it; it is then applied again.
    session.execute(
        "UPDATE _prisma_migrations SET rolled_back_at = started_at "
        "WHERE migration_name = ?",
        [m.key],
    )
    assert m.key not in {a.key for a in fmt.applied(session)}


def test_prisma_non_transactional_migration_is_recorded(
    session: DbSession, tmp_path: Path
) -> None:
    files = DirFiles(write_prisma(tmp_path))
    d = tmp_path / "prisma/migrations/20240303000000_idx"
    d.mkdir()
    stmt = (
        "VACUUM"
        if session.dialect == "sqlite"
        else ('CREATE INDEX CONCURRENTLY "u_email" ON "User" ("email")')
    )
    (d / "migration.sql").write_text(stmt + ";\n")
    fmt = PrismaFormat()
    assert apply(fmt, session, files)[-1] == "20240303000000_idx"
    rows = session.execute(
        "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL"
    )
    assert rows == [(3,)]


# ------------------------------------------------------------------ command
def py(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_command_runs_with_database_url(
    pg_backend: PostgresBackend, tmp_path: Path
) -> None:
    db = naming.pg_database("fmt", "cmd")
    info = pg_backend.create(db, branch="cmd", snapshot=None, info={})
    try:
        code = (
            "import os, psycopg\n"
            "with psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
            "    c.execute('CREATE TABLE made_by_tool (id int)')\n"
            "print('migrated ok')"
        )
        out = CommandFormat().run_command(py(code), info["url"], tmp_path, 30)
        assert "migrated ok" in out
        with PgSession(info["url"]) as s:
            assert s.execute("SELECT to_regclass('made_by_tool') IS NOT NULL") == [
                (True,)
            ]
    finally:
        pg_backend.drop(db, info)


def test_command_failure_shows_output_redacted(tmp_path: Path) -> None:
    url = "postgresql://bdbr_x:Sup3rS3cretPw@127.0.0.1:5432/bdb_x"
    code = (
        "import os, sys\n"
        "for i in range(100): print('line', i)\n"
        "print('connecting to', os.environ['DATABASE_URL'])\n"
        "print('password was Sup3rS3cretPw')\n"
        "sys.exit(3)"
    )
    with pytest.raises(MigrationError) as e:
        CommandFormat().run_command(py(code), url, tmp_path, 30)
    msg = str(e.value)
    assert "exit code 3" in msg and "line 99" in msg and "line 10\n" not in msg
    assert "Sup3rS3cretPw" not in msg and "bdbr_x:***@" in msg


def test_command_timeout_kills(tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    code = f"import time; print('started', flush=True); time.sleep(30); open({str(marker)!r}, 'w')"
    start = time.monotonic()
    with pytest.raises(MigrationError, match=r"(?s)within 1 s.*Last output:\nstarted"):
        CommandFormat().run_command(
            f"{py(code)} & wait", "postgresql://u:p@h/d", tmp_path, 1
        )
    assert time.monotonic() - start < 10
    time.sleep(0.2)
    assert not marker.exists()
