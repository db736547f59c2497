"""How fast is a branch on the docker backend? Ratios against the postgres backend's
template clone of the same data, in the same run.

Needs root, dockerd, the PostgreSQL image (``--image``, default the one .ci/docker
builds) and a btrfs/XFS folder (``--cow``, default ``$BRANCHDB_TEST_COW_DIR``; see
.ci/cowfs). Starts a throwaway PostgreSQL 15 cluster (fsync on) holding ``pgbench
-i`` sources of about 1 GiB and 4 GiB; snapshots each with both backends; then,
for each size, ``--reps`` times (median shown):

- docker: ``DockerBackend.create`` from the snapshot until the branch answers
  ``SELECT count(*) FROM pgbench_branches`` through its URL (what ``branchdb up
  --from`` of a new branch waits for), with the breakdown (prepare: port and
  volume; clone; container create; start; ready: until PostgreSQL takes
  connections; seal: the rename) and the first write to the big table
  (``pgbench_accounts``) on a new connection;
- postgres: ``PostgresBackend.create`` of a clone of the same data on the plain
  server, until its URL answers the same query; the same first write;
- cold start: the docker branch stopped (scale to zero), then ``wake`` until its
  URL answers.

Then 20 branches of the 1 GiB snapshot, each writing one row, with the file
system's own accounting (``btrfs filesystem du -s`` of the folder, ``df``) before
and after.

Run: ``.venv/bin/python bench/bench_docker.py [--scales 70,280] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import Cluster, start_cluster

from branchdb.daemon.backends import cow, docker_runtime
from branchdb.daemon.backends.docker_backend import DockerBackend
from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config.project import from_mapping

QUERY = "SELECT count(*) FROM pgbench_branches"
WRITE = "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = %s"


def sql(cluster: Cluster, stmt: str, db: str = "postgres") -> list[tuple[Any, ...]]:
    with psycopg.connect(cluster.url(db), autocommit=True) as c:
        cur = c.execute(stmt)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def answer(url: str) -> None:
    with psycopg.connect(url, connect_timeout=10) as c:
        c.execute(QUERY).fetchall()


def first_write(url: str, aid: int) -> float:
    """Seconds of one committed UPDATE of a row in the middle of the big table."""
    with psycopg.connect(url, autocommit=True) as c:
        t = time.perf_counter()
        c.execute(WRITE, (aid,))
        return time.perf_counter() - t


def fs_usage(folder: Path) -> str:
    du = (
        subprocess.run(
            ["btrfs", "filesystem", "du", "-s", "--raw", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        .stdout.strip()
        .splitlines()
    )
    st = os.statvfs(folder)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    got = du[-1].split()[:3] if du else []
    btrfs = "btrfs du total {} B, exclusive {} B, shared {} B".format(*got)
    return (
        btrfs if len(got) == 3 else "(btrfs du unavailable)"
    ) + f"; df used {used:,} B"


def df_used(folder: Path) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="70,280", help="pgbench scales (70 ≈ 1 GiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--branches", type=int, default=20)
    ap.add_argument(
        "--image", default=os.environ.get("BRANCHDB_TEST_PG_IMAGE", "local/postgres:15")
    )
    ap.add_argument("--cow", default=os.environ.get("BRANCHDB_TEST_COW_DIR"))
    args = ap.parse_args()
    if not args.cow:
        sys.exit("give --cow (a btrfs/XFS folder) or set BRANCHDB_TEST_COW_DIR")
    project = f"bench{uuid.uuid4().hex[:6]}"
    cluster = start_cluster(fsync=True, settings="max_wal_size = '4GB'")
    folder = Path(args.cow) / "bench"
    try:
        run(cluster, args, project, folder)
    finally:
        cluster.stop()
        for c in docker_runtime.containers(project):
            docker_runtime.remove(c)
        for v in docker_runtime.volumes(project):
            docker_runtime.remove_volume(v.name)
        shutil.rmtree(folder / project, ignore_errors=True)


def backends(
    cluster: Cluster, args: argparse.Namespace, project: str, folder: Path
) -> tuple[DockerBackend, PostgresBackend]:
    raw: dict[str, Any] = {
        "project": {"name": project},
        "database": {"backend": "docker"},
        "docker": {"image": args.image, "dir": str(folder)},
    }
    docker = DockerBackend(from_mapping(raw, Path("/tmp"), None))
    raw = {
        "project": {"name": project},
        "database": {"backend": "postgres", "server": cluster.admin_url},
    }
    return docker, PostgresBackend(from_mapping(raw, Path("/tmp"), None))


def measure(
    docker: DockerBackend,
    pg: PostgresBackend,
    cluster: Cluster,
    dsnap: Any,
    psnap: Any,
    scale: int,
    i: int,
    results: dict[str, list[float]],
) -> None:
    """One repetition on one size: docker branch, cold start, clone alone, and the
    postgres backend's clone of the same data."""
    aid = scale * 100_000 // 2
    branch = f"s{scale}/b{i}"
    db = docker.database_name(branch)
    t = time.perf_counter()
    info = docker.create(db, branch=branch, snapshot=dsnap, info={})
    answer(info["url"])
    results.setdefault("docker: branch until its URL answers", []).append(
        time.perf_counter() - t
    )
    for step, secs in docker.timings.items():
        results.setdefault(f"  {step}", []).append(secs)
    results.setdefault("docker: first write to pgbench_accounts", []).append(
        first_write(info["url"], aid)
    )
    c = docker_runtime.find(db)
    assert c is not None
    docker_runtime.stop(c)
    t = time.perf_counter()
    docker.wake(db, info)
    answer(info["url"])
    results.setdefault("docker: cold start until its URL answers", []).append(
        time.perf_counter() - t
    )
    docker.drop(db, info)
    spare = docker.area / f"clone-{i}"
    t = time.perf_counter()
    cow.clone_tree(Path(dsnap.location), spare)
    results.setdefault("  (the reflink clone alone)", []).append(
        time.perf_counter() - t
    )
    shutil.rmtree(spare)

    pdb = pg.database_name(branch)
    sql(cluster, "CHECKPOINT")
    t = time.perf_counter()
    pinfo = pg.create(pdb, branch=branch, snapshot=psnap, info={})
    answer(pinfo["url"])
    results.setdefault("postgres: template clone until URL answers", []).append(
        time.perf_counter() - t
    )
    results.setdefault("postgres: first write to pgbench_accounts", []).append(
        first_write(pinfo["url"], aid)
    )
    pg.drop(pdb, pinfo)


def run(cluster: Cluster, args: argparse.Namespace, project: str, folder: Path) -> None:
    docker, pg = backends(cluster, args, project, folder)
    scales = [int(s) for s in args.scales.split(",")]
    medians: dict[int, dict[str, float]] = {}
    snaps: dict[int, Any] = {}
    sizes: dict[int, float] = {}
    psnaps: dict[int, Any] = {}
    for scale in scales:  # every snapshot first: the timed runs then interleave
        source = f"prod{scale}"
        t = time.perf_counter()
        size = cluster.pgbench(source, scale)
        sizes[scale] = size / 2**30
        print(
            f"source {source}: pgbench -s {scale}, {size / 2**30:.2f} GiB "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
        t = time.perf_counter()
        snaps[scale] = docker.snapshot_create(source, 1, cluster.url(source))
        print(
            f"  docker snapshot create: {time.perf_counter() - t:.0f} s, "
            f"{snaps[scale].size_bytes / 2**30:.2f} GiB sealed data directory",
            flush=True,
        )
        t = time.perf_counter()
        psnaps[scale] = pg.snapshot_create(source, 1, cluster.url(source))
        print(
            f"  postgres snapshot create: {time.perf_counter() - t:.0f} s", flush=True
        )
        sql(cluster, f"DROP DATABASE {source}")  # the template is the baseline's copy

    results: dict[int, dict[str, list[float]]] = {s: {} for s in scales}
    # Sizes alternate within each repetition, so that the machine's drift (other
    # jobs on its two cores) lands on both alike.
    for i in range(args.reps):
        for scale in scales:
            measure(docker, pg, cluster, snaps[scale], psnaps[scale], scale, i,
                    results[scale])  # fmt: skip
    for scale in scales:
        med = {k: statistics.median(v) for k, v in results[scale].items()}
        medians[scale] = med
        print(f"\n{sizes[scale]:.2f} GiB, median of {args.reps} (runs in s):")
        for k, v in med.items():
            runs = ", ".join(f"{x:.3f}" for x in results[scale][k])
            print(f"  {k:46s} {v:7.3f} s   [{runs}]")
        ratio = (
            med["postgres: template clone until URL answers"]
            / med["docker: branch until its URL answers"]
        )
        print(f"  postgres backend clone / docker branch: {ratio:.1f}x")
        pg.snapshot_drop(psnaps[scale])
    print()

    if len(scales) > 1:
        small, big = (medians[s]["docker: branch until its URL answers"] for s in
                      (scales[0], scales[-1]))  # fmt: skip
        print(
            f"docker branch, largest / smallest source: {big / small:.2f}x "
            "(goal <= 1.2x: size-independent)"
        )

    snap = snaps[scales[0]]
    n = args.branches
    area = docker.area
    before, used0 = fs_usage(area), df_used(area)
    made = []
    t = time.perf_counter()
    for i in range(n):
        branch = f"many/{i}"
        db = docker.database_name(branch)
        info = docker.create(db, branch=branch, snapshot=snap, info={})
        first_write(info["url"], 1 + i)
        made.append((db, info))
    elapsed = time.perf_counter() - t
    os.sync()
    after, used1 = fs_usage(area), df_used(area)
    print(
        f"\n{n} branches of the {snap.size_bytes / 2**30:.2f} GiB snapshot, one "
        f"write each: {elapsed:.1f} s\n  before: {before}\n  after:  {after}\n"
        f"  df grew by {(used1 - used0) / 2**20:.0f} MiB "
        f"({(used1 - used0) / n / 2**20:.1f} MiB a branch; a full copy each would be "
        f"{n * snap.size_bytes / 2**30:.1f} GiB)"
    )
    for db, info in made:
        docker.drop(db, info)
    for s in snaps.values():
        docker.snapshot_drop(s)


if __name__ == "__main__":
    main()
