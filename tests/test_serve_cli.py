"""``branchdb serve`` prints the documented GC log lines; ``token revoke`` without an
id is a one-line usage error. The real console script, in a subprocess."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

from apisupport import free_port
from support import BRANCHDB, git, run

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
MARKED = re.compile(
    STAMP + r" INFO branchdb\.gc: gc marked database (bdb-gone-\w+) of branch "
    r"'gone' \(reason=deleted: no local or remote branch named 'gone'\); "
    r"deleted after 1s unless used$"
)
DELETED = re.compile(
    STAMP + r" INFO branchdb\.gc: gc deleted database (bdb-gone-\w+) of branch "
    r"'gone' \(reason=deleted: no local or remote branch named 'gone'\), "
    r"freed \d+ bytes$"
)
SUMMARY = re.compile(
    STAMP + r" INFO branchdb\.gc: gc of shop: 1 collectable, 0 newly marked, "
    r"1 deleted, \d+ bytes freed$"
)


def test_serve_prints_the_gc_log_lines(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\ngrace = "1s"\n'
    )
    git(repo, "branch", "gone")
    assert run(repo, "up", "gone").code == 0
    git(repo, "branch", "-D", "gone")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BRANCHDB_") or k == "BRANCHDB_PG_BIN"
    }
    env["BRANCHDB_GC_INTERVAL"] = "1s"
    proc = subprocess.Popen(
        [BRANCHDB, "serve", "--port", str(free_port())],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(
        target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stderr or ()],
        daemon=True,
    )
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any(SUMMARY.match(x) for x in seen):
            assert time.monotonic() < deadline, "\n".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, "\n".join(seen)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
        proc.stderr.close()
    marked = [m.group(1) for x in seen if (m := MARKED.match(x))]
    deleted = [m.group(1) for x in seen if (m := DELETED.match(x))]
    assert marked and marked == deleted, "\n".join(seen)


def test_token_revoke_without_an_id_is_a_usage_error(repo: Path) -> None:
    (repo / "branchdb.toml").write_text('[project]\nname = "shop"\n')
    r = run(repo, "token", "revoke")
    assert r.code == 2
    want = "token revoke needs the token's ID (see `branchdb token ls`)"
    assert r.err == f"branchdb: error: {want}\n"
    assert "None" not in r.err and r.out == ""
