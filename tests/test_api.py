"""The daemon's HTTP API over real libsql files: branches, auth, errors, jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import (
    auth,
    branches,
    make_tokens,
    serve_in_thread,
    settings_for,
    setup_project,
    wait_job,
    wait_up,
)
from support import git, tables

from branchdb.cli.output import branch_json, snapshot_json
from branchdb.daemon.api.app import create_app
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.store.sqlite_store import SqliteStore

BR = "/v1/projects/shop/branches"


class Api:
    def __init__(self, repo: Path, client: httpx.Client, toks: dict[str, str]) -> None:
        self.repo = repo
        self.client = client
        self.tokens = toks

    def call(
        self, method: str, path: str, scope: str = "ci", **kw: object
    ) -> httpx.Response:
        return self.client.request(method, path, headers=auth(self.tokens[scope]), **kw)  # type: ignore[arg-type]


@pytest.fixture
def api(repo: Path) -> Iterator[Api]:
    setup_project(repo)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    # A real uvicorn server (starlette's TestClient is deprecated with httpx).
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield Api(repo, client, toks)


def db_file(url: str) -> Path:
    assert url.startswith("file:/")
    return Path(url.removeprefix("file:"))


def test_health_and_ready_need_no_token(api: Api) -> None:
    assert api.client.get("/v1/health").json() == {"status": "ok"}
    wait_up(str(api.client.base_url), path="/v1/ready")  # after start-up recovery
    r = api.client.get("/v1/ready")
    assert r.status_code == 200 and r.json() == {
        "status": "ready",
        "projects": ["shop"],
    }


def test_put_creates_once_and_answers_like_the_cli(api: Api) -> None:
    branches(api.repo, "feature/x")
    first = api.call("PUT", f"{BR}/feature/x")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["created"] is True and body["applied"] == [
        "001_users.sql",
        "002_orders.sql",
    ]
    path = db_file(body["url"])
    assert tables(path) >= {"users", "orders", "_branchdb_migrations"}
    again = api.call("PUT", f"{BR}/feature/x")
    assert again.status_code == 200
    assert again.json()["url"] == body["url"] and again.json()["created"] is False
    assert again.json()["applied"] == []
    # Exactly the JSON `branchdb up --json` prints (same record, same shape).
    rec = SqliteStore(api.repo / ".branchdb" / "state.db").get_branch(
        "shop", "feature/x"
    )
    assert rec is not None
    got = api.call("GET", f"{BR}/feature/x", scope="read").json()
    assert got == branch_json(rec) | {"last_used_at": got["last_used_at"]}
    assert set(body) == set(branch_json(rec)) | {
        "created",
        "reset",
        "up_to_date",
        "applied",
        "evicted",
        "command",
    }
    assert len(list((api.repo / ".branchdb" / "branches").glob("bdb-*.db"))) == 1


def test_get_refreshes_last_used_and_lists(api: Api) -> None:
    branches(api.repo, "a/b/c")
    api.call("PUT", f"{BR}/a/b/c")
    store = SqliteStore(api.repo / ".branchdb" / "state.db")
    store.touch_branch("shop", "a/b/c", 0)
    with store._write() as db:  # make it look old
        db.execute("UPDATE branches SET last_used_at = 1000 WHERE branch = 'a/b/c'")
    r = api.call("GET", f"{BR}/a/b/c", scope="read")
    assert r.status_code == 200 and r.json()["branch"] == "a/b/c"
    rec = store.get_branch("shop", "a/b/c")
    assert rec is not None and rec.last_used_at > 1000
    listed = api.call("GET", BR, scope="read").json()
    assert [b["branch"] for b in listed] == ["a/b/c"]


def test_delete_drops_the_file_and_protected_needs_force(api: Api) -> None:
    branches(api.repo, "feature/gone")
    url = api.call("PUT", f"{BR}/feature/gone").json()["url"]
    r = api.call("DELETE", f"{BR}/feature/gone")
    assert r.status_code == 200 and r.json()["dropped"] is True
    assert not db_file(url).exists()
    missing = api.call("GET", f"{BR}/feature/gone", scope="read")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFound"
    main_url = api.call("PUT", f"{BR}/main").json()["url"]
    refused = api.call("DELETE", f"{BR}/main")
    assert (
        refused.status_code == 409 and "protected" in refused.json()["error"]["message"]
    )
    assert db_file(main_url).exists()
    assert api.call("DELETE", f"{BR}/main", params={"force": "true"}).status_code == 200
    assert not db_file(main_url).exists()


def test_migrate_and_reset(api: Api) -> None:
    branches(api.repo, "feat")
    url = api.call("PUT", f"{BR}/feat").json()["url"]
    # A migration committed on the branch (the checkout stays on main).
    git(api.repo, "checkout", "-q", "feat")
    (api.repo / "migrations" / "003_coupons.sql").write_text(
        "CREATE TABLE coupons (code TEXT);\n"
    )
    git(api.repo, "add", "-A")
    git(api.repo, "commit", "-q", "-m", "coupons")
    git(api.repo, "checkout", "-q", "main")
    dry = api.call("POST", f"{BR}/feat/migrate", params={"dry_run": "true"})
    assert dry.json() == {
        "branch": "feat",
        "dry_run": True,
        "applied": [],
        "pending": ["003_coupons.sql"],
    }
    assert "coupons" not in tables(db_file(url))
    done = api.call("POST", f"{BR}/feat/migrate")
    assert done.status_code == 200 and done.json()["applied"] == ["003_coupons.sql"]
    assert "coupons" in tables(db_file(url))
    # reset: rebuilt from its source, same URL, every migration re-applied.
    with __import__("sqlite3").connect(db_file(url)) as con:
        con.execute("INSERT INTO users (email) VALUES ('a@example.com')")
    reset = api.call("POST", f"{BR}/feat/reset")
    assert reset.status_code == 200 and reset.json()["url"] == url
    assert len(reset.json()["applied"]) == 3
    with __import__("sqlite3").connect(db_file(url)) as con:
        assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    api.call("PUT", f"{BR}/main")
    assert api.call("POST", f"{BR}/main/reset").status_code == 409
    assert (
        api.call("POST", f"{BR}/main/reset", params={"force": "true"}).status_code
        == 200
    )


def test_branch_named_like_a_verb(api: Api) -> None:
    """A branch called x/reset is a branch, not the reset of x."""
    branches(api.repo, "x/reset")
    assert api.call("PUT", f"{BR}/x/reset").status_code == 201
    assert api.call("GET", f"{BR}/x/reset", scope="read").json()["branch"] == "x/reset"
    assert api.call("POST", f"{BR}/x/reset/reset").json()["branch"] == "x/reset"


def test_errors_are_json(api: Api) -> None:
    branches(api.repo, "ok")
    hostile = api.call("PUT", f"{BR}/bad%01name")
    assert hostile.status_code == 400 and hostile.json()["error"]["type"] == "GitError"
    nul = api.call("PUT", f"{BR}/a%00b")
    assert nul.status_code == 400 and "error" in nul.json()
    # A newline never matches a route (starlette's path pattern): 404, still JSON.
    newline = api.call("GET", f"{BR}/a%0Ab", scope="read")
    assert newline.status_code == 404 and "error" in newline.json()
    unknown = api.call("GET", "/v1/projects/nope/branches", scope="read")
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    route = api.client.get("/v2/whatever")
    assert route.status_code == 404 and route.json()["error"]["type"] == "NotFound"
    bad = api.call("PUT", f"{BR}/ok", params={"fresh": "maybe"})
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "ValidationError"
    both = api.call("PUT", f"{BR}/ok", params={"fresh": "true", "from": "prod"})
    assert both.status_code == 409
    snap = api.call("PUT", f"{BR}/ok", params={"from": "prod"})
    assert snap.status_code == 404 and "snapshot" in snap.json()["error"]["message"]
    assert not (api.repo / ".branchdb" / "branches").exists() or not list(
        (api.repo / ".branchdb" / "branches").glob("*.db")
    )
    method = api.call("POST", f"{BR}/ok")
    assert method.status_code == 405 and "error" in method.json()


def test_auth_scopes(api: Api) -> None:
    branches(api.repo, "f")
    none = api.client.put(f"{BR}/f")
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert none.json()["error"]["type"] == "Unauthorized"
    wrong = api.client.put(f"{BR}/f", headers=auth("bdb_" + "x" * 43))
    assert wrong.status_code == 401
    read = api.call("PUT", f"{BR}/f", scope="read")
    assert read.status_code == 403 and read.json()["error"]["type"] == "Forbidden"
    assert not (api.repo / ".branchdb" / "branches").exists() or not list(
        (api.repo / ".branchdb" / "branches").glob("*.db")
    )
    assert api.call("PUT", f"{BR}/f", scope="admin").status_code == 201
    assert api.call("GET", f"{BR}/f", scope="read").status_code == 200
    assert api.call("DELETE", f"{BR}/f", scope="read").status_code == 403
    # Only digests are stored.
    store = SqliteStore(api.repo / ".branchdb" / "state.db")
    stored = {r["sha256"] for r in store.list_tokens()}
    assert not any(t in stored for t in api.tokens.values())
    assert all(len(d) == 64 for d in stored)


def test_wait_false_answers_202_with_a_job(api: Api) -> None:
    branches(api.repo, "bg")
    r = api.call("PUT", f"{BR}/bg", params={"wait": "false"})
    assert (
        r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    )
    job = wait_job(api.client, r.json(), api.tokens["read"])
    assert job["status"] == "succeeded" and job["http_status"] == 201
    assert db_file(job["result"]["url"]).exists()
    failing = api.call("POST", f"{BR}/nothere/migrate", params={"wait": "false"})
    job = wait_job(api.client, failing.json(), api.tokens["read"])
    assert job["status"] == "failed" and job["http_status"] == 404
    assert job["error"]["type"] == "NotFound"
    assert api.call("GET", "/v1/jobs/nope", scope="read").status_code == 404


def test_snapshots_list(api: Api, tmp_path: Path) -> None:
    import sqlite3

    src = tmp_path / "prod.db"
    with sqlite3.connect(src) as con:
        con.execute("CREATE TABLE t (x)")
    from branchdb.daemon.config import project as config

    eng = Engine(config.load(cwd=api.repo))
    snap = eng.snapshot_create("prod", str(src))
    listed = api.call("GET", "/v1/projects/shop/snapshots", scope="read").json()
    assert listed == [snapshot_json(snap)]
    branches(api.repo, "from-prod")
    created = api.call("PUT", f"{BR}/from-prod", params={"from": "prod"}).json()
    assert created["source"] == "snapshot:prod@1" and "t" in tables(
        db_file(created["url"])
    )


def test_openapi_documents_the_routes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/v1/projects/{project}/branches/{branch}"]) == {
        "put",
        "get",
        "delete",
        "patch",  # the branch's idle TTL
    }
    assert (
        "202" in paths["/v1/projects/{project}/branches/{branch}"]["put"]["responses"]
    )
    assert "400" in paths["/v1/webhooks/github"]["post"]["responses"]
    assert "/v1/jobs/{job_id}" in paths and "/v1/health" in paths


def test_twenty_concurrent_puts_make_one_database(repo: Path) -> None:
    """Against a real uvicorn server: one database, one 201, the same URL for all."""
    setup_project(repo)
    branches(repo, "feature/race")
    settings = settings_for(repo)
    toks = make_tokens(settings)

    async def fire(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.put(f"{BR}/feature/race", headers=auth(toks["ci"]))
                    for _ in range(20)
                )
            )

    with serve_in_thread(create_app(settings)) as base:
        responses = asyncio.run(fire(base))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201], [r.text for r in responses]
    assert len({r.json()["url"] for r in responses}) == 1
    files = list((repo / ".branchdb" / "branches").glob("*.db"))
    assert len(files) == 1 and tables(files[0]) >= {"users", "orders"}


def test_gc_plan_run_and_scheduler(tmp_path: Path) -> None:
    """GET /gc plans, POST /gc runs (admin), and the scheduler runs GC by itself."""
    repo = tmp_path / "sched"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "d@example.com")
    git(repo, "config", "user.name", "D")
    setup_project(repo)
    (repo / "branchdb.toml").write_text(
        (repo / "branchdb.toml").read_text() + '[branches]\ngrace = "1s"\n'
    )
    settings = settings_for(repo)._replace(gc_interval=1)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        git(repo, "branch", "gone")
        r = client.put("/v1/projects/shop/branches/gone", headers=auth(toks["ci"]))
        assert r.status_code == 201, r.text
        git(repo, "branch", "-D", "gone")
        # No git branch "gone" any more: collectable as deleted.
        plan = client.get("/v1/projects/shop/gc", headers=auth(toks["read"])).json()
        assert [(c["branch"], c["policy"]) for c in plan["candidates"]] == [
            ("gone", "deleted")
        ]
        r = client.post("/v1/projects/shop/gc", headers=auth(toks["ci"]))
        assert r.status_code == 403
        # The scheduler (every second) marks it, then deletes it after the grace.
        # (Polled on disk: a GET of the branch would count as a use and keep it.)
        branches = repo / ".branchdb" / "branches"
        deadline = time.monotonic() + 30
        while list(branches.glob("*.db")) and time.monotonic() < deadline:
            time.sleep(0.5)
        got = client.get("/v1/projects/shop/branches/gone", headers=auth(toks["read"]))
        assert got.status_code == 404, got.text
        assert not list((repo / ".branchdb" / "branches").glob("*.db"))
