"""Migration formats and the statement splitter, on real SQLite files (no mocks).

Each format is checked against what its own tool reads and writes: file naming and
order, checksums, and the ledger rows exactly as the tool leaves them.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pglast
import pytest
from backendsupport import branch_session, libsql_backend

from branchdb.daemon.core.dbsession import DbSession
from branchdb.daemon.core.errors import MigrationError
from branchdb.daemon.core.models import Applied
from branchdb.daemon.migrations import detect_format, runner, sqlsplit
from branchdb.daemon.migrations.base import DirFiles
from branchdb.daemon.migrations.formats import drizzle as drizzle_mod
from branchdb.daemon.migrations.formats import flyway as flyway_mod
from branchdb.daemon.migrations.formats import golang_migrate as gm_mod
from branchdb.daemon.migrations.formats.dbmate import DbmateFormat
from branchdb.daemon.migrations.formats.drizzle import DrizzleFormat
from branchdb.daemon.migrations.formats.flyway import FlywayFormat, flyway_checksum
from branchdb.daemon.migrations.formats.golang_migrate import GolangMigrateFormat
from branchdb.daemon.migrations.formats.plain import PlainSqlFormat

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbSession]:
    """A branch database of the libsql backend, opened as production opens it."""
    with branch_session(libsql_backend(tmp_path_factory.mktemp("data"))) as s:
        yield s


def write(root: Path, files: dict[str, str | bytes]) -> DirFiles:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return DirFiles(root)


def tables(db: DbSession) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


# ------------------------------------------------------------------------ sqlsplit
def test_sqlite_split_keeps_trigger_bodies_strings_and_drops_comments() -> None:
    script = """-- create the table; really
CREATE TABLE a (x TEXT);  -- trailing; comment
/* block; comment */ INSERT INTO a VALUES ('x;y'), ("z;");
CREATE TRIGGER t AFTER INSERT ON a BEGIN
  INSERT INTO a VALUES ('in trigger');
  UPDATE a SET x = 'y;' WHERE x = 'z';
END;
-- only a comment;
;
SELECT 1"""
    assert sqlsplit.split(script, "sqlite") == [
        "CREATE TABLE a (x TEXT);",
        "INSERT INTO a VALUES ('x;y'), (\"z;\");",
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n"
        "  INSERT INTO a VALUES ('in trigger');\n"
        "  UPDATE a SET x = 'y;' WHERE x = 'z';\nEND;",
        "SELECT 1",
    ]
    assert sqlsplit.split("\ufeff-- nothing\n\n", "sqlite") == []


def test_postgres_split_keeps_do_blocks_dollar_bodies_and_e_strings() -> None:
    script = """-- leading comment; with a semicolon
DO $$
BEGIN
  PERFORM 1; RAISE NOTICE 'a;b';
END
$$;
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN RETURN 1; END; $body$;
SELECT E'it\\'s; fine';
/* done; */
"""
    parts = sqlsplit.split(script, "postgres")
    assert len(parts) == 3
    assert parts[0].startswith("DO $$") and parts[0].endswith("$$")
    assert "RAISE NOTICE 'a;b';" in parts[0]
    assert parts[1].startswith("CREATE FUNCTION") and parts[1].endswith("$body$")
    assert parts[2] == "SELECT E'it\\'s; fine'"
    assert sqlsplit.split("-- nothing here\n", "postgres") == []


def test_postgres_syntax_error_names_line_and_column() -> None:
    with pytest.raises(MigrationError, match=r"line 2, column 15: .*\"where\""):
        sqlsplit.split("SELECT 1;\nSELECT * FROM where;", "postgres")


@pytest.mark.parametrize(
    ("stmt", "expected"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", True),
        ("create unique index concurrently if not exists i on t (a)", True),
        ("-- why\nDROP INDEX CONCURRENTLY i", True),
        ("REINDEX INDEX CONCURRENTLY i", True),
        ("REINDEX DATABASE shop", True),
        ("VACUUM ANALYZE t", True),
        ("CREATE DATABASE x", True),
        ("DROP DATABASE x", True),
        ("ALTER SYSTEM SET work_mem = '8MB'", True),
        ("CREATE TABLESPACE ts LOCATION '/data'", True),
        ("DROP TABLESPACE ts", True),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", True),
        ("CREATE TABLE t (a int); CREATE INDEX CONCURRENTLY i ON t (a)", True),
        ("CREATE INDEX i ON t (a)", False),
        ("REINDEX TABLE t", False),
        ("ANALYZE t", False),
        ("ALTER TYPE mood ADD VALUE 'meh'", False),  # fine in a transaction on PG12+
        ("DO $$ BEGIN EXECUTE 'VACUUM'; END $$", False),
    ],
)
def test_needs_autocommit_postgres(stmt: str, expected: bool) -> None:
    assert sqlsplit.needs_autocommit(stmt) is expected


def test_needs_autocommit_sqlite_only_vacuum() -> None:
    assert sqlsplit.needs_autocommit("VACUUM;", "sqlite")
    assert not sqlsplit.needs_autocommit("CREATE INDEX i ON t (a);", "sqlite")


# ------------------------------------------------------------------------- drizzle
def journal(*entries: tuple[int, int, str]) -> str:
    return json.dumps(
        {
            "version": "7",
            "dialect": "sqlite",
            "entries": [
                {"idx": i, "version": "6", "when": w, "tag": t, "breakpoints": True}
                for i, w, t in entries
            ],
        }
    )


def test_drizzle_loads_in_journal_order_with_drizzle_hash(tmp_path: Path) -> None:
    body0 = (
        "CREATE TABLE `users` (`id` integer PRIMARY KEY);\n"
        "--> statement-breakpoint\n"
        "CREATE INDEX `users_id` ON `users` (`id`);\n"
    )
    files = write(
        tmp_path,
        {
            "meta/_journal.json": journal((1, 200, "0001_b"), (0, 100, "0000_a")),
            "0000_a.sql": body0,
            "0001_b.sql": "SELECT 1;\r\n--> statement-breakpoint\r\n\r\n",
        },
    )
    fmt = DrizzleFormat()
    assert fmt.detect(files)
    ms = fmt.load(files)
    assert [m.name for m in ms] == ["0000_a.sql", "0001_b.sql"]
    assert [m.key for m in ms] == ["100", "200"]
    assert ms[0].checksum == hashlib.sha256(body0.encode()).hexdigest()
    assert ms[0].statements == (
        "CREATE TABLE `users` (`id` integer PRIMARY KEY);",
        "CREATE INDEX `users_id` ON `users` (`id`);",
    )
    assert (ms[0].meta["when"], ms[0].meta["tag"]) == (100, "0000_a")
    # drizzle-orm hashes the text as read (CRLF kept); empty chunks are no statements.
    crlf = "SELECT 1;\r\n--> statement-breakpoint\r\n\r\n"
    assert ms[1].checksum == hashlib.sha256(crlf.encode()).hexdigest()
    assert ms[1].statements == ("SELECT 1;",)


def test_drizzle_real_drizzle_kit_fixture_hashes() -> None:
    folder = FIXTURES / "drizzle" / "sqlite"
    ms = DrizzleFormat().load(DirFiles(folder))
    entries = json.loads((folder / "meta" / "_journal.json").read_text())["entries"]
    assert [m.name for m in ms] == [f"{e['tag']}.sql" for e in entries]
    for m, e in zip(ms, entries, strict=True):
        raw = (folder / m.name).read_bytes()
        assert m.checksum == hashlib.sha256(raw).hexdigest()
        assert m.key == str(e["when"])


def test_drizzle_missing_file_and_bad_journal(tmp_path: Path) -> None:
    files = write(tmp_path / "a", {"meta/_journal.json": journal((0, 1, "0000_x"))})
    with pytest.raises(MigrationError, match=r"0000_x\.sql does not exist"):
        DrizzleFormat().load(files)
    files = write(tmp_path / "b", {"meta/_journal.json": "{not json"})
    with pytest.raises(MigrationError, match="not a drizzle journal"):
        DrizzleFormat().load(files)


def test_drizzle_ledger_rows_as_drizzle_writes_them(
    tmp_path: Path, db: DbSession
) -> None:
    files = write(
        tmp_path,
        {
            "meta/_journal.json": journal((0, 1700000000000, "0000_a")),
            "0000_a.sql": "CREATE TABLE a (id integer);",
        },
    )
    fmt = DrizzleFormat()
    assert fmt.applied(db) == []
    ms = fmt.load(files)
    runner.apply(fmt, runner.plan(fmt, ms, db), db)
    # SERIAL is not INTEGER in SQLite, so drizzle's id column stays NULL.
    assert db.execute('SELECT id, hash, created_at FROM "__drizzle_migrations"') == [
        (None, ms[0].checksum, 1700000000000)
    ]
    [a] = fmt.applied(db)
    assert (a.key, a.checksum) == ("1700000000000", ms[0].checksum)
    assert a.label == f"hash {ms[0].checksum[:12]} created_at 1700000000000"


# ------------------------------------------------------------------ golang-migrate
def test_golang_migrate_orders_by_int_version_and_ignores_down(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        {
            "10_c.up.sql": "SELECT 10;",
            "2_b.up.sql": "SELECT 2;",
            "2_b.down.sql": "SELECT -2;",
            "0001_a.up.sql": "SELECT 1;",
            "README.md": "not a migration",
            "sub/3_x.up.sql": "SELECT 3;",  # golang-migrate reads one directory
        },
    )
    fmt = GolangMigrateFormat()
    assert fmt.detect(files)
    ms = fmt.load(files)
    assert [m.name for m in ms] == ["0001_a.up.sql", "2_b.up.sql", "10_c.up.sql"]
    assert [m.key for m in ms] == ["1", "2", "10"]
    assert ms[0].checksum == hashlib.sha256(b"SELECT 1;").hexdigest()
    assert ms[0].statements == ()  # the runner splits for the database's dialect


def test_golang_migrate_duplicate_versions_name_both_files(tmp_path: Path) -> None:
    files = write(tmp_path, {"1_a.up.sql": "", "001_b.up.sql": ""})
    with pytest.raises(MigrationError) as e:
        GolangMigrateFormat().load(files)
    assert "001_b.up.sql" in str(e.value) and "1_a.up.sql" in str(e.value)


def test_golang_migrate_ledger_is_one_row(tmp_path: Path, db: DbSession) -> None:
    files = write(
        tmp_path,
        {
            "1_a.up.sql": "CREATE TABLE a (id int);",
            "2_b.up.sql": "CREATE TABLE b (id int); INSERT INTO b VALUES (1);",
        },
    )
    fmt = GolangMigrateFormat()
    ms = fmt.load(files)
    done = runner.apply(fmt, runner.plan(fmt, ms, db), db)
    assert [m.key for m in done] == ["1", "2"]
    # golang-migrate's sqlite3 driver stores bool as 0/1 and keeps one row.
    assert db.execute("SELECT version, dirty FROM schema_migrations") == [(2, 0)]
    assert {"schema_migrations", "a", "b"} <= tables(db)
    index = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name = ?",
        ["version_unique"],
    )
    assert index == [("version_unique",)]
    assert [(a.key, a.checksum) for a in fmt.applied(db)] == [("2", None)]


def test_golang_migrate_dirty_flag_refuses(tmp_path: Path, db: DbSession) -> None:
    fmt = GolangMigrateFormat()
    fmt.ensure_ledger(db)
    db.execute("INSERT INTO schema_migrations (version, dirty) VALUES (3, 1)")
    with pytest.raises(MigrationError, match=r"dirty at version 3.*branchdb reset"):
        fmt.applied(db)


# -------------------------------------------------------------------------- dbmate
DBMATE_UP = "-- migrate:up\nCREATE TABLE users (id int);\n\n"
DBMATE_FILE = DBMATE_UP + "-- migrate:down\nDROP TABLE users;\n"


def test_dbmate_up_block_checksum_and_transaction_option(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        {
            "20240102000000_second.sql": "-- migrate:up transaction:false\n"
            "CREATE INDEX i ON users (id);\n-- migrate:down\nDROP INDEX i;\n",
            "20240101000000_users.sql": DBMATE_FILE,
            "notes.txt": "-- migrate:up",
        },
    )
    fmt = DbmateFormat()
    assert fmt.detect(files)
    a, b = fmt.load(files)
    assert (a.key, a.name, a.transactional) == (
        "20240101000000",
        "20240101000000_users.sql",
        True,
    )
    assert a.sql == DBMATE_UP and "DROP TABLE" not in a.sql
    assert a.checksum == hashlib.sha256(DBMATE_UP.encode()).hexdigest()
    assert (b.key, b.transactional) == ("20240102000000", False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("CREATE TABLE x (id int);\n", "define an up block with '-- migrate:up'"),
        (
            "-- migrate:down\nDROP TABLE x;\n-- migrate:up\nSELECT 1;\n",
            "does not support statements preceding",
        ),
        ("SELECT 1;\n-- migrate:up\nSELECT 2;\n", "statements preceding"),
        ("-- migrate:up\nSELECT 2;\n", "define a down block with '-- migrate:down'"),
    ],
)
def test_dbmate_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    """Refused with dbmate's own message, when the file is pending (as dbmate)."""
    files = write(tmp_path, {"1_x.sql": content})
    fmt = DbmateFormat()
    ms = fmt.load(files)
    with pytest.raises(MigrationError, match=message):
        runner.evaluate(fmt, ms, [], {})
    # Already applied: dbmate never parses it again, and neither does branchdb.
    plan = runner.evaluate(fmt, ms, [Applied(key="1")], {})
    assert plan.pending == []


def test_dbmate_ledger_rows(tmp_path: Path, db: DbSession) -> None:
    files = write(
        tmp_path,
        {
            "20240101000000_users.sql": DBMATE_FILE,
            "20240102000000_more.sql": "-- migrate:up\nCREATE TABLE b (id int);\n"
            "-- migrate:down\n",
        },
    )
    fmt = DbmateFormat()
    ms = fmt.load(files)
    runner.apply(fmt, runner.plan(fmt, ms, db), db)
    rows = db.execute("SELECT version FROM schema_migrations ORDER BY version")
    assert rows == [("20240101000000",), ("20240102000000",)]
    assert "users" in tables(db)


# -------------------------------------------------------------------------- flyway
def crc_of_lines(*lines: str) -> int:
    """Independent reference: CRC-32 of the concatenated lines, as a signed int."""
    value = zlib.crc32("".join(lines).encode("utf-8"))
    return value - (1 << 32) if value & 0x80000000 else value


def test_flyway_checksum_is_crc32_over_lines() -> None:
    text = "CREATE TABLE a (\n  id INT\n);\n\nINSERT INTO a VALUES (1); -- é\n"
    expected = crc_of_lines(
        "CREATE TABLE a (", "  id INT", ");", "", "INSERT INTO a VALUES (1); -- é"
    )
    assert flyway_checksum(text.encode()) == expected
    # Line-ending independent, BOM stripped from the first line only.
    assert flyway_checksum(text.replace("\n", "\r\n").encode()) == expected
    assert flyway_checksum(text.replace("\n", "\r").encode()) == expected
    assert flyway_checksum(("\ufeff" + text).encode()) == expected
    assert flyway_checksum(b"a\n\xef\xbb\xbfb") != flyway_checksum(b"a\nb")
    assert flyway_checksum(b"") == 0 and flyway_checksum(b"\n") == 0
    # The stored value is a Java int: negative when the high bit is set.
    assert flyway_checksum(b"ab") == zlib.crc32(b"ab") - (1 << 32) < 0


def test_flyway_versions_order_numerically(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        {
            "V10__ten.sql": "SELECT 10;",
            "V1_1__one_point_one.sql": "SELECT 11;",
            "V2__two.sql": "SELECT 2;",
            "V1__create_auth_tables.sql": "SELECT 1;",
            "U2__undo_two.sql": "SELECT -2;",
            "sub/V1.2__nested.sql": "SELECT 12;",
            "notes.sql": "SELECT 0;",
        },
    )
    fmt = FlywayFormat()
    assert fmt.detect(files)
    ms = fmt.load(files)
    assert [m.key for m in ms] == ["1", "1.1", "1.2", "2", "10"]
    assert ms[0].meta["description"] == "create auth tables"
    assert ms[1].name == "V1_1__one_point_one.sql"
    assert ms[0].checksum == str(crc_of_lines("SELECT 1;"))


def test_flyway_duplicate_and_repeatable_are_refused(tmp_path: Path) -> None:
    files = write(tmp_path / "a", {"V1__a.sql": "", "V1.0__b.sql": ""})
    with pytest.raises(MigrationError, match=r"V1\.0__b\.sql"):
        FlywayFormat().load(files)
    files = write(tmp_path / "b", {"V1__a.sql": "", "R__views.sql": ""})
    with pytest.raises(MigrationError, match="repeatable"):
        FlywayFormat().load(files)


def test_flyway_history_rows_as_flyway_writes_them(
    tmp_path: Path, db: DbSession
) -> None:
    files = write(
        tmp_path,
        {
            "V1__create_users.sql": "CREATE TABLE users (id INT);\n",
            "V1_1__add_rows.sql": "INSERT INTO users VALUES (1);\n",
        },
    )
    fmt = FlywayFormat()
    ms = fmt.load(files)
    runner.apply(fmt, runner.plan(fmt, ms, db), db)
    rows = db.execute(
        "SELECT installed_rank, version, description, type, script, checksum, "
        "installed_by, typeof(execution_time), success, installed_on "
        'FROM "flyway_schema_history" ORDER BY installed_rank'
    )
    assert [r[:9] for r in rows] == [
        (1, "1", "create users", "SQL", "V1__create_users.sql",
         crc_of_lines("CREATE TABLE users (id INT);"), "", "integer", 1),
        (2, "1.1", "add rows", "SQL", "V1_1__add_rows.sql",
         crc_of_lines("INSERT INTO users VALUES (1);"), "", "integer", 1),
    ]  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", rows[0][9])
    index = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'flyway_schema_history_s_idx'"
    )
    assert index and '("success")' in index[0][0]
    assert [(a.key, a.checksum) for a in fmt.applied(db)] == [
        ("1", ms[0].checksum),
        ("1.1", ms[1].checksum),
    ]
    fmt.ensure_ledger(db)  # idempotent: flyway's DDL itself has no IF NOT EXISTS


def test_flyway_failed_row_requires_repair(db: DbSession) -> None:
    fmt = FlywayFormat()
    fmt.ensure_ledger(db)
    db.execute(
        'INSERT INTO "flyway_schema_history" (installed_rank, version, description, '
        "type, script, checksum, installed_by, execution_time, success) "
        "VALUES (1, '1', 'x', 'SQL', 'V1__x.sql', 0, '', 1, 0)"
    )
    with pytest.raises(MigrationError, match="flyway repair"):
        fmt.applied(db)


# --------------------------------------------------------------------------- plain
def test_plain_sql_natural_order_and_no_transaction(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        {
            "10_y.sql": "SELECT 10;",
            "2_x.sql": "-- branchdb:no-transaction\nVACUUM;",
            "1_a.sql": "SELECT 1;",
            "sub/0_z.sql": "SELECT 0;",
            "notes.md": "",
        },
    )
    fmt = PlainSqlFormat()
    assert fmt.detect(files)
    ms = fmt.load(files)
    assert [m.name for m in ms] == ["1_a.sql", "2_x.sql", "10_y.sql"]
    assert [m.transactional for m in ms] == [True, False, True]
    assert ms[0].checksum == hashlib.sha256(b"SELECT 1;").hexdigest()


def test_plain_sql_ledger_rows(tmp_path: Path, db: DbSession) -> None:
    files = write(tmp_path, {"1_a.sql": "CREATE TABLE a (id int);"})
    fmt = PlainSqlFormat()
    ms = fmt.load(files)
    runner.apply(fmt, runner.plan(fmt, ms, db), db)
    [(name, checksum, applied_at)] = db.execute(
        "SELECT name, checksum, applied_at FROM _branchdb_migrations"
    )
    assert (name, checksum) == ("1_a.sql", ms[0].checksum)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", applied_at)


# ---------------------------------------------------------------- shared contracts
def test_detect_format_picks_the_specific_layout(tmp_path: Path) -> None:
    layouts: dict[str, dict[str, str | bytes]] = {
        "drizzle": {"meta/_journal.json": journal(), "0000_a.sql": ""},
        "golang-migrate": {"1_a.up.sql": "", "1_a.down.sql": ""},
        "flyway": {"V1__a.sql": ""},
        "dbmate": {"20240101_a.sql": DBMATE_FILE},
        "sql": {"001_init.sql": "CREATE TABLE a (id int);"},
    }
    for name, files in layouts.items():
        assert detect_format(write(tmp_path / name, files)) == name


@pytest.mark.parametrize(
    "ddl",
    [
        *drizzle_mod._DDL["postgres"],
        *gm_mod._DDL["postgres"],
        *flyway_mod._DDL["postgres"],
    ],
)
def test_postgres_ledger_ddl_parses(ddl: str) -> None:
    assert len(pglast.parse_sql(ddl)) == 1
