"""Schema review speed: `branchdb diff` against the tools it wraps, in the same run.

A project with TABLES tables (each with an index and a foreign key to the previous
one) on main, and a branch adding a column, an index, a NOT NULL column and a foreign
key and dropping a column. Median of RUNS wall times of the real console scripts:

- PostgreSQL 15 (a throwaway cluster): `branchdb diff --json` (catalogs of both
  databases through `results`, the SQL, and squawk on the branch's migration) vs the
  baseline `results dbdiff URL_MAIN URL_BRANCH` (the same library's own CLI: the diff
  and SQL alone) and `squawk` on the migration file.
- SQLite: `branchdb diff --json` vs `python -c pass` + the baseline of reading both
  schemas' text (`sqlite3` module, `SELECT sql FROM sqlite_schema`).

Run: .venv/bin/python bench/bench_diff.py [--tables 50] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import start_cluster

BIN = Path(sys.executable).parent
FEATURE = """\
ALTER TABLE t1 ADD COLUMN nickname text;
CREATE INDEX t1_nick ON t1 (nickname);
ALTER TABLE t2 ADD COLUMN age integer NOT NULL DEFAULT 0;
ALTER TABLE t3 ADD CONSTRAINT t3_t1_fk FOREIGN KEY (id) REFERENCES t1 (id);
ALTER TABLE t4 DROP COLUMN note;
"""


def init_sql(tables: int) -> str:
    out = []
    for i in range(1, tables + 1):
        ref = f", parent bigint REFERENCES t{i - 1} (id)" if i > 1 else ""
        out.append(
            f"CREATE TABLE t{i} (id bigint PRIMARY KEY, name text NOT NULL, "
            f"note text{ref});\nCREATE INDEX t{i}_name ON t{i} (name);\n"
        )
    return "".join(out)


def sh(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if p.returncode not in (0, 1, 2):  # results: 2 = different; squawk: 1 = found
        raise SystemExit(f"{args}: {p.returncode} {p.stderr[-500:]}")
    return p.stdout


def timed(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def project(root: Path, backend: str, tables: int, env: dict[str, str]) -> Path:
    repo = root / backend
    (repo / "migrations").mkdir(parents=True)
    extra = '[database]\nbackend = "postgres"\n' if backend == "postgres" else ""
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "bench{backend[:2]}"\n{extra}'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n'
    )
    sql = init_sql(tables)
    if backend == "libsql":
        sql = sql.replace("bigint", "INTEGER")
    (repo / "migrations" / "0001_init.sql").write_text(sql)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        sh(repo, "git", *args)
    sh(repo, "git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "i")
    sh(repo, str(BIN / "branchdb"), "up", "-q", env=env)
    sh(repo, "git", "checkout", "-qb", "feature")
    feature = (
        FEATURE
        if backend == "postgres"
        else FEATURE.replace(
            "ALTER TABLE t3 ADD CONSTRAINT t3_t1_fk FOREIGN KEY (id) REFERENCES t1 (id);\n",
            "",
        )
    )
    (repo / "migrations" / "0002_feature.sql").write_text(feature)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "f")
    sh(repo, str(BIN / "branchdb"), "up", "-q", env=env)
    return repo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-diff-"))
    cluster = start_cluster()
    try:
        env = {"BRANCHDB_PG_URL": cluster.admin_url}
        repo = project(root, "postgres", a.tables, env)
        main_url = sh(repo, str(BIN / "branchdb"), "url", "main", env=env).strip()
        feat_url = sh(repo, str(BIN / "branchdb"), "url", env=env).strip()
        ours = timed(
            a.runs, lambda: sh(repo, str(BIN / "branchdb"), "diff", "--json", env=env)
        )
        base = timed(
            a.runs, lambda: sh(repo, str(BIN / "results"), "dbdiff", main_url, feat_url)
        )
        mig = str(repo / "migrations" / "0002_feature.sql")
        lint = timed(a.runs, lambda: sh(repo, str(BIN / "squawk"), mig))
        print(
            f"postgres, {a.tables} tables: branchdb diff --json {ours * 1000:.0f} ms; "
            f"results dbdiff {base * 1000:.0f} ms + squawk {lint * 1000:.0f} ms "
            f"= {(base + lint) * 1000:.0f} ms; ratio {ours / (base + lint):.2f}"
        )
        repo = project(root, "libsql", a.tables, {})
        ours = timed(a.runs, lambda: sh(repo, str(BIN / "branchdb"), "diff", "--json"))
        files = [
            p.removeprefix("file:")
            for p in (
                sh(repo, str(BIN / "branchdb"), "url", "main").strip(),
                sh(repo, str(BIN / "branchdb"), "url").strip(),
            )
        ]
        code = (
            "import sqlite3,sys\nfor f in sys.argv[1:]:\n"
            " sqlite3.connect(f).execute('SELECT sql FROM sqlite_schema').fetchall()"
        )
        base = timed(a.runs, lambda: sh(repo, sys.executable, "-c", code, *files))
        print(
            f"sqlite, {a.tables} tables: branchdb diff --json {ours * 1000:.0f} ms; "
            f"reading both schemas' text in python {base * 1000:.0f} ms; "
            f"ratio {ours / base:.2f}"
        )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
