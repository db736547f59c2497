"""GitHub webhooks: signed pull_request events drive a branch database through its life.

The "GitHub repository" is a real git repository in a temp dir (its path is the
remote URL the daemon fetches into its bare mirror); payloads follow GitHub's
documented ``pull_request`` event shape and are signed like GitHub signs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, setup_project, wait_job
from hooksupport import SECRET, commit_on_branch, sign
from support import git, tables

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api.app import create_app
from branchdb.daemon.migrations import files as migration_files
from branchdb.daemon.store.sqlite_store import SqliteStore
from branchdb.daemon.vcs.tree import GitTreeFiles, Mirror

HOOK = "/v1/webhooks/github?project=shop"


def pr_event(
    action: str, ref: str, sha: str, number: int = 7, **extra: Any
) -> dict[str, Any]:
    repo = {
        "id": 1,
        "name": "shop",
        "full_name": "acme/shop",
        "clone_url": "https://github.com/acme/shop.git",
    }
    pr = {
        "url": f"https://api.github.com/repos/acme/shop/pulls/{number}",
        "id": 1000 + number,
        "number": number,
        "state": "closed" if action == "closed" else "open",
        "title": "Add payments",
        "merged": extra.pop("merged", False),
        "head": {
            "label": f"acme:{ref}",
            "ref": ref,
            "sha": sha,
            "repo": extra.pop("head_repo", repo),
        },
        "base": {"label": "acme:main", "ref": "main", "sha": "0" * 40, "repo": repo},
    }
    return {
        "action": action,
        "number": number,
        "pull_request": pr,
        "repository": repo,
        "sender": {"login": "dev"},
        **extra,
    }


class Hook:
    def __init__(
        self, upstream: Path, data: Path, client: httpx.Client, toks: dict[str, str]
    ) -> None:
        self.upstream = upstream
        self.data = data
        self.client = client
        self.tokens = toks
        self.n = 0

    def send(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        delivery: str | None = None,
        signature: str | None = "sign",
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        self.n += 1
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or f"delivery-{self.n}",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/abc",
        }
        if signature == "sign":
            headers["X-Hub-Signature-256"] = sign(body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return self.client.post(HOOK, content=body, headers=headers)

    def done(self, r: httpx.Response) -> dict[str, Any]:
        assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        return wait_job(self.client, r.json()["job"], self.tokens["read"])

    def branches(self) -> dict[str, Any]:
        r = self.client.get(
            "/v1/projects/shop/branches", headers=auth(self.tokens["read"])
        )
        return {b["branch"]: b for b in r.json()}


@pytest.fixture
def hook(repo: Path, tmp_path: Path) -> Iterator[Hook]:
    upstream = setup_project(repo)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{tmp_path / "daemon"}"\n\n'
        f'[[projects]]\npath = "{upstream}"\nrepository = "{upstream}"\n'
        f"webhook_secret = {json.dumps(SECRET)}\n"
    )
    settings = daemon_config.load(cfg)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield Hook(upstream, tmp_path / "daemon", client, toks)


def test_pull_request_lifecycle(hook: Hook) -> None:
    sha1 = commit_on_branch(
        hook.upstream,
        "feature/pay",
        {"migrations/003_payments.sql": "CREATE TABLE payments (id INTEGER);\n"},
        new=True,
    )
    assert not (hook.upstream / "migrations" / "003_payments.sql").exists()

    job = hook.done(hook.send("pull_request", pr_event("opened", "feature/pay", sha1)))
    assert job["status"] == "succeeded" and job["http_status"] == 201, job
    url = job["result"]["url"]
    path = Path(url.removeprefix("file:"))
    assert tables(path) >= {"users", "orders", "payments"}
    assert job["result"]["applied"] == [
        "001_users.sql",
        "002_orders.sql",
        "003_payments.sql",
    ]
    assert (
        hook.data / "mirrors" / "shop.git" / "HEAD"
    ).exists()  # bare mirror, no checkout
    assert not (hook.data / "mirrors" / "shop.git" / "migrations").exists()

    sha2 = commit_on_branch(
        hook.upstream,
        "feature/pay",
        {"migrations/004_refunds.sql": "CREATE TABLE refunds (id INTEGER);\n"},
        new=False,
    )
    job = hook.done(
        hook.send("pull_request", pr_event("synchronize", "feature/pay", sha2))
    )
    assert job["http_status"] == 200 and job["result"]["applied"] == ["004_refunds.sql"]
    assert job["result"]["url"] == url and "refunds" in tables(path)

    job = hook.done(
        hook.send("pull_request", pr_event("closed", "feature/pay", sha2, merged=True))
    )
    assert job["status"] == "succeeded"
    state = SqliteStore(hook.upstream / ".branchdb" / "state.db")
    closed = state.closed_branches("shop")["feature/pay"]
    assert closed["merged"] is True and closed["reference"] == "acme/shop#7"
    assert path.exists()  # left to garbage collection
    # Reopened: the closed mark goes away again.
    hook.done(hook.send("pull_request", pr_event("reopened", "feature/pay", sha2)))
    assert state.closed_branches("shop") == {}


def test_redelivery_does_nothing_twice(hook: Hook) -> None:
    sha = commit_on_branch(
        hook.upstream,
        "dup",
        {"migrations/003_x.sql": "CREATE TABLE x (id INTEGER);\n"},
        new=True,
    )
    first = hook.send("pull_request", pr_event("opened", "dup", sha), delivery="d-1")
    hook.done(first)
    url = hook.branches()["dup"]["url"]
    Path(url.removeprefix("file:")).unlink()  # would be recreated if acted on again
    again = hook.send("pull_request", pr_event("opened", "dup", sha), delivery="d-1")
    assert again.status_code == 200 and again.json() == {
        "status": "duplicate",
        "delivery": "d-1",
    }
    assert not Path(url.removeprefix("file:")).exists()
    store = SqliteStore(hook.data / "state.db")
    assert (store.delivery("github", "d-1", project="shop") or {})["status"] == "done"


def test_failed_delivery_can_be_redelivered(hook: Hook) -> None:
    job = hook.done(
        hook.send("pull_request", pr_event("opened", "ghost", "f" * 40), delivery="d-2")
    )
    assert job["status"] == "failed" and "not in" in job["error"]["message"]
    assert (
        SqliteStore(hook.data / "state.db").delivery("github", "d-2", project="shop")
        or {}
    )["status"] == "failed"
    sha = commit_on_branch(hook.upstream, "ghost", {"x.txt": "x\n"}, new=True)
    payload = pr_event("opened", "ghost", sha)
    job = hook.done(hook.send("pull_request", payload, delivery="d-2"))
    assert job["status"] == "succeeded"


@pytest.mark.parametrize(
    "signature", [None, "sha256=" + "0" * 64, "sha1=abc", "sign-with-another-secret"]
)
def test_bad_signature_is_401_and_does_nothing(
    hook: Hook, signature: str | None
) -> None:
    sha = commit_on_branch(
        hook.upstream,
        "evil",
        {"migrations/003_e.sql": "CREATE TABLE e (id INTEGER);\n"},
        new=True,
    )
    payload = pr_event("opened", "evil", sha)
    if signature == "sign-with-another-secret":
        signature = sign(json.dumps(payload).encode(), "other")
    r = hook.send("pull_request", payload, delivery="d-evil", signature=signature)
    assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
    assert hook.branches() == {}
    assert (
        SqliteStore(hook.data / "state.db").delivery("github", "d-evil", project="shop")
        is None
    )
    assert not (hook.data / "mirrors").exists()


def test_ping_unknown_events_forks_and_bad_json(hook: Hook) -> None:
    assert hook.send("ping", {"zen": "Keep it logically awesome."}).json() == {
        "status": "pong"
    }
    issues = hook.send("issues", {"action": "opened"})
    assert issues.status_code == 202 and issues.json()["status"] == "ignored"
    labeled = hook.send("pull_request", pr_event("labeled", "x", "a" * 40))
    assert labeled.status_code == 202 and labeled.json()["status"] == "ignored"
    fork = {
        "id": 2,
        "full_name": "mallory/shop",
        "clone_url": "https://github.com/mallory/shop.git",
    }
    forked = hook.send(
        "pull_request", pr_event("opened", "main", "a" * 40, head_repo=fork)
    )
    assert forked.status_code == 202 and "fork" in forked.json()["reason"]
    body = b"{not json"
    bad = hook.client.post(
        HOOK,
        content=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": "d-bad",
            "X-Hub-Signature-256": sign(body),
        },
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "BadRequest"
    assert hook.branches() == {}


def test_git_tree_files_match_the_directory(repo: Path, tmp_path: Path) -> None:
    setup_project(repo)
    (repo / "migrations" / "sub").mkdir()
    (repo / "migrations" / "sub" / "003.sql").write_text("SELECT 1;\n")
    (repo / "migrations" / ".hidden").write_text("no\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    mirror = Mirror(tmp_path / "m.git", str(repo))
    sha = git(repo, "rev-parse", "HEAD")
    mirror.ensure(sha)
    files = GitTreeFiles(mirror.path, sha, "migrations")
    assert files.paths() == migration_files.list_files(str(repo / "migrations"))
    assert files.read("sub/003.sql") == b"SELECT 1;\n"
    disk = migration_files.fingerprint(str(repo / "migrations"), "sql", None)
    assert (
        migration_files.fingerprint_files(files.paths(), files.read, "sql", None)
        == disk
    )
