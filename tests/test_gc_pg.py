"""GC on a real PostgreSQL 15 cluster: real client connections count as use."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from pgcluster import Cluster
from support import git
from test_gc import HOUR, Clock

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.gc.collector import collect

pytestmark = pytest.mark.postgres


def pg_engine(repo: Path, cluster: Cluster, clock: Clock) -> Engine:
    name = "g" + repo.parent.name[-12:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n[database]\nbackend = "postgres"\n'
        f'server = "{cluster.admin_url}"\n[branches]\nttl = "1h"\ngrace = "1h"\n'
    )
    return Engine(config_mod.load(cwd=repo), clock=clock)


def xacts(cluster: Cluster, database: str) -> int:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        row = c.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = %s",
            [database],
        ).fetchone()
        return int(row[0]) if row else 0


def client_query(cluster: Cluster, url: str, database: str) -> None:
    """A real client: connect with the branch's URL, query, disconnect; then wait
    for the server to publish that session's statistics (it does so as the
    session's process exits, just after the client has gone)."""
    before = xacts(cluster, database)
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM pg_class").fetchone()
    deadline = time.monotonic() + 30
    while xacts(cluster, database) == before:
        assert time.monotonic() < deadline, "statistics never flushed"
        time.sleep(0.05)


def databases(cluster: Cluster) -> set[str]:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database")}


def test_real_connections_keep_an_idle_branch(repo: Path, pg_cluster: Cluster) -> None:
    clock = Clock()
    eng = pg_engine(repo, pg_cluster, clock)
    for b in ("used", "idle", "held"):
        git(repo, "branch", b)
        eng.up(b)
    db = {b: eng.get(b).database for b in ("used", "idle", "held")}
    baseline = collect(eng, dry_run=True)  # the first sample: a baseline, not a use
    assert baseline.candidates == () and baseline.active == ()
    clock.now += 2 * HOUR  # all three are idle past their TTL now...
    client_query(pg_cluster, eng.get("used").url, db["used"])  # ...but one is used
    held = psycopg.connect(eng.get("held").url)  # and one has a session open
    try:
        first = collect(eng, dry_run=False)
        assert first.active == ("held", "used")
        assert [(c.branch, c.reason) for c in first.candidates] == [("idle", "idle")]
        assert eng.get("used").last_used_at == clock.now
        clock.now += 0.5 * HOUR
        client_query(pg_cluster, eng.get("idle").url, db["idle"])  # used in grace
        clock.now += 0.6 * HOUR
        second = collect(eng, dry_run=False)
        assert second.deleted == () and "idle" in second.active
        assert db["idle"] in databases(pg_cluster)
        # "used" went idle again (marked by the second run); nobody touches
        # anything for a while: "used" and "idle" go, "held" (its session is
        # still open) stays.
        clock.now += 2 * HOUR
        runs = [collect(eng, dry_run=False)]
        clock.now += 1.1 * HOUR
        runs.append(collect(eng, dry_run=False))
        third = runs[-1]
        gone = sorted(c.branch or "" for r in runs for c in r.deleted)
        assert gone == ["idle", "used"]
        assert all(r.active == ("held",) for r in runs)
        left = databases(pg_cluster)
        assert db["held"] in left and not {db["used"], db["idle"]} & left
        assert held.execute("SELECT 1").fetchone() == (1,)  # never interrupted
    finally:
        held.close()
    assert third.totals.collected_databases == 2
    assert third.totals.by_reason["idle"].bytes > 0
