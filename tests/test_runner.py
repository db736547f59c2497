"""The migration runner on real SQLite files: plan, apply, rollback, edits and drift.

A PostgreSQL section at the end runs the same formats on a throwaway cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backendsupport import branch_session, libsql_backend, postgres_backend

from branchdb.daemon.core.dbsession import DbSession
from branchdb.daemon.core.errors import MigrationDrift, MigrationEdited, MigrationFailed
from branchdb.daemon.core.models import Migration
from branchdb.daemon.migrations import runner
from branchdb.daemon.migrations.base import DirFiles, Format
from branchdb.daemon.migrations.formats.dbmate import DbmateFormat
from branchdb.daemon.migrations.formats.drizzle import DrizzleFormat
from branchdb.daemon.migrations.formats.flyway import FlywayFormat
from branchdb.daemon.migrations.formats.golang_migrate import GolangMigrateFormat
from branchdb.daemon.migrations.formats.plain import PlainSqlFormat


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbSession]:
    """A branch database of the libsql backend, opened as production opens it."""
    with branch_session(libsql_backend(tmp_path_factory.mktemp("data"))) as s:
        yield s


def tables(db: Any) -> set[str]:
    if db.dialect == "sqlite":
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = db.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
    return {r[0] for r in rows}


# Each layout writes the same three migrations: 1 creates a, 2 creates b, 3 creates
# c then fails at its second statement (when *broken*).
def layout(fmt: str, root: Path, *, broken: bool = False, only: int = 3) -> DirFiles:
    bodies = [
        ["CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)"],
        ["CREATE TABLE b (id int)"],
        ["CREATE TABLE c (id int)", "INSERT INTO nope VALUES (1)" if broken else ""],
    ][:only]
    files: dict[str, str] = {}
    if fmt == "drizzle":
        entries = []
        for i, stmts in enumerate(bodies):
            tag = f"000{i}_m{i}"
            entries.append(
                {"idx": i, "when": 1000 + i, "tag": tag, "breakpoints": True}
            )
            files[f"{tag}.sql"] = "\n--> statement-breakpoint\n".join(
                s + ";" for s in stmts if s
            )
        files["meta/_journal.json"] = json.dumps({"entries": entries})
    else:
        for i, stmts in enumerate(bodies, 1):
            text = "\n".join(s + ";" for s in stmts if s) + "\n"
            name = {
                "golang-migrate": f"{i}_m{i}.up.sql",
                "dbmate": f"2024000{i}_m{i}.sql",
                "flyway": f"V{i}__m{i}.sql",
                "sql": f"{i}_m{i}.sql",
            }[fmt]
            if fmt == "dbmate":
                text = f"-- migrate:up\n{text}-- migrate:down\nSELECT 1;\n"
            files[name] = text
    root.mkdir(parents=True, exist_ok=True)
    for old in root.rglob("*"):
        if old.is_file():
            old.unlink()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return DirFiles(root)


FORMATS: dict[str, Format] = {
    "drizzle": DrizzleFormat(),
    "golang-migrate": GolangMigrateFormat(),
    "dbmate": DbmateFormat(),
    "flyway": FlywayFormat(),
    "sql": PlainSqlFormat(),
}


def migrate(fmt: Format, files: DirFiles, db: Any, **kw: Any) -> list[Migration]:
    ms = fmt.load(files)
    return runner.apply(fmt, runner.plan(fmt, ms, db, kw.get("known")), db)


@pytest.mark.parametrize("name", FORMATS)
def test_apply_twice_applies_nothing(name: str, tmp_path: Path, db: DbSession) -> None:
    fmt = FORMATS[name]
    files = layout(name, tmp_path / "m")
    seen: list[str] = []
    ms = fmt.load(files)
    plan = runner.plan(fmt, ms, db, {})
    assert [m.name for m in plan.pending] == [m.name for m in ms]
    done = runner.apply(fmt, plan, db, progress=lambda m: seen.append(m.name))
    assert seen == [m.name for m in done] == [m.name for m in ms]
    assert {"a", "b", "c"} <= tables(db)
    again = runner.plan(fmt, ms, db, {m.key: m.checksum for m in ms})
    assert again.pending == []
    assert runner.apply(fmt, again, db) == []
    # Applying a stale plan again is harmless: the ledger is re-read under the lock.
    assert runner.apply(fmt, plan, db) == []
    assert db.execute("SELECT count(*) FROM a") == [(1,)]


@pytest.mark.parametrize("name", FORMATS)
def test_failing_statement_rolls_back_that_migration_only(
    name: str, tmp_path: Path, db: DbSession
) -> None:
    fmt = FORMATS[name]
    files = layout(name, tmp_path / "m", broken=True)
    ms = fmt.load(files)
    with pytest.raises(MigrationFailed) as e:
        runner.apply(fmt, runner.plan(fmt, ms, db), db)
    err = e.value
    assert err.file == ms[2].name
    assert err.statement_no == 2
    assert "INSERT INTO nope" in err.statement
    assert "no such table: nope" in err.db_error
    assert err.rolled_back
    assert ms[2].name in str(err) and "statement 2" in str(err)
    found = tables(db)
    assert {"a", "b"} <= found and "c" not in found
    # The ledger has the two earlier migrations; the failed one is still pending.
    plan = runner.plan(fmt, ms, db, {m.key: m.checksum for m in ms[:2]})
    assert [m.name for m in plan.pending] == [ms[2].name]


@pytest.mark.parametrize("name", FORMATS)
def test_edited_applied_file_is_refused(
    name: str, tmp_path: Path, db: DbSession
) -> None:
    fmt = FORMATS[name]
    files = layout(name, tmp_path / "m", only=2)
    ms = fmt.load(files)
    runner.apply(fmt, runner.plan(fmt, ms, db), db)
    known = {m.key: m.checksum for m in ms}
    sqls = sorted((tmp_path / "m").rglob("*.sql"))
    edited = next(p for p in sqls if "CREATE TABLE b" in p.read_text())
    edited.write_text(edited.read_text().replace("CREATE TABLE b", "CREATE TABLE bb"))
    with pytest.raises(MigrationEdited) as e:
        runner.plan(fmt, fmt.load(files), db, known)
    assert e.value.files == [ms[1].name]
    assert "branchdb reset" in str(e.value)


def test_ledger_checksum_wins_without_engine_record(
    tmp_path: Path, db: DbSession
) -> None:
    """drizzle/flyway/plain keep a checksum in the ledger; no engine record needed."""
    fmt = PlainSqlFormat()
    files = layout("sql", tmp_path / "m", only=1)
    migrate(fmt, files, db)
    (tmp_path / "m" / "1_m1.sql").write_text("CREATE TABLE a (id bigint);\n")
    with pytest.raises(MigrationEdited, match=r"1_m1\.sql"):
        runner.plan(fmt, fmt.load(files), db, {})


@pytest.mark.parametrize("name", ["drizzle", "dbmate", "flyway", "sql"])
def test_drift_after_rebase_lists_missing_and_out_of_order(
    name: str, tmp_path: Path, db: DbSession
) -> None:
    fmt = FORMATS[name]
    # The branch applied 1 and 3 (main's 2 did not exist when it branched off).
    full = fmt.load(layout(name, tmp_path / "full"))
    one, two, three = full
    runner.apply(fmt, runner.plan(fmt, [one, three], db), db)
    # After the rebase 1 was squashed away and main's 2 arrived: 1 is in the ledger
    # without a file, and 2 is pending below the applied 3. Both are listed.
    with pytest.raises(MigrationDrift) as e:
        runner.plan(fmt, [two, three], db, {})
    items = e.value.items
    assert [(d.kind, d.migration) for d in items][1:] == [("out-of-order", two.name)]
    assert items[0].kind == "missing" and one.key in items[0].migration
    assert "no such migration" in items[0].detail
    # With 3 back on the branch, only the ordering problem is left.
    with pytest.raises(MigrationDrift) as e:
        runner.plan(fmt, full, db, {})
    assert [(d.kind, d.migration) for d in e.value.items] == [
        ("out-of-order", two.name)
    ]
    assert three.name in e.value.items[0].detail
    assert "branchdb up --reset-on-drift" in str(e.value)


def test_drift_reported_before_edit(tmp_path: Path, db: DbSession) -> None:
    fmt = PlainSqlFormat()
    one, two, three = fmt.load(layout("sql", tmp_path / "m"))
    runner.apply(fmt, runner.plan(fmt, [one, three], db), db)
    changed = one._replace(checksum="edited")
    with pytest.raises(MigrationDrift):
        runner.plan(fmt, [changed, two, three], db, {})


def test_golang_migrate_high_water_mark(tmp_path: Path, db: DbSession) -> None:
    fmt = GolangMigrateFormat()
    one, two, three = fmt.load(layout("golang-migrate", tmp_path / "m"))
    runner.apply(fmt, runner.plan(fmt, [one, three], db), db)
    assert db.execute("SELECT version, dirty FROM schema_migrations") == [(3, 0)]
    known = {one.key: one.checksum, three.key: three.checksum}
    # Without a record of what ran, everything up to version 3 counts as applied,
    # exactly as golang-migrate sees it.
    assert runner.plan(fmt, [one, two, three], db, {}).pending == []
    # branchdb's record shows 2 never ran: that is drift, not "up to date".
    with pytest.raises(MigrationDrift) as e:
        runner.plan(fmt, [one, two, three], db, known)
    assert [(d.kind, d.migration) for d in e.value.items] == [
        ("out-of-order", two.name)
    ]
    # The recorded version has no file on this branch.
    with pytest.raises(MigrationDrift) as e:
        runner.plan(fmt, [one, two], db, known)
    assert [d.kind for d in e.value.items] == ["missing"]
    assert e.value.items[0].migration == "version 3"
    # An edit below the mark is caught through branchdb's record.
    with pytest.raises(MigrationEdited):
        runner.plan(fmt, [one, three], db, {**known, one.key: "other"})


def test_golang_migrate_failure_outside_transaction_leaves_dirty(
    tmp_path: Path, db: DbSession
) -> None:
    """VACUUM cannot run in a transaction, so the file runs without one."""
    root = tmp_path / "m"
    root.mkdir()
    (root / "1_a.up.sql").write_text("CREATE TABLE a (id int);")
    (root / "2_b.up.sql").write_text("VACUUM;\nCREATE TABLE b (id int);\nBROKEN;")
    fmt = GolangMigrateFormat()
    with pytest.raises(MigrationFailed) as e:
        migrate(fmt, DirFiles(root), db)
    assert (e.value.file, e.value.statement_no, e.value.rolled_back) == (
        "2_b.up.sql",
        3,
        False,
    )
    assert "stay applied" in str(e.value)
    assert "b" in tables(db)  # no transaction: what ran before the failure stays
    assert db.execute("SELECT version, dirty FROM schema_migrations") == [(2, 1)]
    with pytest.raises(Exception, match="dirty at version 2"):
        migrate(fmt, DirFiles(root), db)


def test_dbmate_transaction_false(tmp_path: Path, db: DbSession) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "1_a.sql").write_text(
        "-- migrate:up transaction:false\n"
        "CREATE TABLE a (id int);\nINSERT INTO nope VALUES (1);\n-- migrate:down\n"
    )
    fmt = DbmateFormat()
    with pytest.raises(MigrationFailed) as e:
        migrate(fmt, DirFiles(root), db)
    assert not e.value.rolled_back and e.value.statement_no == 2
    assert "a" in tables(db)  # ran outside a transaction: it stays
    assert db.execute("SELECT count(*) FROM schema_migrations") == [(0,)]
    (root / "1_a.sql").write_text(
        "-- migrate:up transaction:false\nCREATE TABLE IF NOT EXISTS a (id int);\n"
        "-- migrate:down\n"
    )
    assert [m.name for m in migrate(fmt, DirFiles(root), db)] == ["1_a.sql"]
    assert db.execute("SELECT version FROM schema_migrations") == [("1",)]


def test_sqlite_trigger_with_semicolons_runs_as_one_statement(
    tmp_path: Path, db: DbSession
) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "1_trigger.sql").write_text(
        "CREATE TABLE t (x int);\nCREATE TABLE log (x int);\n"
        "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN\n"
        "  INSERT INTO log VALUES (new.x);\n  INSERT INTO log VALUES (new.x * 10);\n"
        "END;\nINSERT INTO t VALUES (2);\n"
    )
    migrate(PlainSqlFormat(), DirFiles(root), db)
    assert db.execute("SELECT x FROM log ORDER BY x") == [(2,), (20,)]


def test_nothing_pending_touches_nothing(tmp_path: Path, db: DbSession) -> None:
    fmt = DrizzleFormat()
    assert runner.apply(fmt, runner.plan(fmt, [], db), db) == []
    assert tables(db) == set()


# ---------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg(pg_cluster: Any) -> Iterator[DbSession]:
    """A branch database of the postgres backend, as its own login role."""
    with branch_session(postgres_backend(pg_cluster.admin_url)) as session:
        yield session


@pytest.mark.postgres
@pytest.mark.parametrize("name", FORMATS)
def test_postgres_formats_apply_roll_back_and_skip(
    name: str, tmp_path: Path, pg: Any
) -> None:
    fmt = FORMATS[name]
    files = layout(name, tmp_path / "m", broken=True)
    ms = fmt.load(files)
    with pytest.raises(MigrationFailed) as e:
        runner.apply(fmt, runner.plan(fmt, ms, pg), pg)
    assert (e.value.file, e.value.statement_no) == (ms[2].name, 2)
    assert 'relation "nope" does not exist' in e.value.db_error
    assert {"a", "b"} <= tables(pg) and "c" not in tables(pg)
    files = layout(name, tmp_path / "m")
    ms = fmt.load(files)
    known = {m.key: m.checksum for m in ms[:2]}
    done = runner.apply(fmt, runner.plan(fmt, ms, pg, known), pg)
    assert [m.name for m in done] == [ms[2].name]
    assert runner.plan(fmt, ms, pg, {m.key: m.checksum for m in ms}).pending == []
    assert [a.key for a in fmt.applied(pg)][-1] == ms[2].key


@pytest.mark.postgres
def test_postgres_ledger_rows(tmp_path: Path, pg: Any) -> None:
    for name, fmt in FORMATS.items():
        if name == "dbmate":
            continue  # dbmate and golang-migrate share the table name
        migrate(fmt, layout(name, tmp_path / name, only=1), pg)
        pg.execute("DROP TABLE a")  # the next format creates it again
    assert pg.execute(
        'SELECT id, created_at FROM "drizzle"."__drizzle_migrations"'
    ) == [(1, 1000)]
    assert pg.execute("SELECT version, dirty FROM schema_migrations") == [(1, False)]
    assert pg.execute(
        "SELECT installed_rank, version, description, type, script, "
        "installed_by = current_user, success FROM flyway_schema_history"
    ) == [(1, "1", "m1", "SQL", "V1__m1.sql", True, True)]
    assert pg.execute("SELECT name FROM _branchdb_migrations") == [("1_m1.sql",)]


@pytest.mark.postgres
def test_postgres_concurrently_runs_outside_a_transaction(
    tmp_path: Path, pg: Any
) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "1_t.sql").write_text(
        "CREATE TABLE t (id int);\n"
        "DO $$ BEGIN INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); END $$;\n"
    )
    (root / "2_idx.sql").write_text("CREATE INDEX CONCURRENTLY t_id ON t (id);\n")
    done = migrate(PlainSqlFormat(), DirFiles(root), pg)
    assert [m.name for m in done] == ["1_t.sql", "2_idx.sql"]
    assert pg.execute("SELECT count(*) FROM t") == [(2,)]
    assert pg.execute("SELECT indexname FROM pg_indexes WHERE tablename = 't'") == [
        ("t_id",)
    ]
