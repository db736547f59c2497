"""Issue #6 deletion target: drop 1,000 collectable PostgreSQL branch databases while
the server keeps answering a concurrent client. Paced vs unpaced, same run.

    .venv/bin/python bench/bench_gc_pg.py [--n 1000] [--pace 1.0] [--workers 2]

Starts a throwaway PostgreSQL 15 cluster (fsync on, tests/pgcluster.py). For each
mode (``gc.pace = 0``: unpaced, then ``gc.pace = --pace``) it creates ``--n``
branch databases through ``Engine.up`` (fresh: a WAL_LOG copy of template0, the
smallest database there is), makes them all collectable (idle past a 1 h TTL, grace
0), and runs ``Engine.gc`` while another *process* runs ``SELECT 1`` on its own
connection in a loop. Prints deletions/s, the probe's p50/p99/max latency during
the run against an idle baseline measured the same way (plus a one-row INSERT
probe: writes wait on the WAL flush, which checkpoints compete with), the
checkpoints the server performed (PostgreSQL's DROP DATABASE forces one, so no
client can avoid them), and the rate of bare ``DROP DATABASE`` statements (no
branchdb) as the floor.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import Cluster, start_cluster

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.config.project import GcSection
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.gc.collector import collect


def probe(url: str, stop: Any, out: Connection) -> None:
    """Until *stop* is set: ``SELECT 1``, then a one-row committed INSERT (a
    write waits for the WAL flush, which competes with checkpoints), in a loop.
    Sends both latency lists (s)."""
    reads: list[float] = []
    writes: list[float] = []
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS probe (at float8)")
        while not stop.is_set():
            t = time.perf_counter()
            c.execute("SELECT 1").fetchone()
            u = time.perf_counter()
            c.execute("INSERT INTO probe VALUES (%s)", [u])
            reads.append(u - t)
            writes.append(time.perf_counter() - u)
            time.sleep(0.002)  # a steady client, not a CPU hog on 2 cores
    out.send((reads, writes))


class Probe:
    def __init__(self, url: str) -> None:
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=probe, args=(url, self.stop, send))

    def __enter__(self) -> Probe:
        self.proc.start()
        time.sleep(1.0)  # connected and warm
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.latencies, self.writes = self.recv.recv()
        self.proc.join()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000


def describe(lat: list[float]) -> str:
    return (
        f"p50 {pct(lat, 50):6.2f} ms  p99 {pct(lat, 99):7.2f} ms  "
        f"max {max(lat) * 1000:7.1f} ms  ({len(lat)} queries)"
    )


def checkpoints(cluster: Cluster) -> int:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        row = c.execute(
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        ).fetchone()
        assert row is not None
        return int(row[0])


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_branches(root: Path, n: int, workers: int, clock: Clock) -> float:
    local = threading.local()  # SQLite connections are per thread

    def up(i: int) -> None:
        if not hasattr(local, "engine"):
            local.engine = Engine(config_mod.load(cwd=root), clock=clock)
        local.engine.up(f"feature/b{i:04d}")

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(up, range(n)))
    return time.perf_counter() - t


def run_mode(
    cluster: Cluster, root: Path, n: int, pace: float, workers: int
) -> dict[str, Any]:
    clock = Clock()
    took = make_branches(root, n, workers, clock)
    print(f"  created {n} branch databases in {took:.1f} s ({n / took:.1f}/s)")
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        c.execute("CHECKPOINT")  # start from a clean slate
    engine = Engine(config_mod.load(cwd=root), clock=clock)
    engine.config = engine.config._replace(gc=GcSection(pace=pace))
    clock.now += 2 * 3600  # all idle past the 1 h TTL; grace is 0
    cp = checkpoints(cluster)
    with Probe(cluster.admin_url) as pr:
        t = time.perf_counter()
        report = collect(engine, dry_run=False)
        took = time.perf_counter() - t
    deleted = len(report.deleted)
    assert deleted == n, f"deleted {deleted} of {n}"
    assert not engine.list_branches()
    return {
        "rate": deleted / took,
        "seconds": took,
        "lat": pr.latencies,
        "writes": pr.writes,
        "checkpoints": checkpoints(cluster) - cp,
    }


def bare_drops(cluster: Cluster, m: int) -> float:
    """Baseline: plain CREATE DATABASE … TEMPLATE template0, then DROP DATABASE
    of each (no branchdb); returns drops per second."""
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        for i in range(m):
            c.execute(f"CREATE DATABASE bare_{i} TEMPLATE template0")
        c.execute("CHECKPOINT")
        t = time.perf_counter()
        for i in range(m):
            c.execute(f"DROP DATABASE bare_{i}")
        return m / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pace", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bare", type=int, default=20, help="bare drops for the baseline")
    args = ap.parse_args()
    cluster = start_cluster(fsync=True, settings="max_connections = 200")
    work = Path(tempfile.mkdtemp(prefix="branchdb-bench-gcpg-"))
    try:
        (work / "branchdb.toml").write_text(
            '[project]\nname = "bench"\n[database]\nbackend = "postgres"\n'
            f'server = "{cluster.admin_url}"\n'
            '[branches]\nttl = "1h"\ngrace = "0s"\n'
        )
        print(f"PostgreSQL 15 at 127.0.0.1:{cluster.port}, fsync on, n={args.n}")
        with Probe(cluster.admin_url) as idle:
            time.sleep(5)
        print(f"idle baseline:      SELECT 1 {describe(idle.latencies)}")
        print(f"                    INSERT   {describe(idle.writes)}")
        bare = bare_drops(cluster, args.bare)
        print(f"bare DROP DATABASE (no branchdb, {args.bare}): {bare:.2f} drops/s")
        results = {}
        for label, pace in (("unpaced", 0.0), (f"paced {args.pace:g}", args.pace)):
            print(f"{label}:")
            r = run_mode(cluster, work, args.n, pace, args.workers)
            results[label] = r
            print(
                f"  gc: {args.n} deletions in {r['seconds']:.1f} s "
                f"= {r['rate']:.1f} deletions/s, {r['checkpoints']} checkpoints"
            )
            print(f"  concurrent SELECT 1: {describe(r['lat'])}")
            print(f"  concurrent INSERT:   {describe(r['writes'])}")
        print("summary (concurrent latency as a multiple of idle; deletions/s):")
        for label, r in results.items():
            ratios = []
            for key, base in (("lat", idle.latencies), ("writes", idle.writes)):
                name = "SELECT 1" if key == "lat" else "INSERT"
                ratios.append(
                    f"{name} p50 {pct(r[key], 50) / pct(base, 50):4.1f}x "
                    f"p99 {pct(r[key], 99) / pct(base, 99):4.1f}x"
                )
            print(
                f"  {label:9s} {'; '.join(ratios)}; {r['rate']:5.2f} deletions/s "
                f"= {r['rate'] / bare:4.0%} of bare DROP DATABASE"
            )
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
