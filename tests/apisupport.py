"""Helpers for the API tests: a project repository, a daemon app, tokens, a server."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from support import BRANCHDB, git

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api import tokens
from branchdb.daemon.api.settings import DaemonSettings
from branchdb.daemon.store.sqlite_store import SqliteStore

CONFIG = """\
[project]
name = "shop"

[migrations]
dir = "migrations"
format = "sql"
"""


def setup_project(repo: Path) -> Path:
    """branchdb.toml and two committed sql migrations in the git repo *repo*."""
    (repo / "branchdb.toml").write_text(CONFIG)
    mig = repo / "migrations"
    mig.mkdir()
    (mig / "001_users.sql").write_text(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n"
    )
    (mig / "002_orders.sql").write_text(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);\n"
    )
    (repo / ".gitignore").write_text(".branchdb/\n.branchdb-daemon/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "migrations")
    return repo


def branches(repo: Path, *names: str) -> None:
    """Git branches *names* at HEAD of *repo*: without an upload, the daemon reads a
    branch's migrations from the repository, so the branch must be there."""
    for name in names:
        git(repo, "branch", name)


def make_tokens(settings: DaemonSettings) -> dict[str, str]:
    """One fresh token per scope, stored where the daemon looks for them."""
    store = SqliteStore(settings.data_dir / "state.db")
    try:
        return {s: tokens.create(store, s)[0] for s in tokens.SCOPES}
    finally:
        store.close()


def settings_for(repo: Path) -> DaemonSettings:
    return daemon_config.load(cwd=repo)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_up(
    base: str,
    *,
    path: str = "/v1/health",
    timeout: float = 30,
    dead: Callable[[], str | None] | None = None,
) -> None:
    """Poll *base* + *path* until it answers 200. Fails with *dead*'s text as soon as
    it reports the server gone (a process that exited), or after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        gone = dead() if dead is not None else None
        assert gone is None, gone
        assert time.monotonic() < deadline, f"{base}{path} did not answer in {timeout}s"
        time.sleep(0.1)


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run *app* under a real uvicorn server on 127.0.0.1; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_up(base, timeout=20)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def serve_process(
    repo: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``branchdb serve`` as its own process in *repo*, with this environment
    minus every ``BRANCHDB_*`` variable, plus *env*. Yields (base URL, process)
    once it is ready (start-up recovery done); terminated on exit."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")}
    proc = subprocess.Popen(
        [BRANCHDB, "serve", "--port", str(port)],
        cwd=repo,
        env={**full, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(  # ready: start-up recovery is done (health answers before it)
            base,
            path="/v1/ready",
            timeout=60,
            dead=lambda: None if proc.poll() is None else str(proc.communicate()),
        )
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=60)


def wait_job(client: httpx.Client, job: dict[str, object], token: str) -> dict:  # type: ignore[type-arg]
    """Poll ``/v1/jobs/{id}`` until the job is no longer running."""
    deadline = time.monotonic() + 60
    while True:
        r = client.get(f"/v1/jobs/{job['id']}", headers=auth(token))
        assert r.status_code == 200, r.text
        data: dict = r.json()  # type: ignore[type-arg]
        if data["status"] != "running":
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.05)
