"""libsql branches on a copy-on-write file system: the same clone, O(1) instead of
O(size).

The libsql backend clones a snapshot file with a reflink (``FICLONE``) where the
file system has them, else ``copy_file_range``. This builds a SQLite source of
``--mib`` MiB, snapshots it into two data directories — one on the btrfs/XFS
folder ``--cow`` (default ``$BRANCHDB_TEST_COW_DIR``, see .ci/cowfs), one on
``--plain`` (default /var/tmp) — and times ``LibsqlBackend.create`` of a branch
from it in each, ``--reps`` times (median), plus the disk each clone takes there
(``df``).

Run: ``.venv/bin/python bench/bench_libsql_cow.py [--mib 1024] [--reps 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from branchdb.daemon.backends.libsql_backend import LibsqlBackend
from branchdb.daemon.config.project import from_mapping


def source(path: Path, mib: int) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
    for _ in range(mib):
        con.execute("INSERT INTO blobs (b) VALUES (randomblob(1048576))")
    con.commit()
    con.close()


def used(folder: Path) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def measure(where: Path, src: Path, reps: int) -> tuple[float, str, float, list[float]]:
    data = Path(tempfile.mkdtemp(prefix="libsql-cow-", dir=where))
    raw = {"project": {"name": "bench"}, "database": {"data_dir": str(data)}}
    backend = LibsqlBackend(from_mapping(raw, data, None))
    try:
        snap = backend.snapshot_create("prod", 1, str(src))
        runs, strategies = [], set()
        os.sync()
        before = used(data)
        names = []
        for i in range(reps):
            db = backend.database_name(f"b{i}")
            t = time.perf_counter()
            info = backend.create(db, branch=f"b{i}", snapshot=snap, info={})
            runs.append(time.perf_counter() - t)
            strategies.add(str(info["strategy"]))
            names.append((db, info))
        os.sync()
        grown = (used(data) - before) / reps
        for db, info in names:
            backend.drop(db, info)
        return statistics.median(runs), ",".join(sorted(strategies)), grown, runs
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cow", default=os.environ.get("BRANCHDB_TEST_COW_DIR"))
    ap.add_argument("--plain", default="/var/tmp")
    args = ap.parse_args()
    if not args.cow:
        sys.exit("give --cow (a btrfs/XFS folder) or set BRANCHDB_TEST_COW_DIR")
    work = Path(tempfile.mkdtemp(prefix="libsql-src-", dir=args.plain))
    try:
        src = work / "source.db"
        t = time.perf_counter()
        source(src, args.mib)
        print(
            f"source: {src.stat().st_size / 2**20:.0f} MiB SQLite file "
            f"({time.perf_counter() - t:.1f} s)"
        )
        out = {}
        for label, where in (("copy-on-write", args.cow), ("plain", args.plain)):
            med, strategy, grown, runs = measure(Path(where), src, args.reps)
            out[label] = med
            print(
                f"  {label:14s} {where}: clone {med:.3f} s median "
                f"[{', '.join(f'{r:.3f}' for r in runs)}], strategy {strategy}, "
                f"{grown / 2**20:.1f} MiB of disk per branch"
            )
        print(f"plain / copy-on-write: {out['plain'] / out['copy-on-write']:.0f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
