"""Issue #4 target: sanitized snapshot throughput >= 50% of a bare COPY out-and-in.

    .venv/bin/python bench/bench_sanitize.py [--rows 2000000] [--reps 3]

Starts a throwaway PostgreSQL 15 cluster (fsync on) and fills one table with
``--rows`` rows: an email (unique), a name, a phone and a ~100-byte payload. Then, in
the same run:

- baseline: ``COPY people TO STDOUT`` streamed into ``COPY people FROM STDIN`` of an
  empty copy of the table in another database;
- branchdb: ``PostgresBackend.snapshot_create`` with rules masking email, name and
  phone — what ``branchdb snapshot create --rules`` runs (daemon/sanitize/stream_pg.py):
  detect on the source, ``pg_dump`` of the schema only, binary ``COPY`` of the rows
  into an UNLOGGED raw table, ``INSERT … SELECT <masked>`` into the real table (two
  halves in parallel; one SHA-256 per masked value, fakes read from its bytes with
  ``get_byte``), verify that no original survives (originals' lengths and generator
  forms counted in one scan, so values that cannot match are not probed; name words
  and emails in free text on a second connection, then ``VACUUM (FREEZE)`` of the
  masked tables), indexes and constraints, then the backend's
  ``VACUUM (FREEZE, ANALYZE)`` and seal.

Prints rows/s for both, the ratio and the sanitizer's phases (seconds).

Measured on a 2-core machine shared with other jobs (load average 0.9 to 2.7):
2,000,000 rows: COPY 98,118 rows/s (20.4 s), sanitized 51,339 rows/s (39.0 s): 52%
(phases copy 8.2 s, mask 12.7 s, verify 12.8 s, post-data 4.4 s); two more runs:
49% (COPY 17.2 s, sanitized 35.2 s) and 57% (COPY 24.6 s, sanitized 43.3 s); on the
quiet machine afterwards 69%, 42% and 49% (mask 9.4-13.8 s, verify 8.8-15.9 s for the
same work). Those runs did not checkpoint between steps, so whichever run met the
fill's (or the other run's) checkpoint paid for it. With a CHECKPOINT before each timed
run, ``--reps 3``: 40%, 38%, 44% (median 40%): the target is not met. 200,000 rows: 117,081 vs
40,751 rows/s (35%): fixed costs (schema, ANALYZE, seal) weigh more there. Masking
is bound by PostgreSQL's sha256() (~1.2 µs a call through OpenSSL, one per masked
value); the verifier by splitting names into words (regex) and one scan of the
originals.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import start_cluster

from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config import from_mapping
from branchdb.daemon.sanitize.rules import parse_rules

TABLE = """CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL UNIQUE,
    full_name text NOT NULL, phone text NOT NULL, payload text NOT NULL)"""
FILL = """INSERT INTO people
SELECT g, 'person' || g || '@example.org', 'Name' || g || ' Surname' || (g %% 997),
       '+1 555 ' || lpad((g %% 10000000)::text, 7, '0'), repeat(md5(g::text), 3)
FROM generate_series(1, %s) g"""
RULES = """salt = "bench"
[tables.people]
columns.email = "email"
columns.full_name = "name"
columns.phone = "phone"
columns.payload = "keep"
"""


def checkpoint(admin_url: str) -> None:
    """Start each timed run with no dirty buffers left by the previous step (the
    fill, the other run), so neither pays for the other's checkpoint."""
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute("CHECKPOINT")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--reps", type=int, default=1, help="alternating runs of both")
    args = ap.parse_args()
    cluster = start_cluster(fsync=True)
    try:
        with psycopg.connect(cluster.admin_url, autocommit=True) as c:
            c.execute("CREATE DATABASE src")
            c.execute("CREATE DATABASE copy_target")
        with psycopg.connect(cluster.url("src")) as c:
            c.execute(TABLE)
            c.execute(FILL, (args.rows,))
        with psycopg.connect(cluster.url("src"), autocommit=True) as c:
            c.execute("VACUUM ANALYZE people")
        with psycopg.connect(cluster.url("copy_target")) as c:
            c.execute(TABLE)

        cfg = from_mapping(
            {
                "project": {"name": "bench"},
                "database": {"backend": "postgres", "server": cluster.admin_url},
            },
            Path(tempfile.gettempdir()),
            None,
        )
        backend = PostgresBackend(cfg)
        ratios: list[float] = []
        for rep in range(1, args.reps + 1):
            with psycopg.connect(cluster.url("copy_target"), autocommit=True) as c:
                c.execute("TRUNCATE people")
            checkpoint(cluster.admin_url)
            t0 = time.perf_counter()
            with (
                psycopg.connect(cluster.url("src")) as src,
                psycopg.connect(cluster.url("copy_target")) as dst,
                src.cursor().copy("COPY people TO STDOUT") as out,
                dst.cursor().copy("COPY people FROM STDIN") as into,
            ):
                for chunk in out:
                    into.write(chunk)
            copy_s = time.perf_counter() - t0

            checkpoint(cluster.admin_url)
            t0 = time.perf_counter()
            snap = backend.snapshot_create(
                "prod",
                rep,
                cluster.url("src"),
                rules=parse_rules(RULES, source="bench rules"),
            )
            san_s = time.perf_counter() - t0
            ratios.append(copy_s / san_s)
            print(f"rows: {args.rows}  (run {rep} of {args.reps})")
            print(
                f"bare COPY out-and-in: {copy_s:7.2f} s"
                f"  {args.rows / copy_s:10.0f} rows/s"
            )
            print(
                f"sanitized snapshot:   {san_s:7.2f} s"
                f"  {args.rows / san_s:10.0f} rows/s"
                f"  ({snap.info['sanitize']['seconds']:.2f} s of it masking+verifying)"
            )
            print(f"ratio: {copy_s / san_s:.0%} of COPY throughput (target >= 50%)")
            print(f"sanitizer phases (s): {snap.info['sanitize'].get('timings')}")
        if args.reps > 1:
            print(
                "ratios: "
                + ", ".join(f"{r:.0%}" for r in ratios)
                + f"; median {statistics.median(ratios):.0%} (target >= 50%)"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
