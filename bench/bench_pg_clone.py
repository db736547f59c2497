"""How fast is a branch database on PostgreSQL? Ratios from one run on one server.

Starts a throwaway PostgreSQL 15 cluster (fsync on), builds a source database of at
least 1 GiB with ``pgbench -i``, snapshots it with the postgres backend, then times,
interleaved, each repeated ``--reps`` times (median shown, a CHECKPOINT before each so
one run's dirty buffers do not land on the next):

- bare ``CREATE DATABASE … TEMPLATE snapshot STRATEGY WAL_LOG`` and ``FILE_COPY``;
- ``PostgresBackend.create`` of a clone (what ``branchdb up`` of a new branch does:
  role, temp database, ownership hand-over, privileges, rename);
- the real CLI, ``branchdb up`` on a new branch (when the console script exists);
- ``pg_dump -Fc | pg_restore`` of the source into a new database.

Run: ``.venv/bin/python bench/bench_pg_clone.py [--scale 70] [--reps 3]``.
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
from pgcluster import PG_BIN, Cluster, start_cluster

from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import naming
from branchdb.daemon.core.models import SnapshotRecord


def sql(cluster: Cluster, stmt: str, db: str = "postgres") -> list[tuple[object, ...]]:
    with psycopg.connect(cluster.url(db), autocommit=True) as c:
        cur = c.execute(stmt)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


CLI = Path(sys.executable).with_name("branchdb")


def cli(repo: Path, *args: str) -> None:
    subprocess.run([str(CLI), *args], cwd=repo, check=True, capture_output=True)


def cli_repo(cluster: Cluster) -> Path:
    """A git repository configured for the postgres backend on *cluster*."""
    repo = Path(tempfile.mkdtemp(prefix="branchdb-bench-"))
    for cmd in (
        "git init -q -b main",
        "git -c user.email=b@b -c user.name=b commit -q --allow-empty -m init",
    ):
        subprocess.run(cmd, shell=True, cwd=repo, check=True)
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "bench"\n[database]\nbackend = "postgres"\n'
        f'server = "{cluster.admin_url}"\n'
    )
    return repo


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
    try:
        run(cluster, args.scale, args.reps)
    finally:
        cluster.stop()


def run(cluster: Cluster, scale: int, reps: int) -> None:
    sql(cluster, "CREATE DATABASE prod")
    t = time.perf_counter()
    subprocess.run(
        [
            *(f"{PG_BIN}/pgbench", "-q", "-i", "-s", str(scale), "-h", "127.0.0.1"),
            *("-p", str(cluster.port), "-U", "postgres", "prod"),
        ],
        check=True,
        capture_output=True,
    )
    size = int(sql(cluster, "SELECT pg_database_size('prod')")[0][0])  # type: ignore[arg-type]
    print(
        f"source: pgbench -s {scale}, {size / 2**30:.2f} GiB, built in "
        f"{time.perf_counter() - t:.1f} s"
    )

    raw = {"project": {"name": "bench"}, "database": {"backend": "postgres"}}
    raw["database"]["server"] = cluster.admin_url
    backend = PostgresBackend(from_mapping(raw, Path("/tmp"), None))
    repo = cli_repo(cluster) if CLI.exists() else None
    t = time.perf_counter()
    if repo:  # the CLI records the snapshot in its store: `up` can clone it
        cli(repo, "snapshot", "create", "prod", "--source", cluster.url("prod"))
        with open(repo / "branchdb.toml", "a") as f:
            f.write('from = "prod"\n')
        location = naming.pg_snapshot_database("bench", "prod", 1)
        snap = SnapshotRecord("bench", "prod", 1, "postgres", location, 0.0, "prod")
        snap.size_bytes = backend.size_bytes(location)
    else:
        snap = backend.snapshot_create("prod", 1, cluster.url("prod"))
    print(
        f"snapshot create (dump|restore + VACUUM FREEZE + seal): "
        f"{time.perf_counter() - t:.1f} s, {snap.size_bytes / 2**30:.2f} GiB"
    )

    results: dict[str, list[float]] = {}
    strategies: set[str] = set()
    for i in range(reps):
        for strategy in ("WAL_LOG", "FILE_COPY"):
            name = f"bare_{strategy.lower()}_{i}"
            results.setdefault(f"CREATE DATABASE TEMPLATE ({strategy})", []).append(
                timed(
                    cluster,
                    lambda n=name, s=strategy: sql(
                        cluster,
                        f'CREATE DATABASE "{n}" TEMPLATE "{snap.location}" STRATEGY {s}',
                    ),
                )
            )
            sql(cluster, f'DROP DATABASE "{name}"')
        branch = f"feature/{i}"
        db = naming.pg_database("bench", branch)
        info: dict[str, object] = {}

        def up(
            db: str = db, branch: str = branch, info: dict[str, object] = info
        ) -> None:
            info.update(backend.create(db, branch=branch, snapshot=snap, info={}))

        results.setdefault("backend.create clone (branchdb up)", []).append(
            timed(cluster, up)
        )
        strategies.add(str(info["strategy"]))
        backend.drop(db, info)

        if repo:
            subprocess.run(["git", "checkout", "-q", "-b", f"cli/{i}"], cwd=repo)
            results.setdefault("CLI `branchdb up` (new branch)", []).append(
                timed(cluster, lambda r=repo: cli(r, "up"))
            )
            cli(repo, "down", "--yes")

        target = f"restored_{i}"
        sql(cluster, f'CREATE DATABASE "{target}"')
        pipe = (
            f"{PG_BIN}/pg_dump -Fc -h 127.0.0.1 -p {cluster.port} -U postgres prod | "
            f"{PG_BIN}/pg_restore -h 127.0.0.1 -p {cluster.port} -U postgres "
            f"-d {target}"
        )
        results.setdefault("pg_dump -Fc | pg_restore", []).append(
            timed(cluster, lambda p=pipe: subprocess.run(p, shell=True, check=True))
        )
        sql(cluster, f'DROP DATABASE "{target}"')

    backend.snapshot_drop(snap)
    if repo:
        shutil.rmtree(repo, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["CREATE DATABASE TEMPLATE (FILE_COPY)"]
    print(f"\nmedian of {reps} (all runs in s), backend strategy: {sorted(strategies)}")
    for k, v in med.items():
        runs = ", ".join(f"{x:.2f}" for x in results[k])
        print(f"  {k:42s} {v:7.2f} s  {v / base:5.2f}x FILE_COPY   [{runs}]")
    bare = min(med["CREATE DATABASE TEMPLATE (WAL_LOG)"], base)
    dump = med["pg_dump -Fc | pg_restore"]
    for label in (
        "backend.create clone (branchdb up)",
        "CLI `branchdb up` (new branch)",
    ):
        if label in med:
            print(
                f"\n{label} / fastest bare template copy: {med[label] / bare:.2f}x "
                f"(goal <= 1.2x); pg_dump|pg_restore is {dump / med[label]:.1f}x slower"
            )


if __name__ == "__main__":
    main()
