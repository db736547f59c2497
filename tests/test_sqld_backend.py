"""The sqld backend against an sqld "the team runs" (URL, admin URL, key), through
the CLI in local mode: lifecycle, same ledgers as files, refusals, clear errors,
and a libsql server as a snapshot source."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apisupport import CONFIG, setup_project
from sqldsupport import SQLD_BIN, TeamSqld, node_client, py_client, team_sqld
from support import run

from branchdb.daemon.backends.sqld_auth import Signer, ensure_keypair
from branchdb.daemon.backends.sqld_client import Admin
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core.errors import ConfigError

pytestmark = pytest.mark.node


@pytest.fixture
def sqld(tmp_path: Path) -> Iterator[TeamSqld]:
    with team_sqld(tmp_path / "team") as team:
        yield team


def team_config(team: TeamSqld, *, shared_fs: bool = True, extra: str = "") -> str:
    port = team.server.rsplit(":", 1)[1]
    return (
        CONFIG
        + f"""
[database]
backend = "libsql"

[libsql]
server = "{team.server}"
admin = "{team.admin}"
key_file = "{team.key_file}"
public_url = "http://{{namespace}}.localhost:{port}"
"""
        + (f'db_path = "{team.db_path}"\n' if shared_fs else "")
        + extra
    )


def up_json(repo: Path, *args: str) -> dict[str, object]:
    r = run(repo, "up", *args, "--json")
    assert r.code == 0, r.err
    out: dict[str, object] = json.loads(r.out)
    return out


# ------------------------------------------------------------------ config


def _cfg(raw: dict[str, object]) -> object:
    return from_mapping({"project": {"name": "shop"}, **raw}, Path("/p"), None)


def test_config_picks_the_server_backend_and_refuses_what_it_cannot_do() -> None:
    cfg = _cfg({"libsql": {"managed": True}})
    assert cfg.database.backend == "sqld"  # type: ignore[attr-defined]
    assert _cfg({}).database.backend == "libsql"  # type: ignore[attr-defined]
    bad = [
        ({"database": {"server": "http://127.0.0.1:8080"}}, "[libsql] server"),
        ({"libsql": {"server": "http://h:1"}}, "libsql.admin"),
        ({"libsql": {"managed": True, "server": "http://h:1"}}, "remove libsql"),
        ({"libsql": {"managed": True, "public_url": "http://x"}}, "{namespace}"),
        (
            {"libsql": {"server": "ws://h:1", "admin": "http://h:2", "key_file": "k"}},
            "http(s)://HOST:PORT",
        ),
        (
            {"database": {"backend": "postgres"}, "libsql": {"managed": True}},
            'backend = "libsql"',
        ),
        ({"libsql": {"managed": True, "token_env": ["NOT VALID"]}}, "token_env"),
    ]
    for raw, words in bad:
        with pytest.raises(ConfigError) as e:
            _cfg(raw)
        assert words in str(e.value), (raw, str(e.value))


# --------------------------------------------------------------- lifecycle


def test_team_sqld_branch_lifecycle(repo: Path, sqld: TeamSqld) -> None:
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld))
    old = time.time() - 10  # older than the config cache's racy-clean window
    os.utime(repo / "branchdb.toml", (old, old))
    b = up_json(repo, "feature/a")
    ns = str(b["database"])
    url, token = str(b["url"]), str(b["auth_token"])
    assert b["backend"] == "sqld" and url.startswith(f"http://{ns}.localhost:")
    assert Admin(sqld.admin).exists(ns)
    # The checkout hook's fast path answers for it, importing nothing heavy (it
    # cannot stat a file here: it trusts the record, as for PostgreSQL).
    probe = (
        "import sys; sys.argv = ['branchdb', 'up', 'feature/a', '--json']\n"
        "from branchdb.cli.entry import run\n"
        "code = run()\n"
        "heavy = [m for m in ('branchdb.daemon.core.engine', 'httpx', "
        "'branchdb.daemon.backends.sqld_backend') if m in sys.modules]\n"
        "print(heavy, code)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True
    )
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "[] 0", p
    assert json.loads("\n".join(p.stdout.splitlines()[:-1]))["url"] == url
    # Same migrations, same ledger as the file backend.
    rows = py_client(url, token, "read", "SELECT name FROM _branchdb_migrations")
    assert [r["name"] for r in rows["rows"]] == ["001_users.sql", "002_orders.sql"]
    # `env` hands out the URL and the token under the names clients read.
    env = run(repo, "env", "feature/a")
    assert env.code == 0, env.err
    assert env.out.splitlines() == [
        f"DATABASE_URL={url}",
        f"DATABASE_AUTH_TOKEN={token}",
        f"TURSO_AUTH_TOKEN={token}",
    ]
    wrote = run(repo, "env", "feature/a", "--write", ".env")
    assert wrote.code == 0 and token in (repo / ".env").read_text()
    # Reset keeps the URL and the token, and empties the data.
    node_client(url, token, "rw", "scratch", "x")
    r = run(repo, "reset", "feature/a", "--json")
    assert r.code == 0, r.err
    again = json.loads(r.out)
    assert (again["url"], again["auth_token"]) == (url, token)
    names = py_client(url, token, "read", "SELECT name FROM sqlite_master")["rows"]
    assert "scratch" not in {n["name"] for n in names}
    # down deletes the namespace and branchdb's marker.
    assert run(repo, "down", "feature/a", "--yes").code == 0
    assert not Admin(sqld.admin).exists(ns)
    assert not list((repo / ".branchdb" / "sqld" / "owned").glob("*.json"))


def test_clone_without_a_shared_file_system_loads_over_hrana(
    repo: Path, sqld: TeamSqld, tmp_path: Path
) -> None:
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld, shared_fs=False))
    src = tmp_path / "prod.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v BLOB, t TEXT)")
    con.executemany(
        "INSERT INTO items (v, t) VALUES (?, ?)",
        [(bytes([i % 256]) * 10, f"it's {i}") for i in range(1200)],
    )
    con.execute("CREATE INDEX items_t ON items (t)")
    con.commit()
    con.close()
    assert run(repo, "snapshot", "create", "prod", "--source", str(src)).code == 0
    b = up_json(repo, "feature/b", "--from", "prod")
    assert b["strategy"] == "load"
    got = py_client(
        str(b["url"]),
        str(b["auth_token"]),
        "read",
        "SELECT count(*) AS n, sum(length(v)) AS bytes FROM items",
    )
    assert got["rows"] == [{"n": 1200, "bytes": 12000}]


@pytest.mark.parametrize("prepared", [True, False])
def test_clone_into_sqld_namespace_directory(
    repo: Path, sqld: TeamSqld, tmp_path: Path, prepared: bool
) -> None:
    """With sqld's disk shared: the snapshot's file is copied in, with the
    replication log prepared at snapshot time when an sqld binary is at hand
    (``+log``), else sqld rebuilds the log from the file (``+sqld``)."""
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld))
    src = tmp_path / "prod.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, t TEXT)")
    con.executemany("INSERT INTO items (t) VALUES (?)", [(f"{i}",) for i in range(900)])
    # Over 1 MB: the prepared log is compacted into one snapshots/*.snap file.
    con.execute("CREATE TABLE big (b BLOB)")
    con.executemany("INSERT INTO big VALUES (randomblob(4000))", [()] * 600)
    con.commit()
    con.close()
    env = {"BRANCHDB_SQLD_BIN": str(SQLD_BIN)} if prepared else {}
    made = run(repo, "snapshot", "create", "prod", "--source", str(src), env=env)
    assert made.code == 0, made.err
    sealed = repo / ".branchdb/snapshots/prod/1.sqld"
    assert sealed.is_dir() == prepared
    b = up_json(repo, "feature/c", "--from", "prod")
    assert str(b["strategy"]).endswith("+log" if prepared else "+sqld"), b
    url, token = str(b["url"]), str(b["auth_token"])
    got = node_client(url, token, "read", "SELECT count(*) AS n FROM items")
    assert got["rows"] == [{"n": 900}]
    if prepared:  # the compacted log is shared (a hard link), the wallog tiny
        (snap,) = (sealed / "snapshots").glob("*.snap")
        linked = sqld.db_path / "dbs" / str(b["database"]) / "snapshots" / snap.name
        assert linked.stat().st_ino == snap.stat().st_ino
        assert (sealed / "wallog").stat().st_size < 4096
    node_client(url, token, "rw", "items2", "written")
    big = py_client(url, token, "read", "SELECT count(*) AS n FROM big")
    assert big["rows"] == [{"n": 600}]
    # The prepared snapshot is untouched by the branch's writes.
    if prepared:
        again = up_json(repo, "feature/d", "--from", "prod")
        names = py_client(
            str(again["url"]),
            str(again["auth_token"]),
            "read",
            "SELECT name FROM sqlite_master WHERE name = 'items2'",
        )
        assert names["rows"] == []
    for branch in ("feature/c", "feature/d") if prepared else ("feature/c",):
        assert run(repo, "down", branch, "--yes").code == 0
    if prepared:  # the branches' links went with them; the sealed file stays
        assert snap.stat().st_nlink == 1 and snap.stat().st_mode & 0o222 == 0
    assert run(repo, "snapshot", "rm", "prod").code == 0
    assert not (repo / ".branchdb/snapshots/prod").exists()


# ----------------------------------------------------------------- refusals


def test_a_namespace_branchdb_did_not_make_is_never_touched(
    repo: Path, sqld: TeamSqld
) -> None:
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld))
    from branchdb.daemon.core.naming import sqld_namespace

    ns = sqld_namespace("shop", "feature/theirs")
    Admin(sqld.admin).create(ns)
    r = run(repo, "up", "feature/theirs")
    assert r.code != 0
    assert "was not made by branchdb" in r.err and "never touches it" in r.err
    assert Admin(sqld.admin).exists(ns)
    assert run(repo, "gc").code == 0
    assert Admin(sqld.admin).exists(ns)


def test_a_key_file_sqld_does_not_know_still_works_per_namespace(
    repo: Path, sqld: TeamSqld, tmp_path: Path
) -> None:
    """Each branch namespace is created with its own key (derived from
    ``key_file``), which replaces sqld's ``--auth-jwt-key-file`` for it: the key
    file need not be the one sqld started with. (Key rotation, expiry and the
    error cases: tests/test_sqld_tokens.py.)"""
    setup_project(repo)
    other_key = tmp_path / "other.pem"
    ensure_keypair(other_key, tmp_path / "other.pub.pem")
    config = team_config(sqld).replace(str(sqld.key_file), str(other_key))
    (repo / "branchdb.toml").write_text(config)
    b = up_json(repo, "feature/k")
    rows = py_client(str(b["url"]), str(b["auth_token"]), "read", "SELECT 1 AS one")
    assert rows["rows"] == [{"one": 1}]


# ---------------------------------------------------------- snapshot source


@pytest.mark.parametrize("backend", ["libsql", "sqld"])
def test_a_libsql_server_as_snapshot_source(
    repo: Path, sqld: TeamSqld, backend: str
) -> None:
    """``--source http://…`` reads the database through the server (GET /dump)
    with the token from $BRANCHDB_SOURCE_AUTH_TOKEN; without it, a clear refusal."""
    setup_project(repo)
    (repo / "branchdb.toml").write_text(
        team_config(sqld) if backend == "sqld" else CONFIG
    )
    # The "production" database: a namespace on the team's sqld.
    Admin(sqld.admin).create("prod")
    token = Signer.from_file(sqld.key_file).token("prod")
    port = sqld.server.rsplit(":", 1)[1]
    source = f"http://prod.localhost:{port}"
    node_client(source, token, "rw", "customers", "ada")
    node_client(source, token, "rw", "notes", "ends;\nnot here;")  # one statement
    # The daemon process resolves prod.localhost through the same stand-in.
    env = {"BRANCHDB_SOURCE_AUTH_TOKEN": token}
    big = run_with_localhost(
        repo,
        {**env, "BRANCHDB_MAX_DUMP_BYTES": "100"},
        *("snapshot", "create", "prod", "--source", source),
    )
    assert big.code != 0 and "BRANCHDB_MAX_DUMP_BYTES" in big.err, big
    r = run_with_localhost(repo, env, "snapshot", "create", "prod", "--source", source)
    assert r.code == 0, r.err
    refused = run_with_localhost(
        repo, {}, "snapshot", "create", "prod", "--source", source
    )
    assert refused.code != 0 and "BRANCHDB_SOURCE_AUTH_TOKEN" in refused.err
    b = up_json(repo, "feature/s", "--from", "prod")
    query = "SELECT v FROM customers UNION ALL SELECT v FROM notes"
    if backend == "sqld":
        rows = py_client(str(b["url"]), str(b["auth_token"]), "read", query)["rows"]
    else:
        con = sqlite3.connect(str(b["url"]).removeprefix("file:"))
        rows = [{"v": v} for (v,) in con.execute(query)]
        con.close()
    assert rows == [{"v": "ada"}, {"v": "ends;\nnot here;"}]


def run_with_localhost(repo: Path, env: dict[str, str], *args: str) -> object:
    """`branchdb …` with *.localhost resolving to 127.0.0.1 (sitecustomize)."""
    site = repo.parent / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import socket\n_r = socket.getaddrinfo\n"
        "def _g(h, *a, **k):\n"
        "    if isinstance(h, str) and h.endswith('.localhost'): h = '127.0.0.1'\n"
        "    return _r(h, *a, **k)\n"
        "socket.getaddrinfo = _g\n"
    )
    return run(repo, *args, env={**env, "PYTHONPATH": str(site)})
