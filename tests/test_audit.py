"""The audit log: the engine records who did what and why, in either store; the API
serves it; webhooks, tokens, the CLI user and the scheduler are told apart; two
daemons sharing a PostgreSQL state store see one log."""

from __future__ import annotations

import getpass
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from pgcluster import Cluster
from storesupport import KINDS, Backing, backing, fresh_database
from support import git
from test_api_webhooks import Hook, hook, pr_event  # noqa: F401 (fixture)

from branchdb.daemon.api import tokens
from branchdb.daemon.api.app import create_app
from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.store import open_store

AUDIT = "/v1/projects/shop/audit"


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    cluster = (
        request.getfixturevalue("pg_cluster") if request.param == "postgres" else None
    )
    with backing(request.param, tmp_path, cluster) as b:
        yield b


def test_engine_records_every_change_with_its_actor(repo: Path, place: Backing) -> None:
    setup_project(repo)
    store = place.open()
    e = Engine(config_mod.load(cwd=repo), store=store)
    me = f"cli:{getpass.getuser()}"
    up = e.up("feature/x")  # no acting block: the local user
    e.up("feature/x")  # nothing to do: nothing recorded
    with acting("token:abc123", "flaky data"):
        e.reset("feature/x")
    e.migrate("feature/x")
    source = Path(up.record.url.removeprefix("file:"))
    e.snapshot_create("prod", str(source))
    e.snapshot_rm("prod")
    with acting("github:d-77", "pull_request acme/shop#7"):
        e.down("feature/x")
    log = list(reversed(e.audit_log()))
    assert [(x.action, x.branch, x.actor, x.reason) for x in log] == [
        ("create", "feature/x", me, ""),
        ("migrate", "feature/x", me, ""),
        ("reset", "feature/x", "token:abc123", "flaky data"),
        ("migrate", "feature/x", "token:abc123", "flaky data"),
        ("migrate", "feature/x", me, ""),
        ("snapshot.create", "", me, ""),
        ("snapshot.delete", "", me, ""),
        ("delete", "feature/x", "github:d-77", "pull_request acme/shop#7"),
    ]
    assert log[1].detail == "applied: 001_users.sql, 002_orders.sql"
    assert log[4].detail == "applied: nothing pending"
    assert log[5].detail.startswith("prod@1 from ")
    assert log[0].at <= log[-1].at
    assert [x.action for x in e.audit_log(action="migrate", limit=2)] == [
        "migrate",
        "migrate",
    ]
    assert e.audit_log(branch="other") == []
    store.close()


def _token_id(settings_data: Path, secret: str, url: str | None = None) -> str:
    store = open_store(url, settings_data / "state.db")
    try:
        tok = tokens.verify(store, secret)
        assert tok is not None
        return tok.id
    finally:
        store.close()


def test_api_serves_the_log_with_filters_and_scopes(repo: Path) -> None:
    setup_project(repo)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    ci_id = _token_id(settings.data_dir, toks["ci"])
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as c,
    ):
        ci, read = auth(toks["ci"]), auth(toks["read"])
        assert (
            c.put("/v1/projects/shop/branches/feature/a", headers=ci).status_code == 201
        )
        assert c.put("/v1/projects/shop/branches/b", headers=ci).status_code == 201
        r = c.delete("/v1/projects/shop/branches/b", headers=ci)
        assert r.status_code == 200
        r = c.get(AUDIT, headers=read)
        assert r.status_code == 200, r.text
        rows = r.json()
        assert [(x["action"], x["branch"]) for x in rows] == [
            ("delete", "b"),
            ("migrate", "b"),
            ("create", "b"),
            ("migrate", "feature/a"),
            ("create", "feature/a"),
        ]
        assert {x["actor"] for x in rows} == {f"token:{ci_id}"}
        assert set(rows[0]) == {
            "id",
            "at",
            "project",
            "branch",
            "action",
            "actor",
            "reason",
            "detail",
        }
        r = c.get(AUDIT, headers=read, params={"branch": "feature/a", "limit": 1})
        assert [x["action"] for x in r.json()] == ["migrate"]
        r = c.get(AUDIT, headers=read, params={"action": "create"})
        assert [x["branch"] for x in r.json()] == ["b", "feature/a"]
        assert c.get(AUDIT).status_code == 401
        assert c.get(AUDIT, headers=read, params={"action": "drop"}).status_code == 422
        assert c.get(AUDIT, headers=read, params={"limit": 0}).status_code == 422
        assert c.get("/v1/projects/nope/audit", headers=read).status_code == 404


def test_webhook_changes_are_attributed_to_the_delivery(hook: Hook) -> None:  # noqa: F811
    sha = git(hook.upstream, "rev-parse", "HEAD").strip()
    git(hook.upstream, "branch", "feature/pay")
    r = hook.send(
        "pull_request", pr_event("opened", "feature/pay", sha), delivery="d-9"
    )
    assert hook.done(r)["status"] == "succeeded"
    rows = hook.client.get(AUDIT, headers=auth(hook.tokens["read"])).json()
    assert [(x["action"], x["actor"]) for x in rows] == [
        ("migrate", "github:d-9"),
        ("create", "github:d-9"),
    ]
    assert rows[0]["reason"] == f"github acme/shop#7 at {sha[:12]}"


# ------------------------------------------------- two daemons, one PG state store
@pytest.fixture
def two_daemons(
    repo: Path, tmp_path: Path, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, dict[str, str]]]:
    monkeypatch.delenv("BRANCHDB_PG_URL", raising=False)
    setup_project(repo)
    cfg = (repo / "branchdb.toml").read_text()
    (repo / "branchdb.toml").write_text(
        cfg + f'\n[database]\nbackend = "postgres"\nserver = "{pg_cluster.admin_url}"\n'
    )
    git(repo, "commit", "-qam", "postgres backend")
    other = tmp_path / "host-b"
    shutil.copytree(repo, other)
    with fresh_database(pg_cluster) as url:
        monkeypatch.setenv("BRANCHDB_STATE_URL", url)
        sa, sb = settings_for(repo), settings_for(other)
        assert sa.state_url == url and sa.data_dir != sb.data_dir
        toks = make_tokens_in(url)
        with (
            serve_in_thread(create_app(sa)) as a,
            serve_in_thread(create_app(sb)) as b,
        ):
            yield a, b, toks
            with httpx.Client(base_url=a, timeout=60) as c:
                for row in c.get(
                    "/v1/projects/shop/branches", headers=auth(toks["ci"])
                ).json():
                    c.delete(
                        f"/v1/projects/shop/branches/{row['branch']}",
                        headers=auth(toks["ci"]),
                        params={"force": True},
                    )


def make_tokens_in(url: str) -> dict[str, str]:
    store = open_store(url, Path("/nonexistent"))
    try:
        return {s: tokens.create(store, s)[0] for s in tokens.SCOPES}
    finally:
        store.close()


def test_two_daemons_on_one_state_store_create_one_database_and_share_the_log(
    two_daemons: tuple[str, str, dict[str, str]],
) -> None:
    a, b, toks = two_daemons
    ci = auth(toks["ci"])
    # Both apps live in this one process and share the module-level routers, which
    # FastAPI finishes building on their first request: build them once here, so
    # the race below is the replicas' (it is, across processes), not FastAPI's.
    for base in (a, b):
        assert httpx.get(f"{base}/v1/projects/shop/branches", headers=ci).is_success
    start = threading.Barrier(2)
    codes: list[int] = []

    def put(base: str) -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            start.wait()
            codes.append(
                c.put("/v1/projects/shop/branches/feature/x", headers=ci).status_code
            )

    threads = [threading.Thread(target=put, args=(u,)) for u in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 201]
    with httpx.Client(base_url=b, timeout=60) as c:
        got = c.get("/v1/projects/shop/branches/feature/x", headers=ci).json()
        rows = c.get(AUDIT, headers=auth(toks["read"]), params={"action": "create"})
    with httpx.Client(base_url=a, timeout=60) as c:
        same = c.get("/v1/projects/shop/branches/feature/x", headers=ci).json()
    assert got["url"] == same["url"] and got["database"] == same["database"]
    assert [x["branch"] for x in rows.json()] == ["feature/x"]
