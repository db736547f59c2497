"""GitHub push/delete events, GitLab merge request hooks, and pull requests from forks.

The "fork" is a real second git repository; the base repository exposes its commit as
``refs/pull/N/head`` (GitHub) or ``refs/merge-requests/N/head`` (GitLab), the way the
hosting services do, and that is the only way the daemon's mirror can get it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apisupport import setup_project
from hooksupport import (
    Hook,
    commit_on_branch,
    delete_event,
    gh_repo,
    merge_request_event,
    pull_request_event,
    push_event,
    running_daemon,
)
from support import git, tables

from branchdb.daemon.store.sqlite_store import SqliteStore

PAY = {"migrations/003_payments.sql": "CREATE TABLE payments (id INTEGER);\n"}
REFUNDS = {"migrations/004_refunds.sql": "CREATE TABLE refunds (id INTEGER);\n"}


@pytest.fixture
def hook(repo: Path, tmp_path: Path) -> Iterator[Hook]:
    with running_daemon(setup_project(repo), tmp_path) as h:
        yield h


@pytest.fixture
def fork_hook(repo: Path, tmp_path: Path) -> Iterator[Hook]:
    with running_daemon(setup_project(repo), tmp_path, "allow_forks = true\n") as h:
        yield h


def closed(hook: Hook) -> dict[str, dict[str, object]]:
    return SqliteStore(hook.upstream / ".branchdb" / "state.db").closed_branches("shop")


def path_of(url: str) -> Path:
    return Path(url.removeprefix("file:"))


def test_push_migrates_only_existing_databases(hook: Hook) -> None:
    sha1 = commit_on_branch(hook.upstream, "feature/pay", PAY, new=True)
    # A push to a branch without a database creates nothing.
    job = hook.done(hook.github("push", push_event("feature/pay", "0" * 40, sha1)))
    assert job["status"] == "succeeded" and job["result"]["status"] == "ignored"
    assert hook.branches() == {}
    hook.done(
        hook.github("pull_request", pull_request_event("opened", "feature/pay", sha1))
    )
    url = hook.branches()["feature/pay"]["url"]
    sha2 = commit_on_branch(hook.upstream, "feature/pay", REFUNDS, new=False)
    job = hook.done(hook.github("push", push_event("feature/pay", sha1, sha2)))
    assert job["result"]["applied"] == ["004_refunds.sql"]
    assert "refunds" in tables(path_of(url))
    # Tags are not branches; the branch deleted on the remote goes to GC.
    tag = hook.github("push", push_event("refs/tags/v1", "0" * 40, sha2))
    assert tag.status_code == 202 and tag.json()["status"] == "ignored"
    gone = push_event("feature/pay", sha2, "", deleted=True)
    hook.done(hook.github("push", gone))
    assert closed(hook)["feature/pay"]["merged"] is False
    assert path_of(url).exists()  # left to GC and its grace period


def test_delete_event_hands_the_branch_to_gc(hook: Hook) -> None:
    sha = commit_on_branch(hook.upstream, "old", PAY, new=True)
    hook.done(hook.github("pull_request", pull_request_event("opened", "old", sha)))
    tag = hook.github("delete", delete_event("v1.0", "tag"))
    assert tag.status_code == 202 and tag.json()["status"] == "ignored"
    assert closed(hook) == {}
    job = hook.done(hook.github("delete", delete_event("old")))
    assert job["status"] == "succeeded"
    assert closed(hook)["old"]["reference"] == "branch deleted in acme/shop"
    plan = hook.client.get(
        "/v1/projects/shop/gc",
        headers={"Authorization": f"Bearer {hook.tokens['read']}"},
    ).json()
    assert [c["branch"] for c in plan["candidates"]] == ["old"]
    (only,) = plan["candidates"]
    assert only["policy"] == "deleted"
    assert only["evidence"] == "branch deleted in acme/shop (webhook)"


def make_fork(upstream: Path, tmp_path: Path) -> tuple[Path, str]:
    """A clone of *upstream* with one more migration committed on its own main."""
    fork = tmp_path / "fork"
    git(tmp_path, "clone", "-q", str(upstream), str(fork))
    git(fork, "config", "user.email", "mallory@example.com")
    git(fork, "config", "user.name", "Mallory")
    (fork / "migrations" / "003_fork.sql").write_text(
        "CREATE TABLE from_fork (x INT);\n"
    )
    git(fork, "add", "-A")
    git(fork, "commit", "-q", "-m", "fork work")
    return fork, git(fork, "rev-parse", "HEAD")


MALLORY = gh_repo("mallory/shop", 2)


def test_forks_refused_by_default(hook: Hook, tmp_path: Path) -> None:
    fork, sha = make_fork(hook.upstream, tmp_path)
    git(hook.upstream, "fetch", "-q", str(fork), "main:refs/pull/9/head")
    r = hook.github(
        "pull_request",
        pull_request_event("opened", "main", sha, number=9, head_repo=MALLORY),
    )
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    assert r.json()["reason"].startswith("ignored: forks not allowed")
    r = hook.gitlab(merge_request_event("open", "main", sha, iid=4, source_id=99))
    assert r.status_code == 202
    assert r.json()["reason"].startswith("ignored: forks not allowed")
    assert hook.branches() == {}
    assert not (hook.data / "mirrors").exists()


def test_fork_pull_request_through_refs_pull(fork_hook: Hook, tmp_path: Path) -> None:
    hook = fork_hook
    fork, sha = make_fork(hook.upstream, tmp_path)
    event = pull_request_event("opened", "main", sha, number=9, head_repo=MALLORY)
    # Before the base repository exposes refs/pull/9/head the commit is unreachable.
    job = hook.done(hook.github("pull_request", event))
    assert job["status"] == "failed" and "not in" in job["error"]["message"]
    git(hook.upstream, "fetch", "-q", str(fork), "main:refs/pull/9/head")
    job = hook.done(hook.github("pull_request", event))
    assert job["status"] == "succeeded", job
    assert job["result"]["branch"] == "pull/9"  # never the fork's "main"
    assert "from_fork" in tables(path_of(job["result"]["url"]))
    assert "main" not in hook.branches()
    hook.done(
        hook.github(
            "pull_request",
            pull_request_event("closed", "main", sha, number=9, head_repo=MALLORY),
        )
    )
    assert closed(hook)["pull/9"]["reference"] == "acme/shop#9"


def test_gitlab_fork_merge_request(fork_hook: Hook, tmp_path: Path) -> None:
    hook = fork_hook
    fork, sha = make_fork(hook.upstream, tmp_path)
    git(hook.upstream, "fetch", "-q", str(fork), "main:refs/merge-requests/4/head")
    job = hook.done(
        hook.gitlab(merge_request_event("open", "main", sha, iid=4, source_id=99))
    )
    assert job["status"] == "succeeded" and job["result"]["branch"] == "mr/4"
    assert "from_fork" in tables(path_of(job["result"]["url"]))


def test_gitlab_merge_request_lifecycle(hook: Hook) -> None:
    sha1 = commit_on_branch(hook.upstream, "feature/gl", PAY, new=True)
    job = hook.done(
        hook.gitlab(merge_request_event("open", "feature/gl", sha1), key="k1")
    )
    assert job["http_status"] == 201 and "payments" in tables(
        path_of(job["result"]["url"])
    )
    url = job["result"]["url"]
    # GitLab retries with the same Idempotency-Key: done once.
    again = hook.gitlab(merge_request_event("open", "feature/gl", sha1), key="k1")
    assert again.status_code == 200 and again.json() == {
        "status": "duplicate",
        "delivery": "k1",
    }
    store = SqliteStore(hook.data / "state.db")
    assert (store.delivery("gitlab", "k1", project="shop") or {})["status"] == "done"
    sha2 = commit_on_branch(hook.upstream, "feature/gl", REFUNDS, new=False)
    job = hook.done(hook.gitlab(merge_request_event("update", "feature/gl", sha2)))
    assert job["status"] == "succeeded", job
    assert "refunds" in tables(path_of(url))
    hook.done(hook.gitlab(merge_request_event("merge", "feature/gl", sha2)))
    mark = closed(hook)["feature/gl"]
    assert mark["merged"] is True and mark["reference"] == "acme/shop!3"


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_gitlab_bad_token_is_401_and_does_nothing(
    hook: Hook, token: str | None
) -> None:
    sha = commit_on_branch(hook.upstream, "evil", PAY, new=True)
    r = hook.gitlab(merge_request_event("open", "evil", sha), token=token, key="e1")
    assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
    assert hook.branches() == {}
    assert (
        SqliteStore(hook.data / "state.db").delivery("gitlab", "e1", project="shop")
        is None
    )


def test_gitlab_other_events_and_actions_are_ignored(hook: Hook) -> None:
    r = hook.gitlab({"object_kind": "push"}, event="Push Hook")
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    r = hook.gitlab(merge_request_event("approved", "x", "a" * 40))
    assert r.status_code == 202 and "approved" in r.json()["reason"]
    r = hook.gitlab({"object_kind": "merge_request"})
    assert r.status_code == 400
    assert hook.branches() == {}
