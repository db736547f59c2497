"""Done-when: a signed GitHub pull_request webhook drives a real branch database
through its life, and its URL is published.

opened → the database is created from the head commit (read from the daemon's mirror)
and published: a deployment + deployment status and a PR comment on the GitHub
stand-in (the URL with its password redacted), and a signed callback with the full URL;
synchronize (a new migration pushed) → migrated at the new sha, the comment edited in
place; closed (merged) → garbage collection deletes the database. Once on libsql
(SQLite files), once on PostgreSQL (a real cluster) and once on the docker backend
(a container per branch). Plus the GitLab equivalent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from apisupport import auth, setup_project
from githubstub import CallbackReceiver, GitHubStub, serve
from hooksupport import (
    Hook,
    commit_on_branch,
    merge_request_event,
    pull_request_event,
    running_daemon,
)
from pgcluster import Cluster
from support import git

from branchdb.daemon.core.errors import redact

GH_TOKEN = "ghs_" + "t" * 36
CB_SECRET = "callback-" + "s" * 24
PAY = {
    "migrations/003_payments.sql": (
        "CREATE TABLE payments (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL);\n"
        "INSERT INTO payments (id, amount) VALUES (1, 500);\n"
    )
}
REFUNDS = {
    "migrations/004_refunds.sql": (
        "CREATE TABLE refunds (id INTEGER PRIMARY KEY, payment_id INTEGER);\n"
        "INSERT INTO refunds (id, payment_id) VALUES (1, 1);\n"
    )
}


class World:
    def __init__(self, hook: Hook, gh: GitHubStub, cb: CallbackReceiver) -> None:
        self.hook, self.gh, self.cb = hook, gh, cb


@pytest.fixture
def stubs() -> Iterator[tuple[GitHubStub, CallbackReceiver]]:
    gh, cb = GitHubStub(GH_TOKEN), CallbackReceiver()
    with serve(gh.app) as gh_base, serve(cb.app) as cb_base:
        gh.base, cb.base = gh_base, cb_base
        yield gh, cb


def publish_toml(gh: GitHubStub, cb: CallbackReceiver) -> str:
    return (
        "\n[projects.publish]\n"
        'github = ["deployment", "comment"]\n'
        f'api_url = "{gh.base}"\n'
        f'callback_url = "{cb.base}/hook"\n'
        "callback_backoff = 0.05\n"
    )


def world(
    repo: Path,
    tmp_path: Path,
    stubs: tuple[GitHubStub, CallbackReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    monkeypatch.setenv("BRANCHDB_GITHUB_TOKEN_SHOP", GH_TOKEN)
    monkeypatch.setenv("BRANCHDB_CALLBACK_SECRET_SHOP", CB_SECRET)
    gh, cb = stubs
    with running_daemon(repo, tmp_path, publish_toml(gh, cb)) as hook:
        yield World(hook, gh, cb)


@pytest.fixture
def libsql_world(
    repo: Path,
    tmp_path: Path,
    stubs: tuple[GitHubStub, CallbackReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    setup_project(repo)
    with (repo / "branchdb.toml").open("a") as f:
        f.write('\n[branches]\ngrace = "0s"\n')
    git(repo, "commit", "-qam", "no grace")
    yield from world(repo, tmp_path, stubs, monkeypatch)


@pytest.fixture
def pg_world(
    repo: Path,
    tmp_path: Path,
    stubs: tuple[GitHubStub, CallbackReceiver],
    monkeypatch: pytest.MonkeyPatch,
    pg_cluster: Cluster,
) -> Iterator[World]:
    setup_project(repo)
    # Each test gets its own project name: the cluster is shared by the session.
    name = "wh" + repo.parent.name[-10:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n\n'
        f'[database]\nbackend = "postgres"\nserver = "{pg_cluster.admin_url}"\n\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n\n'
        '[branches]\ngrace = "0s"\n'
    )
    git(repo, "commit", "-qam", "postgres")
    yield from world(repo, tmp_path, stubs, monkeypatch)


@pytest.fixture
def docker_world(
    repo: Path,
    tmp_path: Path,
    stubs: tuple[GitHubStub, CallbackReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    from dockersupport import remove_project, require_docker

    image, cow = require_docker()
    setup_project(repo)
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n\n[database]\nbackend = "docker"\n\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n\n'
        '[branches]\ngrace = "0s"\n\n'
        f'[docker]\nimage = "{image}"\ndir = "{cow / "contract"}"\n'
    )
    git(repo, "commit", "-qam", "docker")
    try:
        yield from world(repo, tmp_path, stubs, monkeypatch)
    finally:
        remove_project("shop")
        shutil.rmtree(cow / "contract" / "shop", ignore_errors=True)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("file:"):
        con = sqlite3.connect(f"{url}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    with psycopg.connect(url) as c:
        return c.execute(sql).fetchall()


DOCKER = "docker"  # exists(): a branch container, found by its port label


def exists(url: str, admin_url: str | None) -> bool:
    if url.startswith("file:"):
        return Path(url.removeprefix("file:")).exists()
    if admin_url == DOCKER:
        from branchdb.daemon.backends import docker_runtime

        port = str(psycopg.conninfo.conninfo_to_dict(url)["port"])
        return any(
            docker_runtime.label(c, "port") == port
            for c in docker_runtime.containers("shop")
        )
    assert admin_url is not None
    db = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(admin_url) as c:
        return bool(
            c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchall()
        )


def verified_callbacks(cb: CallbackReceiver) -> list[dict[str, Any]]:
    """Every callback body, after checking its signature like a receiver must."""
    out = []
    for req in cb.requests:
        body = req["body"]
        want = (
            "sha256=" + hmac.new(CB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        )
        assert hmac.compare_digest(req["headers"]["x-branchdb-signature-256"], want)
        data = json.loads(body)
        assert str(data["timestamp"]) == req["headers"]["x-branchdb-timestamp"]
        out.append(data)
    return out


def lifecycle(w: World, admin_url: str | None = None) -> None:
    hook, gh, cb = w.hook, w.gh, w.cb
    sha1 = commit_on_branch(hook.upstream, "feature/pay", PAY, new=True)

    # A bad signature does nothing, not even a delivery record.
    opened = pull_request_event("opened", "feature/pay", sha1)
    r = hook.github("pull_request", opened, signature="sha256=" + "0" * 64)
    assert r.status_code == 401 and hook.branches() == {}

    # opened: created at the head sha, published.
    job = hook.done(hook.github("pull_request", opened, delivery="d-open"))
    assert job["status"] == "succeeded" and job["http_status"] == 201, job
    url = job["result"]["url"]
    assert rows(url, "SELECT id, amount FROM payments") == [(1, 500)]
    pub = hook.wait(job["result"]["publish_job"])
    assert pub["status"] == "succeeded", pub
    assert pub["result"]["deployment"]["ok"] and pub["result"]["comment"]["ok"], pub
    (dep,) = gh.deployments.values()
    assert dep["ref"] == sha1 and dep["environment"] == "branchdb/feature/pay"
    # The failure first; the close then marks the environment inactive (its own
    # publishing job, which may or may not have run yet).
    st, *later = gh.deployment_statuses[dep["id"]]
    assert [s["state"] for s in later] in ([], ["inactive"])
    assert st["state"] == "success" and st["environment_url"] == redact(url)
    (comment,) = gh.comments.values()
    assert comment["number"] == 7 and redact(url) in comment["body"]
    (first,) = verified_callbacks(cb)
    assert first == {
        "project": "shop",
        "branch": "feature/pay",
        "sha": sha1,
        "url": url,  # the full URL, password included: only to the callback
        "status": "ready",
        "timestamp": first["timestamp"],
    }
    if admin_url is not None:  # PostgreSQL: a password exists and GitHub never sees it
        password = psycopg.conninfo.conninfo_to_dict(url)["password"]
        assert password and "***" in redact(url)
        assert all(password not in json.dumps(q["json"]) for q in gh.requests)

    # Redelivered: done once.
    again = hook.github("pull_request", opened, delivery="d-open")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"

    # synchronize: a new migration pushed; migrated at the new sha, same URL.
    sha2 = commit_on_branch(hook.upstream, "feature/pay", REFUNDS, new=False)
    sync = pull_request_event("synchronize", "feature/pay", sha2)
    job = hook.done(hook.github("pull_request", sync))
    assert job["http_status"] == 200 and job["result"]["applied"] == ["004_refunds.sql"]
    assert job["result"]["url"] == url
    assert rows(url, "SELECT payment_id FROM refunds") == [(1,)]
    assert rows(url, "SELECT amount FROM payments") == [(500,)]  # data kept
    pub = hook.wait(job["result"]["publish_job"])
    assert pub["result"]["comment"] == {
        "ok": True,
        "comment": comment["id"],
        "updated": True,
    }
    assert len(gh.deployments) == 2 and len(gh.comments) == 1  # edited, not doubled
    assert sha2[:12] in comment["body"]
    assert [d["ref"] for d in gh.deployments.values()] == [sha1, sha2]
    assert [c["sha"] for c in verified_callbacks(cb)] == [sha1, sha2]

    # closed (merged): handed to GC, which deletes the database.
    closed = pull_request_event("closed", "feature/pay", sha2, merged=True)
    job = hook.done(hook.github("pull_request", closed))
    assert job["status"] == "succeeded"
    hook.wait(job["result"]["publish_job"])
    assert verified_callbacks(cb)[-1]["status"] == "closed"
    newest = list(gh.deployments)[-1]
    assert gh.deployment_statuses[newest][-1]["state"] == "inactive"
    assert exists(url, admin_url)  # closing deletes nothing by itself
    gc = hook.client.post("/v1/projects/shop/gc", headers=auth(hook.tokens["admin"]))
    assert gc.status_code == 200, gc.text
    (cand,) = gc.json()["candidates"]
    assert cand["branch"] == "feature/pay" and cand["policy"] == "merged"
    assert cand["deleted"] is True and "acme/shop#7" in cand["evidence"]
    assert hook.branches() == {}
    assert not exists(url, admin_url)


def test_pull_request_lifecycle_libsql(libsql_world: World) -> None:
    lifecycle(libsql_world)


@pytest.mark.postgres
def test_pull_request_lifecycle_postgres(
    pg_world: World, pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lifecycle(pg_world, pg_cluster.admin_url)
    passwords = [
        psycopg.conninfo.conninfo_to_dict(json.loads(r["body"])["url"])["password"]
        for r in pg_world.cb.requests
        if json.loads(r["body"])["url"]
    ]
    assert passwords and all(p and p not in caplog.text for p in passwords)


@pytest.mark.docker
def test_pull_request_lifecycle_docker(docker_world: World) -> None:
    # The same flow, each branch its own PostgreSQL container (same URL shape).
    lifecycle(docker_world, DOCKER)


def test_publishing_failure_never_fails_provisioning(libsql_world: World) -> None:
    hook, gh, cb = libsql_world.hook, libsql_world.gh, libsql_world.cb
    gh.fail_next = [500, 500]  # GitHub is down for the deployment and the comment
    cb.fail_next = [502, 502, 502, 502, 502]  # the callback never gets through
    sha = commit_on_branch(hook.upstream, "flaky", PAY, new=True)
    job = hook.done(
        hook.github("pull_request", pull_request_event("opened", "flaky", sha))
    )
    assert job["status"] == "succeeded" and job["http_status"] == 201
    pub = hook.wait(job["result"]["publish_job"])
    assert pub["status"] == "succeeded"
    assert pub["result"]["deployment"]["ok"] is False
    assert pub["result"]["callback"] == {
        "ok": False,
        "attempts": 5,
        "error": "HTTP 502",
    }
    assert rows(job["result"]["url"], "SELECT amount FROM payments") == [(500,)]


def test_failed_migration_is_published_as_failure(libsql_world: World) -> None:
    hook, gh, cb = libsql_world.hook, libsql_world.gh, libsql_world.cb
    bad = {"migrations/003_bad.sql": "CREATE TABLE broken (;\n"}
    sha = commit_on_branch(hook.upstream, "broken", bad, new=True)
    job = hook.done(
        hook.github("pull_request", pull_request_event("opened", "broken", sha))
    )
    assert job["status"] == "failed"
    # Its publishing job runs after it and before any later job for that branch.
    closed = pull_request_event("closed", "broken", sha)
    hook.done(hook.github("pull_request", closed))
    (dep,) = gh.deployments.values()
    # The failure first; the close then marks the environment inactive (its own
    # publishing job, which may or may not have run yet).
    st, *later = gh.deployment_statuses[dep["id"]]
    assert [s["state"] for s in later] in ([], ["inactive"])
    assert st["state"] == "failure" and st["environment_url"] == ""
    assert "broken" in st["description"] and "failed" in st["description"]
    assert [c["status"] for c in verified_callbacks(cb)][:1] == ["failed"]
    assert verified_callbacks(cb)[0]["url"] is None


def test_gitlab_merge_request_publishes_the_callback(libsql_world: World) -> None:
    hook, gh, cb = libsql_world.hook, libsql_world.gh, libsql_world.cb
    sha = commit_on_branch(hook.upstream, "feature/gl", PAY, new=True)
    job = hook.done(hook.gitlab(merge_request_event("open", "feature/gl", sha)))
    assert job["http_status"] == 201
    pub = hook.wait(job["result"]["publish_job"])
    assert pub["result"] == {
        "callback": {"ok": True, "attempts": 1, "http_status": 204}
    }  # GitHub targets do not apply to GitLab
    assert gh.requests == []
    (data,) = verified_callbacks(cb)
    assert data["url"] == job["result"]["url"] and data["sha"] == sha
    hook.done(hook.gitlab(merge_request_event("merge", "feature/gl", sha)))
    gc = hook.client.post("/v1/projects/shop/gc", headers=auth(hook.tokens["admin"]))
    assert [c["branch"] for c in gc.json()["candidates"] if c["deleted"]] == [
        "feature/gl"
    ]
    assert hook.branches() == {}
