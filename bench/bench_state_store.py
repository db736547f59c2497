"""What the PostgreSQL state store costs per operation, next to the SQLite store.

    .venv/bin/python bench/bench_state_store.py [--n 2000]

Starts a throwaway PostgreSQL 15 cluster. For each store it times (median per call,
microseconds) the operations on the daemon's hot paths: reading a branch record (every
``GET`` of a URL), refreshing its last use, claiming a webhook delivery, and taking and
releasing the cross-replica per-branch lock. Baselines from the same run: a bare
``SELECT 1`` over one psycopg connection and over sqlite3, so the ratios show what the
store adds over the driver round-trip itself.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import start_cluster

from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.store.base import Store
from branchdb.daemon.store.postgres_store import PostgresStore
from branchdb.daemon.store.sqlite_store import SqliteStore


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    """Median over 5 rounds of the mean time of one call, in microseconds."""
    rounds = []
    for r in range(5):
        t = time.perf_counter()
        for i in range(n):
            fn(r * n + i)
        rounds.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(rounds)


def measure(store: Store, n: int) -> dict[str, float]:
    store.put_branch(
        BranchRecord("shop", "feature/x", "db", "libsql", "fresh", "ready", 1.0, 1.0)
    )
    return {
        "get_branch": per_call_us(lambda i: store.get_branch("shop", "feature/x"), n),
        "touch_branch": per_call_us(
            lambda i: store.touch_branch("shop", "feature/x", float(i)), n
        ),
        "claim_delivery": per_call_us(
            lambda i: store.claim_delivery("github", f"d{i}", "shop", "push", 1.0), n
        ),
        "lock+unlock": per_call_us(lambda i: _lock_once(store), n // 10),
    }


def _lock_once(store: Store) -> None:
    with store.lock("branch\0shop\0feature/x"):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    cluster = start_cluster()
    try:
        with psycopg.connect(cluster.admin_url, autocommit=True) as c:
            c.execute("CREATE DATABASE state")
            pg_select = per_call_us(lambda i: c.execute("SELECT 1").fetchone(), n)
        with tempfile.TemporaryDirectory() as d:
            raw = sqlite3.connect(Path(d) / "raw.db")
            lite_select = per_call_us(lambda i: raw.execute("SELECT 1").fetchone(), n)
            lite = SqliteStore(Path(d) / "state.db")
            lite_ops = measure(lite, n)
            lite.close()
        pg = PostgresStore(cluster.url("state"))
        pg_ops = measure(pg, n)
        pg.close()
    finally:
        cluster.stop()
    print(
        f"baseline SELECT 1: sqlite3 {lite_select:.1f} us, psycopg {pg_select:.1f} us"
    )
    print(f"{'operation':<16}{'sqlite us':>11}{'postgres us':>13}{'pg/SELECT 1':>13}")
    for op, lt in lite_ops.items():
        p = pg_ops[op]
        print(f"{op:<16}{lt:>11.1f}{p:>13.1f}{p / pg_select:>13.2f}")


if __name__ == "__main__":
    main()
