"""The dashboard's branch table with 1,000 branches: target < 1 s per page.

A real project (libsql, two SQL migrations) whose state store holds 1,000 branch
records, each with its own database file (copies of one real branch database), served
by the real app under uvicorn on loopback. Measured over HTTP with httpx, signed in
with a pasted token like a browser: the branch table (``GET /ui/p/shop``, sorted by
name and by size), and as the baseline the same branches as JSON from the API
(``GET /v1/projects/shop/branches``). Median and max of *--runs* requests each, and
the ratios to the baseline.

Run: .venv/bin/python bench/bench_ui.py [--branches 1000] [--runs 15]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api import tokens
from branchdb.daemon.api.app import create_app
from branchdb.daemon.config.project import load
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.store.sqlite_store import SqliteStore

CONFIG = """\
[project]
name = "shop"

[migrations]
dir = "migrations"
format = "sql"
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_project(root: Path, n: int) -> None:
    git(root, "init", "-q", "-b", "main")
    (root / "branchdb.toml").write_text(CONFIG)
    (root / "migrations").mkdir()
    (root / "migrations" / "001_users.sql").write_text(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n"
    )
    (root / "migrations" / "002_orders.sql").write_text(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);\n"
    )
    git(root, "add", "-A")
    git(root, "-c", "user.email=b@x", "-c", "user.name=b", "commit", "-qm", "m")
    engine = Engine(load(root / "branchdb.toml"))
    first = engine.up("main").record
    src = Path(first.url.removeprefix("file:"))
    for i in range(n - 1):
        name = f"feature/{i:04d}-work"
        database = engine.database_name(name)
        dest = src.with_name(f"{database}.db")
        shutil.copyfile(src, dest)
        engine.store.put_branch(
            BranchRecord(
                "shop",
                name,
                database,
                first.backend,
                first.source,
                "ready",
                first.created_at - i * 60,
                first.last_used_at - i * 30,
                url=f"file:{dest}",
                fingerprint=first.fingerprint,
                applied=dict(first.applied),
                info=dict(first.info),
            )
        )
    engine.store.close()


def timed(client: httpx.Client, url: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = client.get(url)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text[:300]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--branches", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        t = time.perf_counter()
        make_project(root, args.branches)
        print(f"setup: {args.branches} branches in {time.perf_counter() - t:.1f} s")
        settings = daemon_config.load(cwd=root)
        store = SqliteStore(settings.data_dir / "state.db")
        token = tokens.create(store, "read")[0]
        store.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=port, log_level="error"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        while not server.started:
            time.sleep(0.05)
        bearer = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=base, timeout=60) as c,
            httpx.Client(base_url=base, timeout=60, headers=bearer) as api_client,
        ):
            page = c.get("/ui/login")
            nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert nonce
            r = c.post("/ui/login", data={"token": token, "csrf": nonce.group(1)})
            assert r.status_code == 303, r.text
            c.get("/ui/p/shop")  # warm up: per-thread engines, templates
            api = timed(api_client, "/v1/projects/shop/branches", args.runs)
            by_name = timed(c, "/ui/p/shop", args.runs)
            by_size = timed(c, "/ui/p/shop?sort=size&dir=desc", args.runs)
            rows = c.get("/ui/p/shop").text.count("<tr>") - 1
        server.should_exit = True
        thread.join(timeout=10)
        assert rows == args.branches, rows
        base_med = statistics.median(api)
        print(f"{'what':38} {'median':>9} {'max':>9} {'ratio':>7}")
        for label, xs in (
            ("API JSON list (baseline)", api),
            (f"/ui/p/shop, {rows} rows, by name", by_name),
            (f"/ui/p/shop, {rows} rows, by size desc", by_size),
        ):
            med = statistics.median(xs)
            print(
                f"{label:38} {med * 1000:7.0f}ms {max(xs) * 1000:7.0f}ms "
                f"{med / base_med:6.2f}x"
            )
        worst = max(max(by_name), max(by_size))
        verdict = "OK" if worst < 1 else "OVER"
        print(f"target: every page < 1000 ms; worst {worst * 1000:.0f} ms: {verdict}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
