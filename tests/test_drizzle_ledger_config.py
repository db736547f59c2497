"""drizzle's configurable ledger (``migrations: { table, schema }``), with the real
drizzle-orm migrators: branchdb writes and reads the same table, both directions."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import psycopg
import pytest
from nodetools import require_node, run_drizzle_migrator
from pgcluster import Cluster
from support import FIXTURES, git, run

from branchdb.daemon.migrations.formats.drizzle import config_ledger

pytestmark = pytest.mark.node

DRIZZLE = FIXTURES / "drizzle"
DRIZZLE_CONFIG = """\
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "%s",
  schema: "./src/schema.ts",
  out: "./drizzle",
  migrations: {
    table: "app_migrations",
    schema: "ops",
  },
});
"""


def test_config_ledger_reads_literal_strings(tmp_path: Path) -> None:
    assert config_ledger(tmp_path) == (None, None)
    (tmp_path / "drizzle.config.ts").write_text(DRIZZLE_CONFIG % "sqlite")
    assert config_ledger(tmp_path) == ("app_migrations", "ops")
    (tmp_path / "drizzle.config.ts").write_text("export default { out: 'x' }")
    assert config_ledger(tmp_path) == (None, None)


def use_stage(repo: Path, dialect: str, stage: int) -> None:
    dest = repo / "drizzle"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(DRIZZLE / f"{dialect}-stage{stage}", dest)


def test_sqlite_custom_table_from_drizzle_config(repo: Path) -> None:
    require_node()
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[migrations]\ndir = "drizzle"\n'
    )
    (repo / "drizzle.config.ts").write_text(DRIZZLE_CONFIG % "sqlite")
    use_stage(repo, "sqlite", 2)
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    path = url.removeprefix("file:")
    con = sqlite3.connect(path)
    names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    assert "app_migrations" in names and "__drizzle_migrations" not in names
    # drizzle (same table) applies only stage 3's new migration, then branchdb
    # agrees; before, drizzle re-ran migration 0 into an existing schema and failed.
    use_stage(repo, "sqlite", 3)
    rows = run_drizzle_migrator("libsql", repo / "drizzle", url, "app_migrations")
    assert len(rows) == 3
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == []


@pytest.mark.postgres
def test_postgres_custom_table_and_schema_from_toml(
    repo: Path, pg_cluster: Cluster
) -> None:
    require_node()
    name = "dl" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n[database]\nbackend = "postgres"\n'
        '[migrations]\ndir = "drizzle"\nformat = "drizzle"\n'
        'table = "app_migrations"\nschema = "ops"\n'
    )
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    git(repo, "checkout", "-q", "-b", "feature/ledger")
    use_stage(repo, "pg", 2)
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    with psycopg.connect(url) as c:
        rows = c.execute('SELECT count(*) FROM ops."app_migrations"').fetchone()
        assert rows == (2,)
        default = c.execute("SELECT to_regclass('drizzle.__drizzle_migrations')")
        assert default.fetchone() == (None,)
    use_stage(repo, "pg", 3)
    rows = run_drizzle_migrator("pg", repo / "drizzle", url, "app_migrations", "ops")
    assert len(rows) == 3
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == []
    st = json.loads(run(repo, "status", "--json", env=env).out)
    assert st["migrations_applied"] == 3 and st["pending"] == []
