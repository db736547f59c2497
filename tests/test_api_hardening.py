"""Hardening the daemon: tokens limited to projects, webhook delivery ids per project,
webhook branch names under the one branch-name rule, and a branch named ``x/ttl``.

A real daemon (uvicorn on 127.0.0.1) serves two real git repositories, ``shop`` and
``web``, each with its own webhook secrets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from apisupport import auth, branches, serve_in_thread, setup_project, wait_job
from hooksupport import (
    GITLAB_TOKEN,
    SECRET,
    delete_event,
    merge_request_event,
    push_event,
    sign,
)
from hooksupport import pull_request_event as pr_event
from support import git

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api import tokens
from branchdb.daemon.api.app import create_app
from branchdb.daemon.store.sqlite_store import SqliteStore

WEB_SECRET = "web's own secret"


@dataclass
class Two:
    """A daemon serving ``shop`` and ``web``; tokens by name."""

    client: httpx.Client
    data: Path
    shop: Path
    web: Path
    toks: dict[str, str]

    def store(self) -> SqliteStore:
        return SqliteStore(self.data / "state.db")

    def github(
        self,
        project: str,
        payload: dict[str, Any] | bytes,
        delivery: str,
        secret: str = SECRET,
        event: str = "pull_request",
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.client.post(
            f"/v1/webhooks/github?project={project}",
            content=body,
            headers={
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(body, secret),
                "Content-Type": "application/json",
            },
        )

    def gitlab(self, payload: dict[str, Any] | bytes, key: str) -> httpx.Response:
        """A merge request hook for ``shop``."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.client.post(
            "/v1/webhooks/gitlab?project=shop",
            content=body,
            headers={
                "X-Gitlab-Event": "Merge Request Hook",
                "X-Gitlab-Token": GITLAB_TOKEN,
                "Idempotency-Key": key,
                "Content-Type": "application/json",
            },
        )

    def branches(self, project: str) -> list[str]:
        r = self.client.get(
            f"/v1/projects/{project}/branches", headers=auth(self.toks["admin"])
        )
        assert r.status_code == 200, r.text
        return [b["branch"] for b in r.json()]


def _second_project(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    setup_project(root)
    toml = root / "branchdb.toml"
    toml.write_text(toml.read_text().replace('name = "shop"', 'name = "web"'))
    git(root, "commit", "-q", "-am", "web")
    return root


@pytest.fixture
def two(repo: Path, tmp_path: Path) -> Iterator[Two]:
    shop = setup_project(repo)
    web = _second_project(tmp_path / "web")
    # The branches the tests PUT (the daemon reads their committed migrations).
    branches(shop, "feature/a", "feature/m", "x/ttl", "feature/y/ttl", "ttl")
    branches(web, "feature/w", "feature/m")
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{tmp_path / "daemon"}"\n\n'
        f'[[projects]]\npath = "{shop}"\nrepository = "{shop}"\n'
        f"webhook_secret = {json.dumps(SECRET)}\n"
        f"gitlab_secret = {json.dumps(GITLAB_TOKEN)}\n\n"
        f'[[projects]]\npath = "{web}"\nrepository = "{web}"\n'
        f"webhook_secret = {json.dumps(WEB_SECRET)}\n"
    )
    settings = daemon_config.load(cfg)
    store = SqliteStore(settings.data_dir / "state.db")
    try:
        toks = {
            "admin": tokens.create(store, "admin")[0],
            "shop-ci": tokens.create(store, "ci", "shop-ci", ["shop"])[0],
            "shop-admin": tokens.create(store, "admin", "shop-admin", ["shop"])[0],
            "shop-read": tokens.create(store, "read", "shop-read", ["shop"])[0],
            "both": tokens.create(store, "read", "both", ["shop", "web"])[0],
        }
    finally:
        store.close()
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield Two(client, tmp_path / "daemon", shop, web, toks)


def forbidden(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["type"] == "Forbidden" and "limited to project" in error["message"]


# ------------------------------------------------------------ token projects
def test_a_token_limited_to_a_project_is_refused_elsewhere(two: Two) -> None:
    c, t = two.client, two.toks
    ci = auth(t["shop-ci"])
    assert c.put("/v1/projects/shop/branches/feature/a", headers=ci).status_code == 201
    # Every kind of route of another project: branches, jobs, GC, audit, snapshots.
    forbidden(c.put("/v1/projects/web/branches/feature/a", headers=ci))
    forbidden(c.get("/v1/projects/web/branches", headers=ci))
    forbidden(c.get("/v1/projects/web/branches/feature/a", headers=ci))
    forbidden(c.delete("/v1/projects/web/branches/feature/a", headers=ci))
    forbidden(c.post("/v1/projects/web/branches/feature/a/status", headers=ci))
    forbidden(c.post("/v1/projects/web/branches/feature/a/migrate", headers=ci))
    forbidden(c.post("/v1/projects/web/branches/feature/a/reset", headers=ci))
    forbidden(
        c.patch("/v1/projects/web/branches/feature/a", json={"ttl": "3d"}, headers=ci)
    )
    forbidden(c.get("/v1/projects/web/gc", headers=ci))
    forbidden(c.get("/v1/projects/web/audit", headers=ci))
    forbidden(c.get("/v1/projects/web/snapshots", headers=ci))
    admin = auth(t["shop-admin"])
    forbidden(c.post("/v1/projects/web/gc", headers=admin))
    forbidden(
        c.post(
            "/v1/projects/web/snapshots",
            json={"name": "prod", "source": str(two.web / "x.db")},
            headers=admin,
        )
    )
    forbidden(c.delete("/v1/projects/web/snapshots/prod", headers=admin))
    # A project that does not exist is refused the same way (no probing for names).
    forbidden(c.get("/v1/projects/nope/branches", headers=ci))
    assert two.branches("web") == []
    # Its own project works, admin routes included.
    assert c.get("/v1/projects/shop/gc", headers=ci).status_code == 200
    assert c.get("/v1/projects/shop/audit", headers=ci).status_code == 200
    assert c.post("/v1/projects/shop/gc", headers=admin).status_code == 200


def test_jobs_of_another_project_are_refused(two: Two) -> None:
    c, t = two.client, two.toks
    r = c.put(
        "/v1/projects/web/branches/feature/w?wait=false", headers=auth(t["admin"])
    )
    assert r.status_code == 202, r.text
    job = wait_job(c, r.json(), t["admin"])
    assert job["status"] == "succeeded", job
    forbidden(c.get(f"/v1/jobs/{job['id']}", headers=auth(t["shop-read"])))
    assert wait_job(c, job, t["both"])["project"] == "web"


def test_project_list_and_metrics_show_only_the_tokens_projects(two: Two) -> None:
    c, t = two.client, two.toks
    for name in ("shop", "web"):
        r = c.put(f"/v1/projects/{name}/branches/feature/m", headers=auth(t["admin"]))
        assert r.status_code == 201, r.text
    r = c.get("/v1/projects", headers=auth(t["shop-read"]))
    assert [p["name"] for p in r.json()] == ["shop"]
    r = c.get("/v1/projects", headers=auth(t["admin"]))
    assert sorted(p["name"] for p in r.json()) == ["shop", "web"]

    def branches_metric(token: str) -> dict[str, str]:
        r = c.get("/metrics", headers=auth(token))
        assert r.status_code == 200, r.text
        return {
            line.split('"')[1]: str(int(float(line.rsplit(" ", 1)[1])))
            for line in r.text.splitlines()
            if line.startswith("branchdb_branches{")
        }

    assert branches_metric(t["shop-read"]) == {"shop": "1"}
    assert branches_metric(t["both"]) == {"shop": "1", "web": "1"}
    assert branches_metric(t["admin"]) == {"shop": "1", "web": "1"}


# ------------------------------------------------------------ a branch named x/ttl
@pytest.mark.parametrize("name", ["x/ttl", "feature/y/ttl", "ttl"])
def test_a_branch_named_ttl_is_an_ordinary_branch(two: Two, name: str) -> None:
    c, ci = two.client, auth(two.toks["shop-ci"])
    path = f"/v1/projects/shop/branches/{name}"
    r = c.put(path, headers=ci)
    assert r.status_code == 201, r.text
    assert r.json()["branch"] == name
    assert c.get(path, headers=ci).json()["branch"] == name
    # The idle TTL of that branch is set on the branch itself.
    r = c.patch(path, json={"ttl": "3d"}, headers=ci)
    assert r.status_code == 200 and r.json()["branch"] == name, r.text
    assert r.json()["ttl"] == 3 * 86400
    assert two.branches("shop") == [name]
    r = c.delete(path, headers=ci)
    assert r.status_code == 200 and r.json()["dropped"] is True, r.text
    assert two.branches("shop") == []


# ------------------------------------------------------------ webhook deliveries
def test_delivery_ids_are_per_project(two: Two) -> None:
    """web's secret holder sends a delivery id first; shop's own delivery of that id
    is still acted on (and web's redelivery of it is still a duplicate)."""
    web_sha = git(two.web, "rev-parse", "HEAD")
    r = two.github("web", pr_event("opened", "feature/w", web_sha), "id-1", WEB_SECRET)
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    assert wait_job(two.client, r.json()["job"], two.toks["admin"])["status"] == (
        "succeeded"
    )
    shop_sha = git(two.shop, "rev-parse", "HEAD")
    r = two.github("shop", pr_event("opened", "feature/s", shop_sha), "id-1")
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    job = wait_job(two.client, r.json()["job"], two.toks["admin"])
    assert job["status"] == "succeeded", job
    assert two.branches("shop") == ["feature/s"]
    assert two.branches("web") == ["feature/w"]
    r = two.github("web", pr_event("opened", "feature/w", web_sha), "id-1", WEB_SECRET)
    assert r.status_code == 200 and r.json()["status"] == "duplicate", r.text
    store = two.store()
    try:
        for project in ("shop", "web"):
            row = store.delivery("github", "id-1", project=project) or {}
            assert row["status"] == "done", (project, row)
    finally:
        store.close()


# ------------------------------------------------------------ webhook branch names
BAD_NAMES = ["a..b", "../../etc", "x" * 300, "-rf", "feat//x", "feat/x.lock"]


def assert_ignored(r: httpx.Response) -> None:
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "ignored", body
    assert body["reason"].startswith("ignored: invalid branch name"), body


def assert_nothing_recorded(two: Two, provider: str) -> None:
    assert two.branches("shop") == []
    store = two.store()
    try:
        assert store.closed_branches("shop") == {}
        for n in range(len(BAD_NAMES) * 4):
            assert store.delivery(provider, f"bad-{n}", project="shop") is None
    finally:
        store.close()
    assert not (two.data / "mirrors").exists()  # nothing was even fetched


def test_github_events_for_branch_names_git_refuses_are_ignored(two: Two) -> None:
    sha = git(two.shop, "rev-parse", "HEAD")
    n = 0
    for name in BAD_NAMES:
        for event, payload in [
            ("pull_request", pr_event("opened", name, sha)),
            ("pull_request", pr_event("closed", name, sha, merged=True)),
            ("push", push_event(name, sha, sha)),
            ("delete", delete_event(name)),
        ]:
            assert_ignored(two.github("shop", payload, f"bad-{n}", event=event))
            n += 1
    assert_nothing_recorded(two, "github")


def test_gitlab_merge_requests_for_branch_names_git_refuses_are_ignored(
    two: Two,
) -> None:
    sha = git(two.shop, "rev-parse", "HEAD")
    n = 0
    for name in BAD_NAMES:
        for action in ("open", "update", "merge", "close"):
            r = two.gitlab(merge_request_event(action, name, sha), f"bad-{n}")
            assert_ignored(r)
            n += 1
    assert_nothing_recorded(two, "gitlab")


# ------------------------------------------------------------ deeply nested JSON
DEEP = b"[" * 50_000 + b"]" * 50_000


def assert_bad_request(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == "BadRequest", r.text


def test_deeply_nested_json_is_a_bad_request(two: Two) -> None:
    c, admin = two.client, auth(two.toks["admin"])
    assert_bad_request(two.github("shop", DEEP, "deep-1"))
    assert_bad_request(two.github("shop", b'{"pull_request": ' + DEEP + b"}", "d-2"))
    assert_bad_request(two.gitlab(DEEP, "deep-3"))
    json_type = {"Content-Type": "application/json"}
    for body in (DEEP, b'{"files": ' + DEEP + b"}"):
        for method, path in [
            ("PUT", "/v1/projects/shop/branches/feature/deep"),
            ("POST", "/v1/projects/shop/branches/feature/deep/status"),
        ]:
            r = c.request(method, path, content=body, headers={**admin, **json_type})
            assert_bad_request(r)
    # A route whose body FastAPI parses (the snapshot's JSON) answers 400 too.
    r = c.post(
        "/v1/projects/shop/snapshots", content=DEEP, headers={**admin, **json_type}
    )
    assert r.status_code == 400, r.text
    assert two.branches("shop") == []
    assert c.get("/v1/health").status_code == 200
