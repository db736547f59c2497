"""Each format's checksum is its tool's, byte for byte: CRLF, a UTF-8 BOM, no final
newline.

drizzle runs for real (drizzle-orm's migrators, SQLite and PostgreSQL) in both
directions: branchdb first then drizzle, and drizzle first then branchdb. Prisma's,
flyway's and golang-migrate's binaries cannot be installed here, so their behaviour
is pinned to values computed by their published source (cited per test).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
import pytest
from nodetools import require_node, run_drizzle_migrator
from pgcluster import Cluster
from support import git, run

from branchdb.daemon.core.models import Applied
from branchdb.daemon.migrations import runner
from branchdb.daemon.migrations.base import DirFiles
from branchdb.daemon.migrations.formats.dbmate import DbmateFormat
from branchdb.daemon.migrations.formats.flyway import FlywayFormat, flyway_checksum
from branchdb.daemon.migrations.formats.golang_migrate import GolangMigrateFormat
from branchdb.daemon.migrations.formats.prisma import PrismaFormat

#: The three shapes of one file that editors and git produce.
CRLF = (
    b"CREATE TABLE a (id integer);\r\n--> statement-breakpoint\r\n"
    b"CREATE TABLE b (id integer);\r\n"
)
BOM = b"\xef\xbb\xbfCREATE TABLE c (id integer);\n"
NO_FINAL_NEWLINE = b"CREATE TABLE d (id integer);"


def write_drizzle(folder: Path, files: list[tuple[str, bytes]], dialect: str) -> None:
    """A drizzle-kit ``out`` folder: a journal plus the raw bytes of each file."""
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    entries = [
        {
            "idx": i,
            "version": "7",
            "when": 1700000000000 + i,
            "tag": tag,
            "breakpoints": True,
        }
        for i, (tag, _) in enumerate(files)
    ]
    journal = {"version": "7", "dialect": dialect, "entries": entries}
    (folder / "meta" / "_journal.json").write_text(json.dumps(journal))
    for tag, body in files:
        (folder / f"{tag}.sql").write_bytes(body)


def raw_ledger(files: list[tuple[str, bytes]]) -> list[tuple[str, int]]:
    """What drizzle-orm writes: sha256 of the raw file, journal ``when``."""
    return [
        (hashlib.sha256(body).hexdigest(), 1700000000000 + i)
        for i, (_, body) in enumerate(files)
    ]


SQLITE_FILES = [("0000_crlf", CRLF), ("0001_bom", BOM), ("0002_nonl", NO_FINAL_NEWLINE)]
SQLITE_CONFIG = (
    '[project]\nname = "shop"\n[migrations]\ndir = "drizzle"\nformat = "drizzle"\n'
)


def sqlite_ledger(url: str) -> list[tuple[str, int]]:
    import sqlite3

    con = sqlite3.connect(url.removeprefix("file:"))
    try:
        rows = con.execute(
            'SELECT hash, created_at FROM "__drizzle_migrations" ORDER BY rowid'
        )
        return [(h, int(c)) for h, c in rows]
    finally:
        con.close()


@pytest.mark.node
def test_drizzle_sqlite_branchdb_then_drizzle(repo: Path) -> None:
    require_node()
    (repo / "branchdb.toml").write_text(SQLITE_CONFIG)
    write_drizzle(repo / "drizzle", SQLITE_FILES, "sqlite")
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    assert sqlite_ledger(url) == raw_ledger(SQLITE_FILES)
    rows = run_drizzle_migrator("libsql", repo / "drizzle", url)
    assert [(x["hash"], int(x["created_at"])) for x in rows] == raw_ledger(SQLITE_FILES)


@pytest.mark.node
def test_drizzle_sqlite_drizzle_then_branchdb(repo: Path) -> None:
    """drizzle-kit migrate first (its raw hashes), then branchdb: nothing "edited"."""
    require_node()
    (repo / "branchdb.toml").write_text(SQLITE_CONFIG)
    write_drizzle(repo / "drizzle", [], "sqlite")
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    write_drizzle(repo / "drizzle", SQLITE_FILES, "sqlite")
    rows = run_drizzle_migrator("libsql", repo / "drizzle", url)
    assert len(rows) == 3
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == []
    # A rebuild applies them itself, with the same hashes drizzle wrote.
    r = run(repo, "reset", "--force", "--json")
    assert r.code == 0, r.err
    assert sqlite_ledger(url) == raw_ledger(SQLITE_FILES)


PG_CONFIG = """\
[project]
name = "{name}"
[database]
backend = "postgres"
[migrations]
dir = "drizzle"
format = "drizzle"
"""
PG_FILES = [("0000_crlf", CRLF), ("0001_nonl", NO_FINAL_NEWLINE)]


def pg_ledger(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as c:
        rows = c.execute(
            'SELECT hash, created_at FROM drizzle."__drizzle_migrations" ORDER BY id'
        )
        return [(h, int(t)) for h, t in rows]


@pytest.mark.node
@pytest.mark.postgres
def test_drizzle_postgres_both_directions(repo: Path, pg_cluster: Cluster) -> None:
    require_node()
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    name = "ck" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(PG_CONFIG.format(name=name))
    git(repo, "checkout", "-q", "-b", "first")
    write_drizzle(repo / "drizzle", PG_FILES, "postgresql")
    # branchdb first, then drizzle: same rows, nothing re-applied.
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    assert pg_ledger(url) == raw_ledger(PG_FILES)
    rows = run_drizzle_migrator("pg", repo / "drizzle", url)
    assert [(x["hash"], x["created_at"]) for x in rows] == raw_ledger(PG_FILES)
    # drizzle first, then branchdb.
    git(repo, "checkout", "-q", "-b", "second")
    write_drizzle(repo / "drizzle", [], "postgresql")
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    write_drizzle(repo / "drizzle", PG_FILES, "postgresql")
    run_drizzle_migrator("pg", repo / "drizzle", url)
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == []
    assert pg_ledger(url) == raw_ledger(PG_FILES)


@pytest.mark.node
@pytest.mark.postgres
def test_drizzle_postgres_bom_fails_in_both(repo: Path, pg_cluster: Cluster) -> None:
    """drizzle sends a BOM to PostgreSQL, which rejects it; so does branchdb."""
    require_node()
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    name = "bom" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(PG_CONFIG.format(name=name))
    write_drizzle(repo / "drizzle", [("0000_bom", BOM)], "postgresql")
    r = run(repo, "up", env=env)
    assert r.code != 0
    assert 'syntax error at or near "\ufeffCREATE"' in r.err
    prod = f"bom_{repo.parent.name[-8:]}".lower()
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{prod}"')
    with pytest.raises(RuntimeError, match='syntax error at or near "\ufeffCREATE"'):
        run_drizzle_migrator("pg", repo / "drizzle", pg_cluster.url(prod))


# ------------------------------------------------------------ prisma (pinned)
# prisma-engines schema-engine/connectors/schema-connector/src/checksum.rs:
# render_checksum = hex sha256 of the script read with read_to_string (BOM kept);
# script_matches_checksum also accepts the script with CRLF->LF and LF->CRLF, and
# non-zero-padded hex from old versions (prisma-engines issue 1887).
LF_SCRIPT = "CREATE TABLE a (id integer);\nCREATE TABLE b (id integer);\n"


def prisma_files(tmp_path: Path, body: bytes) -> DirFiles:
    d = tmp_path / "20240101000000_init"
    d.mkdir(parents=True, exist_ok=True)
    (d / "migration.sql").write_bytes(body)
    return DirFiles(tmp_path)


def test_prisma_checksum_pins(tmp_path: Path) -> None:
    fmt = PrismaFormat()
    [m] = fmt.load(prisma_files(tmp_path, LF_SCRIPT.encode()))
    assert m.checksum == hashlib.sha256(LF_SCRIPT.encode()).hexdigest()
    # The file was applied by prisma with LF; git turned it into CRLF: still applied.
    crlf = LF_SCRIPT.replace("\n", "\r\n").encode()
    [m_crlf] = fmt.load(prisma_files(tmp_path, crlf))
    assert m_crlf.checksum == hashlib.sha256(crlf).hexdigest()
    plan = runner.evaluate(fmt, [m_crlf], [Applied(m.key, m.checksum)], {})
    assert plan.pending == []
    # ... and the other way round.
    plan = runner.evaluate(fmt, [m], [Applied(m.key, m_crlf.checksum)], {})
    assert plan.pending == []
    # A BOM or a missing final newline is a different script to prisma (its test
    # script_matches_checksum_negative: "abc\n" does not match "abc").
    for other in (b"\xef\xbb\xbf" + LF_SCRIPT.encode(), LF_SCRIPT.encode()[:-1]):
        [changed] = fmt.load(prisma_files(tmp_path, other))
        assert changed.checksum == hashlib.sha256(other).hexdigest()
        with pytest.raises(Exception, match="changed since it was applied"):
            runner.evaluate(fmt, [changed], [Applied(m.key, m.checksum)], {})
    # An old prisma wrote hex without zero padding.
    digest = hashlib.sha256(LF_SCRIPT.encode()).digest()
    unpadded = "".join(f"{b:x}" for b in digest)
    [m] = fmt.load(prisma_files(tmp_path, LF_SCRIPT.encode()))
    assert runner.evaluate(fmt, [m], [Applied(m.key, unpadded)], {}).pending == []


def test_prisma_render_checksum_matches_prisma_engines_test_vector() -> None:
    # prisma-engines' own test: render_checksum("hello") ==
    assert (
        hashlib.sha256(b"hello").hexdigest()
        == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    from branchdb.daemon.migrations.formats.prisma import matching_checksums

    # and script_matches_checksum_is_line_ending_agnostic's scripts.
    a, b = "ab\ncd\nef\ngh\rab", "ab\r\ncd\r\nef\r\ngh\rab"
    assert hashlib.sha256(a.encode()).hexdigest() in matching_checksums(b)
    assert hashlib.sha256(b.encode()).hexdigest() in matching_checksums(a)
    assert hashlib.sha256(b"abc").hexdigest() not in matching_checksums("abc\n")


# ------------------------------------------------------------ flyway (pinned)
# flyway-core ChecksumCalculator.calculateChecksumForResource: CRC32 over
# BufferedReader.readLine() lines (terminators dropped), BomFilter on the first
# line, each line's UTF-8 bytes; stored as (int) crc32.getValue().
FLYWAY_SCRIPT = "CREATE TABLE a (id integer);\nCREATE TABLE b (id integer);\n"
#: Computed with Java's own BufferedReader.readLine and java.util.zip.CRC32 (the code
#: above, run under OpenJDK 17 for every variant below).
FLYWAY_PINNED = -786950858
FLYWAY_MID_BOM = -171229221


def test_flyway_checksum_pins(tmp_path: Path) -> None:
    lf = FLYWAY_SCRIPT.encode()
    variants = {
        "lf": lf,
        "crlf": FLYWAY_SCRIPT.replace("\n", "\r\n").encode(),
        "cr": FLYWAY_SCRIPT.replace("\n", "\r").encode(),
        "bom": b"\xef\xbb\xbf" + lf,
        "no final newline": lf[:-1],
    }
    for what, body in variants.items():
        assert flyway_checksum(body) == FLYWAY_PINNED, what
    (tmp_path / "V1__init.sql").write_bytes(variants["crlf"])
    [m] = FlywayFormat().load(DirFiles(tmp_path))
    assert m.checksum == str(FLYWAY_PINNED)
    # A BOM is only dropped at the start of the file; a blank line counts nothing.
    assert flyway_checksum(lf + b"\n\n") == FLYWAY_PINNED
    assert flyway_checksum(lf.replace(b"\n", b"\n\xef\xbb\xbf", 1)) == FLYWAY_MID_BOM


# ------------------------------------- golang-migrate and dbmate (no checksum)
# Neither tool records a checksum (golang-migrate: schema_migrations(version,
# dirty); dbmate: schema_migrations(version)), so neither refuses an edited file.
# branchdb's own record (it warns about real edits) ignores line endings and a BOM.


def test_golang_migrate_line_endings_are_not_edits(tmp_path: Path) -> None:
    fmt = GolangMigrateFormat()
    lf = b"CREATE TABLE a (id integer);\n"
    (tmp_path / "1_a.up.sql").write_bytes(lf)
    [m] = fmt.load(DirFiles(tmp_path))
    for body in (lf.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + lf):
        (tmp_path / "1_a.up.sql").write_bytes(body)
        [again] = fmt.load(DirFiles(tmp_path))
        assert again.checksum == m.checksum
    # A record made before (sha256 of the raw bytes) still matches.
    (tmp_path / "1_a.up.sql").write_bytes(lf.replace(b"\n", b"\r\n"))
    [crlf] = fmt.load(DirFiles(tmp_path))
    old = {"1": hashlib.sha256(lf.replace(b"\n", b"\r\n")).hexdigest()}
    assert runner.evaluate(fmt, [crlf], [Applied("1")], old).pending == []
    # A real edit is still one.
    (tmp_path / "1_a.up.sql").write_bytes(b"CREATE TABLE b (id integer);\n")
    [edited] = fmt.load(DirFiles(tmp_path))
    with pytest.raises(Exception, match="changed since it was applied"):
        runner.evaluate(fmt, [edited], [Applied("1")], {"1": m.checksum})


def test_dbmate_line_endings_are_not_edits(tmp_path: Path) -> None:
    fmt = DbmateFormat()
    lf = b"-- migrate:up\nCREATE TABLE a (id integer);\n-- migrate:down\n"
    (tmp_path / "1_a.sql").write_bytes(lf)
    [m] = fmt.load(DirFiles(tmp_path))
    (tmp_path / "1_a.sql").write_bytes(lf.replace(b"\n", b"\r\n"))
    [crlf] = fmt.load(DirFiles(tmp_path))
    assert crlf.checksum == m.checksum and "refused" not in crlf.meta


def test_drizzle_rows_written_with_normalised_crlf_still_match(tmp_path: Path) -> None:
    """branchdb 0.1 recorded CRLF files with LF endings; drizzle never compares
    hashes, so those databases must not turn "edited"."""
    from branchdb.daemon.migrations.formats.drizzle import DrizzleFormat

    write_drizzle(tmp_path, [("0000_crlf", CRLF)], "sqlite")
    fmt = DrizzleFormat()
    [m] = fmt.load(DirFiles(tmp_path))
    old = hashlib.sha256(CRLF.replace(b"\r\n", b"\n")).hexdigest()
    assert runner.evaluate(fmt, [m], [Applied(m.key, old)], {}).pending == []


def test_ledger_fingerprint_ignores_app_tables(tmp_path: Path) -> None:
    import sqlite3

    from branchdb.daemon.migrations.files import sqlite_ledger_fingerprint

    path = tmp_path / "x.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE schema_migrations (version varchar(128) primary key);"
        "INSERT INTO schema_migrations VALUES ('1');"
        "CREATE TABLE users (id integer);"
    )
    con.commit()
    before = sqlite_ledger_fingerprint(str(path))
    con.execute("INSERT INTO users VALUES (1)")
    con.commit()
    assert sqlite_ledger_fingerprint(str(path)) == before  # app writes: no re-plan
    con.execute("DELETE FROM schema_migrations")
    con.commit()
    rolled_back = sqlite_ledger_fingerprint(str(path))
    assert rolled_back != before
    # A custom ledger (drizzle's migrations.table) counts: by name, or by "migration".
    con.execute("CREATE TABLE my_migrations_log (x)")
    con.commit()
    assert sqlite_ledger_fingerprint(str(path)) != rolled_back
    con.close()
