"""A daemon in libsql server (sqld) mode seen through the network: the remote CLI
(``BRANCHDB_SERVER``) prints the branch's network URL and writes its token under
every ``token_env`` name; the API answers sqld's failures as JSON 4xx/502/503,
never 500. Real ``branchdb serve``, real sqld, separate client processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from apisupport import auth, serve_process, setup_project
from sqldsupport import SQLD_BIN, TeamSqld, py_client, require_sqld, team_sqld
from support import git, run
from test_sqld_backend import team_config

from branchdb.daemon.backends.sqld_auth import Signer
from branchdb.daemon.backends.sqld_client import Admin
from branchdb.daemon.core.naming import sqld_namespace

pytestmark = pytest.mark.node

API = "/v1/projects/shop"
TOKEN_ENV = 'token_env = ["DATABASE_AUTH_TOKEN", "TURSO_AUTH_TOKEN", "APP_DB_TOKEN"]\n'
MANAGED = f"""
[database]
backend = "libsql"

[libsql]
managed = true
{TOKEN_ENV}"""


@contextmanager
def serve(repo: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``branchdb serve`` in *repo* (stopped on exit); yields its base URL."""
    with serve_process(repo, {"BRANCHDB_SQLD_BIN": str(SQLD_BIN), **(env or {})}) as (
        base,
        _,
    ):
        yield base


def test_remote_cli_prints_the_network_url_and_writes_the_tokens(
    repo: Path, tmp_path: Path
) -> None:
    require_sqld()
    setup_project(repo)
    (repo / "branchdb.toml").write_text((repo / "branchdb.toml").read_text() + MANAGED)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "sqld")
    token = run(repo, "token", "create", "--scope", "admin").out.strip()
    reader = run(repo, "token", "create", "--scope", "read").out.strip()
    dev = tmp_path / "dev"
    git(tmp_path, "clone", "-q", str(repo), str(dev))
    git(dev, "checkout", "-q", "-b", "feature/remote")
    with serve(repo) as base:
        remote = {"BRANCHDB_SERVER": base, "BRANCHDB_TOKEN": token}
        r = run(dev, "up", env=remote)
        assert r.code == 0, r.err
        state = json.loads((repo / ".branchdb/sqld/state.json").read_text())
        port = state["http"].rsplit(":", 1)[1]
        url = r.out.splitlines()[-1]
        ns = sqld_namespace("shop", "feature/remote")
        assert url == f"http://{ns}.localhost:{port}", r.out
        # Nothing was made on the developer's side: no local sqld, no state.
        assert not (dev / ".branchdb").exists()

        w = run(dev, "env", "--write", ".env", env=remote)
        assert w.code == 0, w.err
        lines = (dev / ".env").read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line)
        assert values["DATABASE_URL"] == url
        tok = values["DATABASE_AUTH_TOKEN"]
        assert tok and tok not in url
        assert values["TURSO_AUTH_TOKEN"] == values["APP_DB_TOKEN"] == tok
        assert tok not in w.err and tok not in w.out
        # The URL and token are all a client needs: the branch's migrations ran.
        rows = py_client(url, tok, "read", "SELECT name FROM _branchdb_migrations")
        assert [x["name"] for x in rows["rows"]] == ["001_users.sql", "002_orders.sql"]

        # `url` prints the same network URL; a read token sees the token too.
        u = run(dev, "url", env=remote)
        assert (u.code, u.out.strip()) == (0, url), u.err
        e = run(dev, "env", env={**remote, "BRANCHDB_TOKEN": reader})
        assert e.code == 0 and f"APP_DB_TOKEN={tok}" in e.out.splitlines(), e


def _json_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    text = json.dumps(r.json())
    for w in words:
        assert w in text, (w, text)


@pytest.fixture
def sqld(tmp_path: Path) -> Iterator[TeamSqld]:
    with team_sqld(tmp_path / "team") as team:
        yield team


def test_api_answers_sqld_failures_as_json(
    repo: Path, sqld: TeamSqld, tmp_path: Path
) -> None:
    setup_project(repo)
    token = run(repo, "token", "create", "--scope", "admin").out.strip()
    h = auth(token)
    for name in ("feature/a", "feature/theirs"):
        git(repo, "branch", name)
    site = tmp_path / "site"  # *.localhost -> 127.0.0.1 for the daemon's reads
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import socket\n_r = socket.getaddrinfo\n"
        "def _g(h, *a, **k):\n"
        "    if isinstance(h, str) and h.endswith('.localhost'): h = '127.0.0.1'\n"
        "    return _r(h, *a, **k)\n"
        "socket.getaddrinfo = _g\n"
    )
    good = Signer.from_file(sqld.key_file).token("prod")
    wrong = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    env = {"PYTHONPATH": str(site), "BRANCHDB_SOURCE_AUTH_TOKEN": wrong}

    # The admin API refusing (the Hrana port given as the admin URL): 502.
    (repo / "branchdb.toml").write_text(
        team_config(sqld).replace(f'admin = "{sqld.admin}"', f'admin = "{sqld.server}"')
    )
    with serve(repo, env) as base:
        r = httpx.put(f"{base}{API}/branches/feature/a", headers=h, timeout=60)
        _json_error(r, 502, "refused to create namespace")

    (repo / "branchdb.toml").write_text(team_config(sqld))
    with serve(repo, env) as base:
        # A namespace of that name that branchdb did not make: 409, untouched.
        ns = sqld_namespace("shop", "feature/theirs")
        Admin(sqld.admin).create(ns)
        r = httpx.put(f"{base}{API}/branches/feature/theirs", headers=h, timeout=60)
        _json_error(r, 409, "not made by branchdb")
        assert Admin(sqld.admin).exists(ns)
        # A token the libsql server refuses (a snapshot source): 409.
        Admin(sqld.admin).create("prod")
        port = sqld.server.rsplit(":", 1)[1]
        r = httpx.post(
            f"{base}{API}/snapshots",
            json={"name": "prod", "source": f"http://prod.localhost:{port}"},
            headers=h,
            timeout=60,
        )
        _json_error(r, 409, "refused", "BRANCHDB_SOURCE_AUTH_TOKEN")
        # A branch that works, then sqld goes down: 503, for writes and reads.
        ok = httpx.put(f"{base}{API}/branches/feature/a", headers=h, timeout=60)
        assert ok.status_code in (200, 201), ok.text
        sqld.stop()
        r = httpx.post(f"{base}{API}/branches/feature/a/reset", headers=h, timeout=60)
        _json_error(r, 503, "not reachable", "is sqld running")
        r = httpx.put(f"{base}{API}/branches/feature/theirs", headers=h, timeout=60)
        _json_error(r, 503, "not reachable")
