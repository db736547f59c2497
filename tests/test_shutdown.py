"""SIGTERM in the middle of a clone, on a real ``branchdb serve`` (PostgreSQL branch
server, PostgreSQL state store, as a deployment runs it): the daemon stops taking
requests, lets the clone job finish or abandons it safely, exits 0 and holds no lock
afterwards; what is left is the branch complete or nothing at all — no temp
database, no half-made database under its final name, no stray login role, no record
of a database that is not there — and the next start is clean."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from apisupport import auth, branches
from pgcluster import Cluster
from storesupport import fresh_database
from support import run
from test_recovery import (
    BR,
    Daemon,
    daemons,
    pg_databases,
    pg_project,
    pg_roles,
    wait_for,
)

from branchdb.daemon.backends.pg_admin import tmp_prefix
from branchdb.daemon.core import naming
from branchdb.daemon.store.postgres_store import PostgresStore

__all__ = ["daemons"]  # the fixture, shared with test_recovery
pytestmark = pytest.mark.postgres


def advisory_locks(cluster: Cluster, state_db: str) -> int:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = %s",
            (state_db,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_sigterm_during_a_clone_leaves_the_branch_complete_or_absent(
    repo: Path, pg_cluster: Cluster, daemons: Callable[..., Daemon]
) -> None:
    project, env = pg_project(repo, pg_cluster)
    branch = "feature/big"
    branches(repo, branch)
    with fresh_database(pg_cluster) as state_url:
        state_db = state_url.rsplit("/", 1)[1]
        env = {**env, "BRANCHDB_STATE_URL": state_url}
        src = f"{project}_src"
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{src}"')
            c.execute(f'CREATE DATABASE "{src}"')
        with psycopg.connect(pg_cluster.url(src), autocommit=True) as c:
            c.execute(  # ~100 MB: a clone that takes a moment
                "CREATE TABLE pad AS SELECT g AS id, repeat('x', 900) AS filler "
                "FROM generate_series(1, 100000) g"
            )
        r = run(
            repo, "snapshot", "create", "big", "--source", pg_cluster.url(src), env=env
        )
        assert r.code == 0, r.err
        r = run(repo, "token", "create", "--scope", "ci", env=env)
        assert r.code == 0, r.err
        tok = r.out.strip()
        d = daemons(repo, env)
        d.start()
        url = f"{d.base}{BR.format(project=project)}/{branch}"
        final = naming.pg_database(project, branch)
        prefix = tmp_prefix(final)
        started = httpx.put(
            url, params={"from": "big", "wait": "false"}, headers=auth(tok)
        )
        assert started.status_code == 202, started.text

        def cloning() -> bool:
            names = pg_databases(pg_cluster)
            return final in names or any(n.startswith(prefix) for n in names)

        wait_for(cloning)
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=90) == 0, d.log.read_text()
        assert "Application shutdown complete" in d.log.read_text()
        # Nothing of the old process holds a lock in the state store.
        assert advisory_locks(pg_cluster, state_db) == 0

        def state() -> tuple[str | None, set[str], bool]:
            store = PostgresStore(state_url)
            try:
                rec = store.get_branch(project, branch)
            finally:
                store.close()
            dbs = set(pg_databases(pg_cluster))
            role = naming.pg_role(project, branch) in pg_roles(pg_cluster)
            return (rec.status if rec else None), dbs, role

        status, dbs, role = state()
        assert not any(n.startswith(prefix) for n in dbs), dbs
        # Complete (a ready record, its database, its role) or absent (none of them).
        assert (status, final in dbs, role) in (
            ("ready", True, True),
            (None, False, False),
        ), (status, final in dbs, role)
        complete = status == "ready"

        d.start()  # ready: start-up recovery has run
        assert state() == (status, dbs, role)  # it had nothing to clean
        again = httpx.put(url, params={"from": "big"}, headers=auth(tok), timeout=120)
        assert again.status_code == (200 if complete else 201), again.text
        with psycopg.connect(again.json()["url"]) as c:
            assert c.execute("SELECT count(*) FROM pad").fetchone() == (100000,)
        d.stop()
        with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE "{src}"')
