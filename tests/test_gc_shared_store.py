"""A cron ``branchdb gc`` next to a daemon on a shared PostgreSQL state store.

The CLI reads ``[state]`` from branchdb.toml, so it and the daemon keep one set of
records: its GC drops nothing the daemon owns. A CLI left on its own SQLite file
sees the daemon's databases as unrecorded, yet never drops a protected branch's.
No path drops a protected branch's database without ``--force``. Real PostgreSQL
15 (backend and state store), real git, the real ``branchdb`` script.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from apisupport import auth, serve_in_thread, setup_project
from pgcluster import Cluster
from storesupport import fresh_database
from support import git, run

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api import tokens
from branchdb.daemon.api.app import create_app
from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import Refused
from branchdb.daemon.store import open_store

pytestmark = pytest.mark.postgres

BRANCHES = ("main", "release/1", "feature/x")


def project_toml(name: str, cluster: Cluster, state: str) -> str:
    return (
        f'[project]\nname = "{name}"\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n'
        f'[database]\nbackend = "postgres"\nserver = "{cluster.admin_url}"\n'
        '[branches]\nprotected = ["main", "release/*"]\ngrace = "1s"\n' + state
    )


def databases(cluster: Cluster) -> set[str]:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database")}


@contextmanager
def daemon_with_branches(
    repo: Path, tmp_path: Path, cluster: Cluster, *, cli_shares: bool
) -> Iterator[tuple[httpx.Client, dict[str, str], str, dict[str, str]]]:
    """A daemon on a shared PostgreSQL state store that made a database for each
    of BRANCHES; yields (client, tokens, project, branch -> database).

    *cli_shares*: the project's branchdb.toml names the store (the daemon adopts
    it); else only the daemon config does, and the CLI keeps its SQLite file.
    """
    name = "gs" + secrets.token_hex(3)
    setup_project(repo)
    for b in BRANCHES[1:]:
        git(repo, "branch", b)
    with fresh_database(cluster) as url:
        state = f'[state]\nurl = "{url}"\n'
        (repo / "branchdb.toml").write_text(
            project_toml(name, cluster, state if cli_shares else "")
        )
        if cli_shares:
            settings = daemon_config.load(cwd=repo)
        else:
            cfg = tmp_path / "daemon.toml"
            cfg.write_text(
                f'[server]\ndata_dir = "{tmp_path / "daemon"}"\n'
                f'gc_interval = "off"\n{state}\n[[projects]]\npath = "{repo}"\n'
            )
            settings = daemon_config.load(cfg)
        assert settings.state_url == url
        store = open_store(url, Path("/nonexistent"))
        try:
            toks = {s: tokens.create(store, s)[0] for s in tokens.SCOPES}
        finally:
            store.close()
        with (
            serve_in_thread(create_app(settings)) as base,
            httpx.Client(base_url=base, timeout=60) as client,
        ):
            made = {}
            for b in BRANCHES:
                r = client.put(
                    f"/v1/projects/{name}/branches/{b}", headers=auth(toks["ci"])
                )
                assert r.status_code == 201, r.text
                made[b] = r.json()["database"]
            try:
                yield client, toks, name, made
            finally:
                for b in BRANCHES:
                    client.delete(
                        f"/v1/projects/{name}/branches/{b}",
                        headers=auth(toks["ci"]),
                        params={"force": True},
                    )


def cron_gc(repo: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`branchdb gc --json` twice across the grace period, as cron would."""
    deleted = []
    for _ in range(2):
        r = run(repo, "gc", "--json", env=env)
        assert r.code == 0, r.err
        deleted += [c for c in json.loads(r.out)["candidates"] if c["deleted"]]
        time.sleep(1.2)
    return deleted


def daemon_ready(client: httpx.Client, toks: dict[str, str], name: str) -> set[str]:
    r = client.get(f"/v1/projects/{name}/branches", headers=auth(toks["read"]))
    return {b["branch"] for b in r.json() if b["status"] == "ready"}


def test_cron_gc_on_the_shared_store_drops_nothing_the_daemon_owns(
    repo: Path, tmp_path: Path, pg_cluster: Cluster
) -> None:
    with daemon_with_branches(repo, tmp_path, pg_cluster, cli_shares=True) as (
        client,
        toks,
        name,
        made,
    ):
        # The CLI sees the daemon's records: same branches, no orphans.
        r = run(repo, "ls", "--json")
        assert r.code == 0, r.err
        assert {b["branch"] for b in json.loads(r.out)} == set(BRANCHES)
        assert cron_gc(repo) == []
        assert daemon_ready(client, toks, name) == set(BRANCHES)
        assert set(made.values()) <= databases(pg_cluster)
        # The hook's fast path must not answer from a SQLite file either.
        assert not (repo / ".branchdb" / "state.db").exists()


def test_a_cli_on_its_own_store_never_drops_protected_branches(
    repo: Path, tmp_path: Path, pg_cluster: Cluster
) -> None:
    with daemon_with_branches(repo, tmp_path, pg_cluster, cli_shares=False) as (
        client,
        toks,
        name,
        made,
    ):
        deleted = cron_gc(repo)
        assert not {c["database"] for c in deleted} & {
            made["main"],
            made["release/1"],
        }
        assert {made["main"], made["release/1"]} <= databases(pg_cluster)
        assert {"main", "release/1"} <= daemon_ready(client, toks, name)


def test_no_path_drops_a_protected_branch_without_force(repo: Path) -> None:
    (repo / "branchdb.toml").write_text('[project]\nname = "shop"\n')
    eng = Engine(config_mod.load(cwd=repo))
    rec = eng.up("main").record
    with eng.lock("main"), pytest.raises(Refused, match="protected"):
        eng.drop_branch(rec, detail="a path that forgot to check", count_as="idle")
    assert eng.get("main").status == "ready"
    assert Path(rec.url.removeprefix("file:")).exists()
    with pytest.raises(Refused, match="--force"):
        eng.down("main")
    eng.down("main", force=True)
    assert eng.list_branches() == []


def test_the_hook_fast_path_defers_to_a_shared_store(repo: Path) -> None:
    """With a shared store configured, ``up`` never answers "up to date" from the
    project's SQLite file (its records are no longer the ones that count)."""
    toml = repo / "branchdb.toml"

    def settled() -> None:  # the fast path trusts only a config cached >2 s old
        old = time.time() - 10
        os.utime(toml, (old, old))

    toml.write_text('[project]\nname = "shop"\n')
    settled()
    assert run(repo, "up", "main").code == 0
    again = run(repo, "up", "main")
    assert again.code == 0 and again.out.startswith("main: up to date")
    with socket.socket() as s:  # a port nothing listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"BRANCHDB_STATE_URL": f"postgresql://u:pw@127.0.0.1:{port}/ops"}
    r = run(repo, "up", "main", env=env)
    assert r.code != 0 and "up to date" not in r.out
    assert "state store" in r.err and "pw" not in r.err
    with toml.open("a") as f:
        f.write(f'[state]\nurl = "postgresql://u@127.0.0.1:{port}/ops"\n')
    settled()
    for _ in range(2):  # the first run caches the config, the second may use it
        r = run(repo, "up", "main")
        assert r.code != 0 and "up to date" not in r.out
