"""``GET /v1/projects/{p}/branches/{b}/diff`` (read scope): JSON, text and SQL; drift;
and the CLI's remote mode printing the same review. Real SQLite files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from hooksupport import commit_on_branch
from support import run

from branchdb.daemon.api.app import create_app

FEATURE = (
    "ALTER TABLE users ADD COLUMN nickname TEXT;\n"
    "CREATE INDEX users_email ON users (email);\n"
    "ALTER TABLE orders DROP COLUMN user_id;\n"
)


@pytest.fixture
def api(repo: Path) -> Iterator[tuple[httpx.Client, dict[str, str], Path]]:
    setup_project(repo)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        ci = auth(toks["ci"])
        assert client.put("/v1/projects/shop/branches/main", headers=ci).is_success
        # The daemon reads each branch's migrations as committed.
        commit_on_branch(
            repo, "feature/x", {"migrations/003_feature.sql": FEATURE}, new=True
        )
        r = client.put("/v1/projects/shop/branches/feature/x", headers=ci)
        assert r.status_code == 201, r.text
        yield client, toks, repo


def test_diff_route_formats(api: tuple[httpx.Client, dict[str, str], Path]) -> None:
    client, toks, _ = api
    path = "/v1/projects/shop/branches/feature/x/diff"
    read = auth(toks["read"])
    r = client.get(path, headers=read)
    assert r.status_code == 200, r.text
    review = r.json()
    assert {(c["kind"], c["change"], c["name"]) for c in review["diff"]["changes"]} == {
        ("column", "added", "users.nickname"),
        ("index", "added", "users_email"),
        ("column", "removed", "orders.user_id"),
    }
    assert review["lint"]["linted"] == ["003_feature.sql"]
    (finding,) = review["lint"]["findings"]
    assert finding["rule"] == "sqlite-drop-column" and finding["line"] == 3
    assert finding["path"] == "migrations/003_feature.sql"
    text = client.get(path, params={"format": "text"}, headers=read)
    assert text.headers["content-type"].startswith("text/plain")
    assert "+ index users_email: CREATE INDEX users_email ON users (email)" in text.text
    assert "migrations/003_feature.sql:3: sqlite-drop-column" in text.text
    sql = client.get(path, params={"format": "sql"}, headers=read)
    assert sql.status_code == 200 and "CREATE INDEX users_email" in sql.text
    # Against itself's base the other way round: the reverse changes.
    back = client.get(
        "/v1/projects/shop/branches/main/diff",
        params={"against": "feature/x"},
        headers=read,
    ).json()
    assert ("column", "removed", "users.nickname") in {
        (c["kind"], c["change"], c["name"]) for c in back["diff"]["changes"]
    }
    # Drift: the database is what its migrations make.
    drift = client.get(path, params={"drift": "true"}, headers=read).json()
    assert drift["diff"]["changes"] == [] and drift["lint"] is None
    # Errors: JSON 4xx, never 500.
    assert client.get(path).status_code == 401
    assert client.get(path, params={"format": "yaml"}, headers=read).status_code in (
        400,
        422,
    )
    r = client.get(path, params={"against": "nosuch"}, headers=read)
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
    r = client.get("/v1/projects/shop/branches/nosuch/diff", headers=read)
    assert r.status_code == 404
    r = client.get(path, params={"against": "main", "drift": "true"}, headers=read)
    assert r.status_code == 409


def test_remote_cli_prints_the_same(
    api: tuple[httpx.Client, dict[str, str], Path],
) -> None:
    client, toks, repo = api
    env = {"BRANCHDB_SERVER": str(client.base_url), "BRANCHDB_TOKEN": toks["read"]}
    r = run(repo, "diff", "feature/x", env=env)
    assert r.code == 0, r.err
    local = client.get(
        "/v1/projects/shop/branches/feature/x/diff",
        params={"format": "text"},
        headers=auth(toks["read"]),
    )
    assert r.out == local.text
