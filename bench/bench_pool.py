"""The postgres warm pool (issue #16): `up --from` and `reset` of a 1 GiB branch when
a spare is ready, against a plain template clone and bare ``CREATE DATABASE …
TEMPLATE`` in the same run, on the same server.

Starts a throwaway PostgreSQL 15 cluster (fsync on), builds a source database of
about 1 GiB with ``pgbench -i``, snapshots it with ``branchdb snapshot create``, then
times, interleaved, each ``--reps`` times (median shown; a CHECKPOINT before each,
so one run's dirty buffers do not land on the next; spares are made between runs by
``snapshot warm``, never while a run is timed):

- bare ``CREATE DATABASE … TEMPLATE snapshot STRATEGY FILE_COPY`` (the floor of any
  template clone);
- ``Engine.up(branch, from_snapshot=…)`` and ``Engine.reset(branch)`` (what the CLI
  and the daemon run: role, database, hand-over, one migration), with an empty pool
  (template clone) and with a spare ready;
- the real CLI, ``branchdb up --from`` and ``branchdb reset`` with a spare ready
  (process start and imports included), and ``branchdb ls`` as the floor of any CLI
  command (interpreter, imports, configuration, state store).

Target: up --from and reset with a spare <= 0.5 s.

Run: ``.venv/bin/python bench/bench_pool.py [--scale 70] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import Cluster, start_cluster

from branchdb.daemon.config.project import load
from branchdb.daemon.core.engine import Engine

CLI = Path(sys.executable).with_name("branchdb")
TARGET = 0.5


def sql(cluster: Cluster, stmt: str, db: str = "postgres") -> list[tuple[object, ...]]:
    with psycopg.connect(cluster.url(db), autocommit=True) as c:
        cur = c.execute(stmt)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def project(cluster: Cluster) -> Path:
    """A git repository with one migration, configured for *cluster*."""
    repo = Path(tempfile.mkdtemp(prefix="branchdb-bench-pool-"))
    (repo / "migrations").mkdir()
    (repo / "migrations" / "001_notes.sql").write_text("CREATE TABLE notes (id int);\n")
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "bench"\n[database]\nbackend = "postgres"\n'
        f'server = "{cluster.admin_url}"\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n'
    )
    for cmd in (
        "git init -q -b main",
        "git add -A",
        "git -c user.email=b@b -c user.name=b commit -q -m init",
    ):
        subprocess.run(cmd, shell=True, cwd=repo, check=True)
    return repo


def cli(repo: Path, *args: str) -> None:
    subprocess.run([str(CLI), *args], cwd=repo, check=True, capture_output=True)


def timed(cluster: Cluster, fn: Callable[[], object]) -> float:
    sql(cluster, "CHECKPOINT")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ≈ 1 GiB)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cluster = start_cluster(fsync=True, settings="max_wal_size = '4GB'")
    repo = project(cluster)
    try:
        run(cluster, repo, args.scale, args.reps)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
        cluster.stop()


def run(cluster: Cluster, repo: Path, scale: int, reps: int) -> None:
    t = time.perf_counter()
    cluster.pgbench("prod", scale)
    print(f"source: pgbench -s {scale}, built in {time.perf_counter() - t:.1f} s")
    engine = Engine(load(cwd=repo))
    t = time.perf_counter()
    snap = engine.snapshot_create("prod", cluster.url("prod"))
    print(
        f"snapshot create: {time.perf_counter() - t:.1f} s, "
        f"{snap.size_bytes / 2**30:.2f} GiB"
    )

    def warm() -> float:
        start = time.perf_counter()
        engine.snapshot_warm("prod", 1)
        return time.perf_counter() - start

    results: dict[str, list[float]] = {}
    strategies: dict[str, set[str]] = {}

    def note(label: str, seconds: float, strategy: str | None = None) -> None:
        results.setdefault(label, []).append(seconds)
        if strategy is not None:
            strategies.setdefault(label, set()).add(strategy)

    making: list[float] = []
    for i in range(reps):
        bare = f"bare_{i}"
        note(
            "bare CREATE DATABASE TEMPLATE (FILE_COPY)",
            timed(
                cluster,
                lambda bare=bare: sql(
                    cluster,
                    f'CREATE DATABASE "{bare}" TEMPLATE "{snap.location}" '
                    "STRATEGY FILE_COPY",
                ),
            ),
        )
        sql(cluster, f'DROP DATABASE "{bare}"')

        for pooled in (False, True):
            kind = "spare ready" if pooled else "empty pool"
            branch = f"{'p' if pooled else 'c'}{i}"
            if pooled:
                making.append(warm())
            got: dict[str, str] = {}
            note(
                f"Engine.up --from ({kind})",
                timed(
                    cluster,
                    lambda b=branch, got=got: got.update(
                        s=engine.up(b, from_snapshot="prod").record.info["strategy"]
                    ),
                ),
            )
            strategies.setdefault(f"Engine.up --from ({kind})", set()).add(got["s"])
            if pooled:
                making.append(warm())
            note(
                f"Engine.reset ({kind})",
                timed(
                    cluster,
                    lambda b=branch, got=got: got.update(
                        s=engine.reset(b).record.info["strategy"]
                    ),
                ),
            )
            strategies.setdefault(f"Engine.reset ({kind})", set()).add(got["s"])
            engine.down(branch)

        if CLI.exists():
            # The floor of any CLI command: interpreter, imports, config, store.
            note(
                "CLI branchdb ls (the CLI's own floor)",
                timed(cluster, lambda: cli(repo, "ls")),
            )
            branch = f"cli{i}"
            making.append(warm())
            note(
                "CLI branchdb up --from (spare ready)",
                timed(cluster, lambda b=branch: cli(repo, "up", b, "--from", "prod")),
            )
            making.append(warm())
            note(
                "CLI branchdb reset (spare ready)",
                timed(cluster, lambda b=branch: cli(repo, "reset", b)),
            )
            cli(repo, "down", branch, "--yes")

    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["bare CREATE DATABASE TEMPLATE (FILE_COPY)"]
    print(
        f"\nmedian of {reps} (all runs in s); making one spare (untimed "
        f"above): median {statistics.median(making):.2f} s"
    )
    for k, v in med.items():
        runs = ", ".join(f"{x:.2f}" for x in results[k])
        how = f" strategy {sorted(strategies[k])}" if k in strategies else ""
        print(f"  {k:42s} {v:6.2f} s  {v / base:5.2f}x bare   [{runs}]{how}")
    print()
    for verb in ("up --from", "reset"):
        spare = med[f"Engine.{verb} (spare ready)"]
        clone = med[f"Engine.{verb} (empty pool)"]
        ok = "OK" if spare <= TARGET else "MISSED"
        print(
            f"{verb:10s} with a spare: {spare:.3f} s (target <= {TARGET} s: {ok}); "
            f"{clone / spare:.1f}x faster than the template clone, "
            f"{base / spare:.1f}x faster than bare CREATE DATABASE TEMPLATE"
        )


if __name__ == "__main__":
    main()
