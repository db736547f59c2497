"""Issue #6 planning target: a GC plan over 10,000 branch records in <= 1 s.

    .venv/bin/python bench/bench_gc.py [--records 10000] [--live 300]

A real git repository gets ``--live`` branches with work of their own (unmerged: each
costs the squash/rebase check, the expensive case); the store gets ``--records``
branch records, of which the rest name branches that no longer exist (deleted).
Prints the time of ``collect(engine, dry_run=True)`` (median of 5) without and with the
squash-check answers cached in the state store (the default branch did not move since
the previous plan), and, as a baseline from the same run, the time of one
``git for-each-ref`` over the same refs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.gc.collector import collect


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--live", type=int, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="branchdb-bench-gc-"))
    try:
        repo = work / "app"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        git(
            repo,
            "-c",
            "user.email=b@b",
            "-c",
            "user.name=b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        )
        main_sha = git(repo, "rev-parse", "HEAD")
        stream = []
        for i in range(args.live):
            stream.append(
                f"commit refs/heads/live/{i}\ncommitter B <b@b> 1900000000 +0000\n"
                f"data 4\nwork\nfrom {main_sha}\nM 100644 inline f{i}.txt\n"
                f"data 2\n{i % 10}\n\n"
            )
        git(repo, "fast-import", "--quiet", stdin="".join(stream))
        (repo / "branchdb.toml").write_text(
            '[project]\nname = "bench"\n[branches]\nttl = "30d"\n'
        )
        eng = Engine(config_mod.load(cwd=repo))
        now = time.time()
        rows = []
        for i in range(args.records):
            name = f"live/{i}" if i < args.live else f"gone/{i}"
            rows.append(
                BranchRecord(
                    "bench", name, f"bdb-x{i}", "libsql", "fresh", "ready", now, now
                )
            )
        db = eng.store._db
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO branches (project, branch, database, backend, source, status,"
            " created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.project,
                    r.branch,
                    r.database,
                    r.backend,
                    r.source,
                    r.status,
                    r.created_at,
                    r.last_used_at,
                )
                for r in rows
            ],
        )
        db.execute("COMMIT")
        times, cold, n = [], [], 0
        for _ in range(5):
            # Cold: no cached squash-check answers (as after main moved on).
            db.execute("DELETE FROM merge_checks")
            t0 = time.perf_counter()
            collect(eng, dry_run=True)
            cold.append(time.perf_counter() - t0)
            # Warm: the answers the previous plan stored are reused.
            t0 = time.perf_counter()
            plan = collect(eng, dry_run=True)
            times.append(time.perf_counter() - t0)
            n = len(plan.candidates)
        t0 = time.perf_counter()
        git(repo, "for-each-ref", "refs/heads")
        base = time.perf_counter() - t0
        med, med_cold = statistics.median(times), statistics.median(cold)
        print(
            f"gc plan over {args.records} records ({args.live} live unmerged branches,"
            f" {n} collectable): median {med_cold:.3f} s without cached squash "
            f"checks, {med:.3f} s with them ({med_cold / med:.1f}x; target <= 1 s); "
            f"one `git for-each-ref`: {base * 1000:.1f} ms"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
