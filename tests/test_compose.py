"""The Compose stack as a team runs it: ``docker-compose up`` of docker-compose.yml
(CI swaps in locally built images with .ci/compose.ci.yml), then a signed pull-request
webhook and a CI ``PUT``; a client container on the host network opens the URL it got
and finds the branch's tables."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import free_port
from hooksupport import pull_request_event, sign
from support import git

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("BRANCHDB_TEST_IMAGE")
PG_IMAGE = os.environ.get("BRANCHDB_TEST_PG_IMAGE")
COMPOSE = shutil.which("docker-compose")

if not (IMAGE and PG_IMAGE and COMPOSE):
    if os.environ.get("CI"):
        pytest.fail("docker-compose and the images (.ci/docker) are required under CI")
    pytest.skip("needs docker-compose and .ci/docker's images", allow_module_level=True)

SECRET = "compose-webhook-secret"
TOKEN = "bdb_" + secrets.token_urlsafe(32)
CONFIG = """\
[project]
name = "shop"
default_branch = "main"

[migrations]
dir = "migrations"
format = "sql"
"""


@pytest.fixture
def stack() -> Iterator[tuple[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="branchdb-compose-", dir="/tmp"))
    project, secrets_dir = root / "repo", root / "secrets"
    project.mkdir()
    secrets_dir.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "branchdb.toml").write_text(CONFIG)
    (project / "migrations").mkdir()
    (project / "migrations/001_users.sql").write_text(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n"
    )
    (project / ".gitignore").write_text(".branchdb/\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "users")
    git(project, "checkout", "-q", "-b", "feature/pay")
    (project / "migrations/002_payments.sql").write_text(
        "CREATE TABLE payments (id INTEGER PRIMARY KEY, amount INTEGER);\n"
    )
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "payments")
    git(project, "checkout", "-q", "main")  # the daemon's checkout is main's
    sha = git(project, "rev-parse", "feature/pay").strip()
    pg_port, port = free_port(), free_port()
    password = secrets.token_urlsafe(16)
    for name, value in {
        "pg_password": password,
        "pg_url": f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/postgres",
        "state_url": f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/branchdb_state",
        "admin_token": TOKEN,
        "webhook_secret": SECRET,
    }.items():
        (secrets_dir / name).write_text(value + "\n")
    for path in [root, *root.rglob("*")]:
        os.chown(path, 10001, 10001)
    env = {
        **os.environ,
        "BRANCHDB_PROJECT": str(project),
        "BRANCHDB_SECRETS": str(secrets_dir),
        "BRANCHDB_PORT": str(port),
        "BRANCHDB_PG_PORT": str(pg_port),
        "BRANCHDB_IMAGE": IMAGE or "",
        "BRANCHDB_POSTGRES_IMAGE": PG_IMAGE or "",
    }
    name = f"bdbci{secrets.token_hex(3)}"
    cmd = [
        str(COMPOSE),
        "-p",
        name,
        "-f",
        str(ROOT / "docker-compose.yml"),
        "-f",
        str(ROOT / ".ci/compose.ci.yml"),
    ]
    up = subprocess.run(
        [*cmd, "up", "-d"], env=env, capture_output=True, text=True, timeout=300
    )
    try:
        assert up.returncode == 0, up.stderr
        yield f"http://127.0.0.1:{port}", sha
    finally:
        logs = subprocess.run(
            [*cmd, "logs", "--no-color"], env=env, capture_output=True, text=True
        )
        print(logs.stdout[-12000:])
        subprocess.run([*cmd, "down", "-v"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/v1/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("the daemon did not become ready")


def test_webhook_then_ci_put_gives_a_preview_its_branch_database(
    stack: tuple[str, str],
) -> None:
    base, sha = stack
    _wait_ready(base)
    body = json.dumps(pull_request_event("opened", "feature/pay", sha)).encode()
    r = httpx.post(
        f"{base}/v1/webhooks/github?project=shop",
        content=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": secrets.token_hex(8),
            "X-Hub-Signature-256": sign(body, SECRET),
            "Content-Type": "application/json",
        },
    )
    assert r.status_code in (200, 202), r.text
    auth = {"Authorization": f"Bearer {TOKEN}"}
    job = r.json().get("job")
    if job:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = httpx.get(f"{base}/v1/jobs/{job['id']}", headers=auth).json()
            if state["status"] not in ("queued", "running"):
                break
            time.sleep(0.3)
        assert state["status"] == "succeeded", state
    put = httpx.put(
        f"{base}/v1/projects/shop/branches/feature/pay", headers=auth, timeout=60
    )
    assert put.status_code in (200, 201), put.text
    url = put.json()["url"]
    assert url.startswith("postgresql://")
    # A preview environment: another container on the host network, its own client.
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "psql",
            PG_IMAGE or "",
            url,
            "-Atc",
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
            "WHERE schemaname = 'public'",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(",")[-2:] == ["payments", "users"] or set(
        out.stdout.strip().split(",")
    ) >= {"payments", "users"}
