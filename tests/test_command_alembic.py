"""``format = "command"`` with the real alembic: what ran, what its ledger says.

alembic's ledger is ``alembic_version`` (one row: the head revision). branchdb does
not read alembic's migrations, so after running the command it reports that row;
``status`` shows it; ``up -v`` shows the command's output; and an out-of-band
``alembic downgrade`` is seen by ``up`` (the ledger is part of the fingerprint).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from support import run

ENV_PY = """\
import os
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(os.environ["DATABASE_URL"])
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""
REVISION = """\
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = {down}


def upgrade():
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))
    print("created {table}")


def downgrade():
    op.drop_table("{table}")
"""
CONFIG = """\
[project]
name = "shop"
[database]
url_format = "sqlalchemy"
[migrations]
format = "command"
command = "alembic upgrade head"
"""
ALEMBIC = str(Path(sys.executable).with_name("alembic"))


def alembic_project(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(CONFIG)
    (repo / "alembic.ini").write_text("[alembic]\nscript_location = alembic\n")
    versions = repo / "alembic" / "versions"
    versions.mkdir(parents=True)
    (repo / "alembic" / "env.py").write_text(ENV_PY)
    (versions / "a1_users.py").write_text(
        REVISION.format(rev="a1", down="None", table="users")
    )
    (versions / "b2_orders.py").write_text(
        REVISION.format(rev="b2", down='"a1"', table="orders")
    )


def alembic(repo: Path, *args: str, url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    env["PATH"] = f"{Path(ALEMBIC).parent}:{env['PATH']}"
    subprocess.run([ALEMBIC, *args], cwd=repo, env=env, check=True, capture_output=True)


def head(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
    finally:
        con.close()


def test_alembic_command_reports_what_ran_and_its_ledger(repo: Path) -> None:
    alembic_project(repo)
    path_env = {"PATH": f"{Path(ALEMBIC).parent}:{os.environ['PATH']}"}
    r = run(repo, "up", "-v", env=path_env)
    assert r.code == 0, r.err
    first = r.out.splitlines()[0]
    assert first == (
        "main: created (fresh), ran `alembic upgrade head`: alembic_version = b2 "
        "(was none)"
    )
    assert "created users" in r.out and "created orders" in r.out  # -v: its output
    url = run(repo, "url", "--format", "path").out.strip()
    assert head(Path(url)) == ["b2"]
    s = run(repo, "status", "--json", env=path_env)
    assert s.code == 0, s.err
    data = json.loads(s.out)
    assert data["ledger"] == "alembic_version = b2" and data["problem"] is None
    text = run(repo, "status", env=path_env).out
    assert "ledger:      alembic_version = b2" in text
    assert "0 applied, 0 pending" not in text  # the old answer, true of nothing
    # Nothing changed: the hook's fast path.
    r = run(repo, "up", env=path_env)
    assert r.out.startswith("main: up to date"), r.err
    # alembic downgrades out of band: up runs the command again.
    alembic(repo, "downgrade", "a1", url=f"sqlite:///{url}")
    assert head(Path(url)) == ["a1"]
    r = run(repo, "up", env=path_env)
    assert r.code == 0, r.err
    assert "alembic_version = b2 (was alembic_version = a1)" in r.out
    assert head(Path(url)) == ["b2"]
