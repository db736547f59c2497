"""Issue #2 performance targets, measured against baselines in the same run.

    .venv/bin/python bench/bench_up.py [--clone-gib 1.0] [--runs 30]

branchdb is measured as users run it: a regular (not editable) `pip install` of this
checkout into a throwaway virtualenv, byte-compiled. (An editable install adds ~25 ms to
every Python start in that venv: its import finder loads pathlib and urllib.)

1. `branchdb up` when the database exists and nothing is pending (the checkout hook's
   common case): median wall time, process start included, vs `python -c pass` of the
   same interpreter. Target: median <= 120 ms.
2. A fresh database plus 50 migrations (`branchdb up NEW-BRANCH`). Target <= 0.5 s.
3. Clone of a 1 GiB snapshot file (`branchdb up NEW --from big`) vs `cp` of the same
   file on the same file system. Target <= 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def install(work: Path) -> tuple[Path, Path]:
    """A venv with branchdb installed from this checkout; (python, branchdb)."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            str(REPO),
        ],
        check=True,
        env=ENV,
        cwd=work,
    )
    subprocess.run(
        [str(py), "-m", "compileall", "-q", str(venv / "lib")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return py, venv / "bin" / "branchdb"


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - t0


def git_repo(root: Path, config: str) -> None:
    root.mkdir(parents=True)
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "b@example.com"],
        ["config", "user.name", "bench"],
    ):
        subprocess.run(["git", *args], cwd=root, check=True)
    (root / "branchdb.toml").write_text(config)
    # A project's config is old news by the time the hook runs (branchdb caches the
    # parsed file, except within two seconds of an edit).
    past = time.time() - 3600
    os.utime(root / "branchdb.toml", (past, past))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--clone-gib", type=float, default=1.0)
    args = ap.parse_args()
    work = Path(
        tempfile.mkdtemp(prefix="branchdb-bench-", dir=os.environ.get("TMPDIR"))
    )
    try:
        py_bin, bin_path = install(work)
        bdb = str(bin_path)
        # ---------------------------------------------------------------- 1 + 2
        app = work / "app"
        git_repo(
            app,
            '[project]\nname = "bench"\n[migrations]\ndir = "migrations"\n'
            'format = "sql"\n',
        )
        mig = app / "migrations"
        mig.mkdir()
        for i in range(1, 51):
            (mig / f"{i:03d}_t{i}.sql").write_text(
                f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                f"created_at TEXT);\nCREATE INDEX t{i}_name ON t{i} (name);\n"
                f"INSERT INTO t{i} (name) VALUES ('seed');\n"
            )
        subprocess.run(["git", "add", "-A"], cwd=app, check=True)
        subprocess.run(["git", "commit", "-qm", "m"], cwd=app, check=True)

        fresh = [timed([bdb, "up", f"fresh-{i}"], app) for i in range(7)]
        py = [timed([str(py_bin), "-c", "pass"], app) for _ in range(args.runs)]
        hot = [timed([bdb, "up"], app) for _ in range(args.runs)]
        med_py, med_hot = statistics.median(py), statistics.median(hot)
        print(f"python -c pass            median {med_py * 1000:7.1f} ms")
        print(
            f"up (nothing to do)        median {med_hot * 1000:7.1f} ms  "
            f"p90 {statistics.quantiles(hot, n=10)[-1] * 1000:.1f} ms  "
            f"= {med_hot / med_py:.1f}x python -c pass   (target <= 120 ms)"
        )
        print(
            f"up fresh + 50 migrations  median {statistics.median(fresh) * 1000:7.1f} ms"
            f"  max {max(fresh) * 1000:.1f} ms   (target <= 500 ms)"
        )

        # -------------------------------------------------------------------- 3
        big = work / "big.db"
        con = sqlite3.connect(big)
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)")
        rows = int(args.clone_gib * 1024 * 1024 * 1024 / 8192)
        con.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO blobs (b) SELECT randomblob(8000) FROM n",
            (rows,),
        )
        con.commit()
        con.close()
        clone_app = work / "clone"
        git_repo(clone_app, '[project]\nname = "clone"\n')
        subprocess.run(
            [bdb, "snapshot", "create", "big", "--source", str(big)],
            cwd=clone_app,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        snap = next((clone_app / ".branchdb" / "snapshots" / "big").glob("*.db"))
        size = snap.stat().st_size
        cps, ups = [], []
        for i in range(3):
            target = clone_app / ".branchdb" / f"cp-{i}.db"
            cps.append(timed(["cp", str(snap), str(target)], clone_app))
            target.unlink()
            ups.append(timed([bdb, "up", f"c{i}", "--from", "big"], clone_app))
            subprocess.run(
                [bdb, "down", f"c{i}", "--yes"],
                cwd=clone_app,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        probe = subprocess.run(
            [bdb, "up", "probe", "--from", "big", "--json"],
            cwd=clone_app,
            check=True,
            capture_output=True,
            text=True,
        )
        strategy = json.loads(probe.stdout)["strategy"]
        med_cp, med_up = statistics.median(cps), statistics.median(ups)
        print(
            f"clone {size / 2**30:.2f} GiB: cp median {med_cp:.2f} s, "
            f"up --from median {med_up:.2f} s = {med_up / med_cp:.2f}x cp   "
            f"(target <= 1.2x; clone strategy: {strategy})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
