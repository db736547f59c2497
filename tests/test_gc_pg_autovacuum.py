"""Idle TTL on PostgreSQL with autovacuum on: autovacuum is not a use.

A cluster of its own with autovacuum as eager as it gets (``autovacuum_naptime = 1``,
thresholds of one row), so that during the test autovacuum visits every database
many times and moves its transaction counters. A database no client touched must
still go idle; one a client used must not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pgcluster import Cluster, available, start_cluster
from support import git
from test_gc import HOUR, Clock
from test_gc_pg import pg_engine, xacts

from branchdb.daemon.gc.collector import collect

pytestmark = pytest.mark.postgres

EAGER_AUTOVACUUM = """\
autovacuum = on
autovacuum_naptime = 1
autovacuum_vacuum_threshold = 1
autovacuum_vacuum_scale_factor = 0
autovacuum_analyze_threshold = 1
autovacuum_analyze_scale_factor = 0
"""


@pytest.fixture(scope="module")
def eager_cluster() -> Iterator[Cluster]:
    if not available():
        pytest.fail("PostgreSQL binaries not found")
    cluster = start_cluster(settings=EAGER_AUTOVACUUM)
    try:
        yield cluster
    finally:
        cluster.stop()


def sessions(cluster: Cluster, database: str) -> int:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        row = c.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", [database]
        ).fetchone()
        return int(row[0]) if row else 0


def wait_for(ok: Callable[[], bool], timeout: float = 60) -> None:
    """Poll *ok* until true (the server publishes statistics asynchronously)."""
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "the statistics never showed it"
        time.sleep(0.1)


def test_autovacuum_is_not_a_use(repo: Path, eager_cluster: Cluster) -> None:
    cluster = eager_cluster
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        assert c.execute("SHOW autovacuum").fetchone() == ("on",)
        assert c.execute("SHOW autovacuum_naptime").fetchone() == ("1s",)
    clock = Clock()
    eng = pg_engine(repo, cluster, clock)
    for b in ("untouched", "used"):
        git(repo, "branch", b)
        eng.up(b)
        # Dead rows: work for autovacuum in both databases (this is a use, but
        # before the baseline sample: wait until the server has counted it).
        name = eng.get(b).database
        before = sessions(cluster, name)
        with psycopg.connect(eng.get(b).url, autocommit=True) as c:
            c.execute("CREATE TABLE t (x int)")
            c.execute("INSERT INTO t SELECT generate_series(1, 1000)")
            c.execute("DELETE FROM t")
        wait_for(lambda n=name, s=before: sessions(cluster, n) > s)
    db = {b: eng.get(b).database for b in ("untouched", "used")}
    baseline = collect(eng, dry_run=True)
    assert baseline.candidates == () and baseline.active == ()
    # Let autovacuum visit the untouched database, visibly: its transaction
    # counter moves while no client connects.
    before = xacts(cluster, db["untouched"])
    wait_for(lambda: xacts(cluster, db["untouched"]) >= before + 3)
    clock.now += 2 * HOUR  # both are past their 1h TTL now...
    used_before = sessions(cluster, db["used"])
    with psycopg.connect(eng.get("used").url) as c:  # ...but a client used one
        assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
    wait_for(lambda: sessions(cluster, db["used"]) > used_before)
    first = collect(eng, dry_run=False)
    assert first.active == ("used",)
    assert [(c.branch, c.reason) for c in first.candidates] == [("untouched", "idle")]
    # Autovacuum keeps visiting through the grace period: still no use.
    time.sleep(3)
    clock.now += 1.1 * HOUR
    second = collect(eng, dry_run=False)
    assert [c.branch for c in second.deleted] == ["untouched"]
    assert second.active == ()
    eng.down("used")
