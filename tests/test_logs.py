"""``branchdb serve`` as a platform runs it: JSON log lines on stderr, each request's
id in its lines and its answer, and SIGTERM ending the process cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
from apisupport import branches, free_port, setup_project, wait_up
from support import BRANCHDB

TOKEN = "bdb_" + "l" * 40


def test_json_logs_carry_the_request_id_and_sigterm_stops_cleanly(
    repo: Path, tmp_path: Path
) -> None:
    setup_project(repo)
    branches(repo, "feature/logs")  # the daemon reads the branch's commit
    port = free_port()
    env = {
        **os.environ,
        "BRANCHDB_LOG_FORMAT": "json",
        "BRANCHDB_PORT": str(port),
        "BRANCHDB_ADMIN_TOKEN": TOKEN,
        "BRANCHDB_DAEMON_DATA_DIR": str(tmp_path / "daemon"),
    }
    err = tmp_path / "stderr"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [BRANCHDB, "serve"], cwd=repo, env=env, stderr=sink, stdout=sink
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(
                base,
                timeout=30,
                dead=lambda: None if proc.poll() is None else err.read_text(),
            )
            r = httpx.put(
                f"{base}/v1/projects/shop/branches/feature/logs",
                headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "ci-42"},
            )
            assert r.status_code == 201, r.text
            assert r.headers["x-request-id"] == "ci-42"
            made_up = httpx.get(f"{base}/v1/health").headers["x-request-id"]
            assert len(made_up) == 16
            bad = httpx.get(f"{base}/v1/health", headers={"X-Request-ID": "a b\tc"})
            assert bad.headers["x-request-id"] != "a b\tc"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    assert code == 0, err.read_text()
    lines = [json.loads(x) for x in err.read_text().splitlines() if x.strip()]
    assert lines and all(set(x) >= {"ts", "level", "logger", "message"} for x in lines)
    (put,) = [x for x in lines if x["request_id"] == "ci-42"]
    assert put["logger"] == "branchdb.access"
    assert put["message"].startswith("PUT /v1/projects/shop/branches/feature/logs 201")
    assert any(
        x["logger"] == "branchdb.api" and "serving shop" in x["message"] for x in lines
    )
    assert TOKEN not in err.read_text()
