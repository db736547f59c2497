"""What does the docker backend's fallback cost? Layered clones (``[docker] clone =
"overlay2"``: a snapshot is an image, a branch a container of it) against reflink
clones on btrfs/XFS, in the same run.

Needs root, dockerd, the PostgreSQL image (``--image``, default the one .ci/docker
builds); ``--plain`` is the folder for the layered mode (default a folder under
the temp dir: ext4 here), ``--cow`` (default ``$BRANCHDB_TEST_COW_DIR``, .ci/cowfs)
a btrfs/XFS folder for the reflink mode (without one, only layers are measured).
Starts a throwaway PostgreSQL 15 cluster holding a ``pgbench -i -s SCALE`` source
(70: about 1 GiB), snapshots it in each mode, then ``--reps`` times per mode
(modes alternate; median shown):

- a branch from the snapshot until its URL answers ``SELECT count(*) FROM
  pgbench_branches`` (what ``branchdb up --from`` of a new branch waits for), with
  the backend's breakdown;
- the first write to the big table (one-row ``UPDATE`` of ``pgbench_accounts``),
  then a second one; and on a second branch, a one-row read of it first. On layers
  the first statement that touches the table copies *all* its files up (index and
  every 1 GiB segment): PostgreSQL opens relation files read-write even to read,
  and overlay2 copies a file up when it is opened for writing; the planner opens
  every segment to size the table;
- what the branch then holds on its own: the container's ``SizeRw`` (layers) or
  the clone's exclusive bytes (``btrfs filesystem du``; reflink);
- cold start: the branch stopped, then ``wake`` until its URL answers.

Then ``--branches`` branches per mode, one write each, with ``df`` of the file
system holding the data (dockerd's data root for layers; the btrfs for reflink)
before and after (other jobs on a shared machine write there too: read it with
SizeRw beside it).

Run: ``.venv/bin/python bench/bench_docker_overlay.py [--scale 70] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import psycopg
from bench_docker import answer, df_used, first_write
from pgcluster import Cluster, start_cluster

from branchdb.daemon.backends import docker_runtime
from branchdb.daemon.backends.docker_backend import DockerBackend
from branchdb.daemon.config.project import from_mapping

READ = "SELECT abalance FROM pgbench_accounts WHERE aid = %s"


def exclusive_bytes(folder: Path) -> int:
    """btrfs's own count of the bytes only *folder* holds (0 if unavailable)."""
    out = subprocess.run(
        ["btrfs", "filesystem", "du", "-s", "--raw", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return int(out[-3]) if len(out) >= 4 and out[-3].isdigit() else 0


def own_bytes(b: DockerBackend, database: str) -> int:
    c = docker_runtime.find(database)
    assert c is not None
    if docker_runtime.label(c, "clone") == "overlay2":
        return b.size_bytes(database)  # SizeRw
    return exclusive_bytes(Path(str(docker_runtime.label(c, "dir"))) / "data")


def make_backend(project: str, image: str, folder: Path, clone: str) -> DockerBackend:
    raw = {
        "project": {"name": project},
        "database": {"backend": "docker"},
        "docker": {"image": image, "dir": str(folder), "clone": clone},
    }
    return DockerBackend(from_mapping(raw, Path("/tmp"), None))


def first_read(url: str, aid: int) -> float:
    """Seconds of one primary-key lookup in the big table, on a new connection."""
    with psycopg.connect(url, autocommit=True) as c:
        t = time.perf_counter()
        c.execute(READ, (aid,)).fetchall()
        return time.perf_counter() - t


def measure(
    b: DockerBackend,
    snap: Any,
    aid: int,
    i: int,
    out: dict[str, list[float]],
    read_first: bool,
) -> None:
    branch = f"b{i}{'r' if read_first else 'w'}"
    db = b.database_name(branch)
    t = time.perf_counter()
    info = b.create(db, branch=branch, snapshot=snap, info={})
    answer(info["url"])
    out.setdefault("branch until its URL answers", []).append(time.perf_counter() - t)
    for step, secs in b.timings.items():
        out.setdefault(f"  {step}", []).append(secs)
    if read_first:
        out.setdefault("first read of pgbench_accounts (1 row)", []).append(
            first_read(info["url"], aid)
        )
        out.setdefault("MiB the branch holds after it", []).append(
            own_bytes(b, db) / 2**20
        )
    out.setdefault("first write to pgbench_accounts", []).append(
        first_write(info["url"], aid)
    )
    out.setdefault("second write (another row)", []).append(
        first_write(info["url"], aid + 1)
    )
    out.setdefault("MiB the branch holds after them", []).append(
        own_bytes(b, db) / 2**20
    )
    c = docker_runtime.find(db)
    assert c is not None
    docker_runtime.stop(c)
    t = time.perf_counter()
    b.wake(db, info)
    answer(info["url"])
    out.setdefault("cold start until its URL answers", []).append(
        time.perf_counter() - t
    )
    b.drop(db, info)


def many(b: DockerBackend, snap: Any, n: int, where: Path) -> str:
    os.sync()
    used0 = df_used(where)
    made, held, writes = [], 0, []
    t = time.perf_counter()
    for i in range(n):
        db = b.database_name(f"many/{i}")
        info = b.create(db, branch=f"many/{i}", snapshot=snap, info={})
        writes.append(first_write(info["url"], 1 + i))
        made.append((db, info))
    elapsed = time.perf_counter() - t
    os.sync()
    grew = df_used(where) - used0
    for db, _ in made:
        held += own_bytes(b, db)
    for db, info in made:
        b.drop(db, info)
    return (
        f"{n} branches, one write each: {elapsed:.1f} s (first writes "
        f"{', '.join(f'{w:.2f}' for w in writes)} s); df of {where} grew by "
        f"{grew / 2**20:,.0f} MiB ({grew / n / 2**20:,.1f} MiB a branch); the "
        f"branches' own count: {held / n / 2**20:,.1f} MiB a branch"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ≈ 1 GiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--branches", type=int, default=5)
    ap.add_argument(
        "--image", default=os.environ.get("BRANCHDB_TEST_PG_IMAGE", "local/postgres:15")
    )
    ap.add_argument("--cow", default=os.environ.get("BRANCHDB_TEST_COW_DIR"))
    ap.add_argument(
        "--plain", default=str(Path(tempfile.gettempdir()) / "branchdb-bench-overlay")
    )
    args = ap.parse_args()
    project = f"bench{uuid.uuid4().hex[:6]}"
    modes = {"overlay2": Path(args.plain) / "bench"}
    if args.cow:
        modes["reflink"] = Path(args.cow) / "bench"
    cluster = start_cluster(fsync=True, settings="max_wal_size = '4GB'")
    try:
        run(cluster, args, project, modes)
    finally:
        cluster.stop()
        for c in docker_runtime.containers(project):
            docker_runtime.remove(c)
        for v in docker_runtime.volumes(project):
            docker_runtime.remove_volume(v.name)
        flt = {"label": f"branchdb.project={project}"}
        for img in docker_runtime.client().images.list(filters=flt):
            docker_runtime.client().images.remove(img.id, force=True)
        for folder in modes.values():
            shutil.rmtree(folder / project, ignore_errors=True)


def run(
    cluster: Cluster, args: argparse.Namespace, project: str, modes: dict[str, Path]
) -> None:
    source = "prod"
    t = time.perf_counter()
    size = cluster.pgbench(source, args.scale)
    print(
        f"source: pgbench -s {args.scale}, {size / 2**30:.2f} GiB "
        f"({time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    backends, snaps = {}, {}
    for mode, folder in modes.items():
        b = backends[mode] = make_backend(project, args.image, folder, mode)
        assert b.clone_mode() == mode
        t = time.perf_counter()
        snaps[mode] = b.snapshot_create(source, 1, cluster.url(source))
        print(
            f"  {mode} snapshot create: {time.perf_counter() - t:.0f} s "
            f"({snaps[mode].size_bytes / 2**30:.2f} GiB: "
            + ("the committed layer" if mode == "overlay2" else "sealed directory")
            + ")",
            flush=True,
        )
    aid = args.scale * 100_000 // 2
    results: dict[str, dict[str, list[float]]] = {
        m + extra: {} for extra in ("", ", read first") for m in modes
    }
    # Modes alternate (the machine's drift hits both); each repetition makes two
    # branches per mode: one written first, one read first (PostgreSQL opens a
    # table's files read-write even to read them, which is what overlay2 copies
    # up on).
    for i in range(args.reps):
        for read_first in (False, True):
            for mode in modes:
                measure(backends[mode], snaps[mode], aid + 10 * i, i,
                        results[mode if not read_first else f"{mode}, read first"],
                        read_first)  # fmt: skip
    med = {
        m: {k: statistics.median(v) for k, v in r.items()} for m, r in results.items()
    }
    for mode in results:
        print(f"\n{mode}, {size / 2**30:.2f} GiB, median of {args.reps} [runs]:")
        for k, v in med[mode].items():
            runs = ", ".join(f"{x:.3f}" for x in results[mode][k])
            unit = "" if k.startswith("MiB") else " s"
            print(f"  {k:40s} {v:9.3f}{unit}   [{runs}]")
    if "reflink" in modes:
        print("\noverlay2 / reflink (medians):")
        for k in (
            "branch until its URL answers",
            "first read of pgbench_accounts (1 row)",
            "first write to pgbench_accounts",
            "second write (another row)",
            "MiB the branch holds after them",
            "cold start until its URL answers",
        ):
            mode = ", read first" if k.startswith("first read") else ""
            a, r = med["overlay2" + mode][k], med["reflink" + mode][k]
            print(
                f"  {k:40s} {a:9.3f} / {r:9.3f} = {a / r if r else float('inf'):.1f}x"
            )
    print()
    root = Path(docker_runtime.client().info()["DockerRootDir"])
    for mode in modes:
        where = root if mode == "overlay2" else modes[mode]
        print(f"{mode}: " + many(backends[mode], snaps[mode], args.branches, where))
    for mode, b in backends.items():
        b.snapshot_drop(snaps[mode])


if __name__ == "__main__":
    main()
