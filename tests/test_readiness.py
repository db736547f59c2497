"""``/v1/ready`` as an orchestrator sees it, on a real ``branchdb serve``: 503 while
start-up crash recovery runs (the process is alive: ``/v1/health`` answers), 200
once it is done, 503 again while the PostgreSQL state store is down, 200
when it is back; SIGTERM then ends the process cleanly."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from apisupport import auth, branches, free_port, setup_project, wait_up
from pgcluster import Cluster, available, start_cluster
from psycopg import sql
from support import BRANCHDB

from branchdb.daemon.store.postgres_store import DEFAULT_SCHEMA, PostgresStore

pytestmark = pytest.mark.postgres
TOKEN = "bdb_" + secrets.token_urlsafe(32)


@pytest.fixture
def state_cluster() -> Iterator[Cluster]:
    """A server of its own for the state store: the test stops and restarts it."""
    if not available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries are required under CI")
        pytest.skip("PostgreSQL binaries not found")
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_ready_is_false_during_recovery_and_while_the_state_store_is_down(
    repo: Path, state_cluster: Cluster
) -> None:
    setup_project(repo)
    branches(repo, "feature/x")
    state_url = state_cluster.url("postgres")
    PostgresStore(state_url).close()  # its tables exist, so the test can lock one
    blocker = psycopg.connect(state_cluster.admin_url)  # a transaction, held open
    blocker.execute(
        sql.SQL("LOCK TABLE {}.branches IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(DEFAULT_SCHEMA)
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")}
    env |= {"BRANCHDB_STATE_URL": state_url, "BRANCHDB_ADMIN_TOKEN": TOKEN}
    log = repo.parent / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [BRANCHDB, "serve", "--port", str(port)],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def dead() -> str | None:
            return None if proc.poll() is None else log.read_text()

        # Recovery reads the branch records: it waits behind the lock, the process
        # answers its probes meanwhile.
        wait_up(base, dead=dead)
        r = httpx.get(f"{base}/v1/ready")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == {
            "type": "NotReady",
            "message": "crash recovery is running",
        }
        blocker.rollback()  # recovery goes on
        wait_up(base, path="/v1/ready", dead=dead)
        assert httpx.get(f"{base}/v1/ready").json()["status"] == "ready"
        put = httpx.put(
            f"{base}/v1/projects/shop/branches/feature/x",
            headers=auth(TOKEN),  # the bootstrap token, installed after recovery
            timeout=60,
        )
        assert put.status_code == 201, put.text

        state_cluster.pause()
        r = httpx.get(f"{base}/v1/ready", timeout=30)
        assert r.status_code == 503, r.text
        assert "state store" in r.json()["error"]["message"]
        assert "password" not in r.text
        assert httpx.get(f"{base}/v1/health").status_code == 200
        state_cluster.resume()
        wait_up(base, path="/v1/ready", dead=dead)
        got = httpx.get(
            f"{base}/v1/projects/shop/branches/feature/x", headers=auth(TOKEN)
        )
        assert got.status_code == 200 and got.json()["status"] == "ready", got.text

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        blocker.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
