"""The local branch loop with backend = "postgres", end to end through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from nodetools import require_node, run_drizzle_migrator
from pgcluster import Cluster
from support import FIXTURES, git, run

pytestmark = pytest.mark.postgres

CONFIG = """\
[project]
name = "shop"
[database]
backend = "postgres"
[migrations]
dir = "drizzle"
format = "drizzle"
"""


def use_stage(repo: Path, stage: int) -> None:
    dest = repo / "drizzle"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(FIXTURES / "drizzle" / f"pg-stage{stage}", dest)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        return {r[0] for r in rows}


def ledger(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as c:
        rows = c.execute(
            'SELECT hash, created_at FROM drizzle."__drizzle_migrations" ORDER BY id'
        )
        return [(h, int(t)) for h, t in rows]


@pytest.fixture
def pg_repo(repo: Path, pg_cluster: Cluster) -> tuple[Path, dict[str, str]]:
    (repo / "branchdb.toml").write_text(CONFIG)
    use_stage(repo, 2)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "drizzle")
    # Each test gets its own project name: the cluster is shared by the session.
    name = "p" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(CONFIG.replace('"shop"', f'"{name}"'))
    return repo, {"BRANCHDB_PG_URL": pg_cluster.admin_url}


def test_branches_get_isolated_postgres_databases(
    pg_repo: tuple[Path, dict[str, str]], pg_cluster: Cluster
) -> None:
    repo, env = pg_repo
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    main = json.loads(r.out)
    assert main["applied"] == ["0000_init.sql", "0001_products.sql"]
    assert main["url"].startswith("postgresql://bdbr_")
    # The hook's fast path answers from the state store and one ledger query to the
    # branch database (standard library, no psycopg): the admin server URL is never
    # used (here it points at a closed port).
    down = {"BRANCHDB_PG_URL": "postgresql://postgres@127.0.0.1:9/postgres"}
    r = run(repo, "up", env=down)
    assert r.code == 0 and r.out.startswith("main: up to date"), r.err
    git(repo, "checkout", "-q", "-b", "feature/coupons")
    use_stage(repo, 3)
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    feat = json.loads(r.out)
    assert feat["created"] and len(feat["applied"]) == 3  # its own fresh database
    assert "public.coupons" in tables(feat["url"])
    assert "public.coupons" not in tables(main["url"])  # main untouched
    # The feature branch's credentials do not open main's database.
    feat_role = psycopg.conninfo.conninfo_to_dict(feat["url"])
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            pg_cluster.url(main["database"], feat_role["user"], feat_role["password"])
        )
    # The URL is printed with its password; errors and status never leak it.
    status = run(repo, "status", env=env)
    assert status.code == 0 and "0 pending" in status.out
    # reset keeps the URL valid.
    r = run(repo, "reset", "--json", env=env)
    assert r.code == 0, r.err
    assert json.loads(r.out)["url"] == feat["url"]
    assert "public.coupons" in tables(feat["url"])
    r = run(repo, "down", "--yes", env=env)
    assert r.code == 0, r.err
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(feat["url"])


def test_drizzle_node_postgres_migrator_agrees(
    pg_repo: tuple[Path, dict[str, str]], pg_cluster: Cluster
) -> None:
    require_node()
    repo, env = pg_repo
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    before = ledger(url)
    rows = run_drizzle_migrator("pg", repo / "drizzle", url)
    assert [(x["hash"], int(x["created_at"])) for x in rows] == before  # nothing new
    # The other way round: production migrated by drizzle, snapshotted, cloned.
    prod = f"prod_{repo.parent.name[-8:]}".lower()
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{prod}"')
    prod_url = pg_cluster.url(prod)
    run_drizzle_migrator("pg", FIXTURES / "drizzle" / "pg-stage2", prod_url)
    with psycopg.connect(prod_url) as c:
        c.execute("INSERT INTO users (email, name) VALUES ('a@example.com', 'A')")
    r = run(repo, "snapshot", "create", "prod", "--source", prod_url, env=env)
    assert r.code == 0, r.err
    use_stage(repo, 3)
    r = run(repo, "up", "feature/x", "--from", "prod", "--json", env=env)
    assert r.code == 0, r.err
    clone = json.loads(r.out)
    assert clone["applied"] == ["0002_nickname_coupons.sql"]
    with psycopg.connect(clone["url"]) as c:
        assert c.execute("SELECT email FROM users").fetchall() == [("a@example.com",)]
    rows = run_drizzle_migrator("pg", repo / "drizzle", clone["url"])
    assert len(rows) == 3 and ledger(clone["url"]) == [
        (x["hash"], int(x["created_at"])) for x in rows
    ]
    # The source was only read; the clone's role cannot reach the snapshot.
    assert "public.coupons" not in tables(prod_url)
    assert len(ledger(prod_url)) == 2


def test_failing_and_non_transactional_migrations(
    pg_repo: tuple[Path, dict[str, str]],
) -> None:
    repo, env = pg_repo
    cfg = (repo / "branchdb.toml").read_text()
    cfg = cfg.replace('dir = "drizzle"', 'dir = "sql"').replace(
        'format = "drizzle"', 'format = "sql"'
    )
    (repo / "branchdb.toml").write_text(cfg)
    sql = repo / "sql"
    sql.mkdir()
    (sql / "001_t.sql").write_text(
        "CREATE TABLE t (id int PRIMARY KEY, v text);\n"
        "DO $$ BEGIN INSERT INTO t VALUES (1, 'a;b'); END $$;\n"
    )
    (sql / "002_idx.sql").write_text("CREATE INDEX CONCURRENTLY t_v ON t (v);\n")
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    with psycopg.connect(url) as c:
        assert c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 't'")
    (sql / "003_bad.sql").write_text(
        "CREATE TABLE half (id int);\nINSERT INTO nope VALUES (1);\n"
    )
    r = run(repo, "up", env=env)
    assert r.code != 0 and "003_bad.sql" in r.err and "statement 2" in r.err
    assert 'relation "nope" does not exist' in r.err
    assert "public.half" not in tables(url)  # rolled back whole
    assert "password" not in r.err.lower() or "***" in r.err
