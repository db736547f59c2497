"""The Compose stack as a team runs it: ``docker-compose up`` of docker-compose.yml
(CI swaps in locally built images with .ci/compose.ci.yml): PostgreSQL, the libsql
server (sqld) and the daemon. A signed pull-request webhook then a CI ``PUT`` give a
PostgreSQL URL that a client container on the host network opens; with
``BRANCHDB_BACKEND=libsql`` the branch is an sqld namespace that a libsql client on
the host reaches with the URL and token it was given, and no other way."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import httpx
from composesupport import PG_IMAGE, compose_stack, require_compose
from hooksupport import pull_request_event, sign
from sqldsupport import py_client
from support import git

require_compose()

CONFIG = """\
[project]
name = "shop"
default_branch = "main"

[migrations]
dir = "migrations"
format = "sql"
"""


def make_project(project: Path) -> None:
    """main with users; feature/pay adds payments. The checkout stays on main."""
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
    git(project, "checkout", "-q", "main")


def deliver(
    base: str, secret: str, event: dict[str, object], delivery: str
) -> httpx.Response:
    body = json.dumps(event).encode()
    return httpx.post(
        f"{base}/v1/webhooks/github?project=shop",
        content=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body, secret),
            "Content-Type": "application/json",
        },
    )


def wait_job(base: str, token: str, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while True:
        state: dict[str, object] = httpx.get(
            f"{base}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        if state["status"] not in ("queued", "running"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.3)


def test_webhook_then_ci_put_gives_a_preview_its_branch_database() -> None:
    with compose_stack(make_project) as stack:
        base, auth = stack.base(), {"Authorization": f"Bearer {stack.token}"}
        sha = git(stack.project, "-c", "safe.directory=*", "rev-parse", "feature/pay")
        event = pull_request_event("opened", "feature/pay", sha)
        r = deliver(base, stack.webhook_secret, event, secrets.token_hex(8))
        assert r.status_code == 202, r.text
        assert (
            wait_job(base, stack.token, r.json()["job"]["id"])["status"] == "succeeded"
        )
        put = httpx.put(
            f"{base}/v1/projects/shop/branches/feature/pay", headers=auth, timeout=60
        )
        assert put.status_code == 200, put.text  # the webhook made it
        url = put.json()["url"]
        assert url.startswith("postgresql://")
        # A preview environment: another container on the host network, its client.
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
                "WHERE schemaname = 'public' AND tablename IN ('users', 'payments')",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "payments,users"


def test_a_libsql_branch_is_an_sqld_namespace_a_host_client_reaches() -> None:
    with compose_stack(make_project, backend="libsql") as stack:
        base, auth = stack.base(), {"Authorization": f"Bearer {stack.token}"}
        put = httpx.put(
            f"{base}/v1/projects/shop/branches/feature/pay", headers=auth, timeout=60
        )
        assert put.status_code == 201, put.text
        body = put.json()
        url, token = body["url"], body["auth_token"]
        # The sqld service's own port, the namespace in the host name.
        assert url.startswith("http://bdb-shop-")
        assert url.endswith(f".localhost:{stack.ports['sqld']}")
        got = py_client(
            url,
            token,
            "q",
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name IN ('users', 'payments') ORDER BY name",
        )
        assert got == {"rows": [{"name": "payments"}, {"name": "users"}]}
        wrote = py_client(url, token, "rw", "notes", "from the host")
        assert wrote == {"rows": [{"v": "from the host"}]}
        # Without the branch's token sqld refuses it.
        assert "error" in py_client(url, None, "q", "SELECT 1")
        main = httpx.put(f"{base}/v1/projects/shop/branches/main", headers=auth)
        assert main.status_code == 201, main.text
        other = py_client(main.json()["url"], token, "q", "SELECT 1")
        assert "error" in other, other
