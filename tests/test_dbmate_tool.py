"""branchdb and the real dbmate 2.36 (npm ``dbmate`` ships its binary) agree.

- a file without ``-- migrate:down`` is refused by both, with dbmate's reason;
- a ``dbmate rollback`` is seen by ``branchdb up`` and by the checkout hook;
- the ledger rows are dbmate's own (``dbmate status`` agrees with branchdb).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from nodetools import NODE_DIR
from pgcluster import Cluster
from support import run

pytestmark = pytest.mark.node

DBMATE = NODE_DIR / "node_modules" / ".bin" / "dbmate"
CONFIG = '[project]\nname = "shop"\n[migrations]\ndir = "db/migrations"\n'
USERS = "-- migrate:up\nCREATE TABLE users (id integer);\n-- migrate:down\nDROP TABLE users;\n"
ORDERS = (
    "-- migrate:up\nCREATE TABLE orders (id integer);\n"
    "-- migrate:down\nDROP TABLE orders;\n"
)


def require_dbmate() -> None:
    if DBMATE.exists():
        return
    why = f"{DBMATE} is missing (run `npm ci` in {NODE_DIR})"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def dbmate(
    repo: Path, *args: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real dbmate in *repo* (it reads ./db/migrations and $DATABASE_URL)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [str(DBMATE), "--no-dump-schema", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def versions(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT version FROM schema_migrations")]
    finally:
        con.close()


def project(repo: Path, files: dict[str, str]) -> None:
    (repo / "branchdb.toml").write_text(CONFIG)
    folder = repo / "db" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text(body)


def test_file_without_down_block_is_refused_like_dbmate(repo: Path) -> None:
    require_dbmate()
    project(
        repo, {"20240101000000_users.sql": "-- migrate:up\nCREATE TABLE u (id int);\n"}
    )
    r = run(repo, "up")
    assert r.code != 0
    reason = (
        "dbmate requires each migration to define a down block with '-- migrate:down'"
    )
    assert reason in r.err and "20240101000000_users.sql" in r.err
    # The real tool refuses it with the same words.
    p = dbmate(repo, "up", url=f"sqlite:{repo / 'plain.db'}")
    assert p.returncode != 0 and reason in p.stderr


def test_dbmate_rollback_is_seen_by_up_and_the_hook(repo: Path) -> None:
    require_dbmate()
    project(
        repo,
        {"20240101000000_users.sql": USERS, "20240102000000_orders.sql": ORDERS},
    )
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    path = Path(data["url"].removeprefix("file:"))
    assert versions(path) == ["20240101000000", "20240102000000"]
    url = f"sqlite:{path}"
    status = dbmate(repo, "status", url=url)
    assert status.returncode == 0 and "Applied: 2" in status.stdout
    # The hook: nothing changed, "up to date" from the fast path.
    r = run(repo, "up", "--hook")
    assert r.code == 0 and "up to date" in r.err
    # The team's tool rolls the newest migration back, out of band.
    p = dbmate(repo, "rollback", url=url)
    assert p.returncode == 0, p.stderr
    assert versions(path) == ["20240101000000"]
    # status reads dbmate's ledger, not branchdb's record of what it applied.
    st = json.loads(run(repo, "status", "--json").out)
    assert st["migrations_applied"] == 1
    assert st["applied"] == ["20240101000000_users.sql"]
    assert st["pending"] == ["20240102000000_orders.sql"]
    assert st["ledger"] == "schema_migrations: 1 row (newest 20240101000000)"
    r = run(repo, "up", "--hook")
    assert r.code == 0, r.err
    assert "up to date" not in r.err
    assert versions(path) == ["20240101000000", "20240102000000"]
    # And plain `up`, after another rollback.
    assert dbmate(repo, "rollback", url=url).returncode == 0
    r = run(repo, "up", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == ["20240102000000_orders.sql"]
    r = run(repo, "up")
    assert r.code == 0 and "up to date" in r.out
    status = dbmate(repo, "status", url=url)
    assert "Applied: 2" in status.stdout and "Pending: 0" in status.stdout


def test_env_write_then_plain_dbmate_status_sqlite(repo: Path) -> None:
    """`branchdb env --write .env`, then `dbmate status` with no arguments."""
    require_dbmate()
    project(repo, {"20240101000000_users.sql": USERS})
    toml = repo / "branchdb.toml"
    toml.write_text(toml.read_text() + '[database]\nurl_format = "dbmate"\n')
    assert run(repo, "up").code == 0
    r = run(repo, "env", "--write", ".env")
    assert r.code == 0, r.err
    assert (repo / ".env").read_text().startswith("DATABASE_URL=sqlite:/")
    p = dbmate(repo, "status")  # reads ./.env itself
    assert p.returncode == 0, p.stderr
    assert "[X] 20240101000000_users.sql" in p.stdout and "Applied: 1" in p.stdout


@pytest.mark.postgres
def test_env_write_then_plain_dbmate_status_postgres(
    repo: Path, pg_cluster: Cluster
) -> None:
    """The same on a PostgreSQL server without TLS (lib/pq defaults to require)."""
    require_dbmate()
    project(repo, {"20240101000000_users.sql": USERS})
    name = "dm" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n[migrations]\ndir = "db/migrations"\n'
        '[database]\nbackend = "postgres"\nurl_format = "dbmate"\n'
    )
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    r = run(repo, "up", env=env)
    assert r.code == 0, r.err
    assert run(repo, "env", "--write", ".env", env=env).code == 0
    assert "sslmode=prefer" in (repo / ".env").read_text()
    p = dbmate(repo, "status")
    assert p.returncode == 0, p.stderr
    assert "Applied: 1" in p.stdout and "Pending: 0" in p.stdout
    # The native URL (no sslmode) is what lib/pq refuses on such a server.
    native = run(repo, "url", "--format", "native", env=env).out.strip()
    p = dbmate(repo, "status", url=native)
    assert p.returncode != 0 and "SSL is not enabled on the server" in p.stderr


@pytest.mark.postgres
def test_dbmate_rollback_is_seen_on_postgres(repo: Path, pg_cluster: Cluster) -> None:
    """The same on PostgreSQL: the hook reads the ledger without psycopg."""
    require_dbmate()
    project(
        repo,
        {"20240101000000_users.sql": USERS, "20240102000000_orders.sql": ORDERS},
    )
    name = "rb" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n[migrations]\ndir = "db/migrations"\n'
        '[database]\nbackend = "postgres"\n'
    )
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    assert run(repo, "up", env=env).code == 0
    url = run(repo, "url", "--format", "dbmate", env=env).out.strip()
    r = run(repo, "up", "--hook", env=env)
    assert r.code == 0 and "up to date" in r.err
    assert dbmate(repo, "rollback", url=url).returncode == 0
    assert "Applied: 1" in dbmate(repo, "status", url=url).stdout
    r = run(repo, "up", "--hook", env=env)
    assert r.code == 0 and "up to date" not in r.err, r.err
    p = dbmate(repo, "status", url=url)
    assert "Applied: 2" in p.stdout and "Pending: 0" in p.stdout
    r = run(repo, "up", env=env)
    assert r.code == 0 and r.out.startswith("main: up to date"), r.err
