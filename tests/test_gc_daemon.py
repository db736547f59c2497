"""The daemon's GC judges branches by the repository the webhooks read.

A daemon with ``repository`` set serves a project folder whose own checkout nothing
updates; pull requests arrive by webhook for branches only the repository has. GC
fetches the daemon's mirror before planning and reads "merged" and "deleted" there;
a branch with an open pull request (a fork's ``pull/N``) is never "deleted". Real git
repositories, a real daemon (uvicorn), GC runs across a short grace period.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from apisupport import auth, setup_project
from hooksupport import (
    Hook,
    commit_on_branch,
    gh_repo,
    pull_request_event,
    running_daemon,
)
from support import git

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.gc.collector import collect
from branchdb.daemon.vcs.tree import Mirror

MIGRATION = "CREATE TABLE payments (id INTEGER PRIMARY KEY);\n"


def gc_run(hook: Hook) -> dict[str, Any]:
    r = hook.client.post("/v1/projects/shop/gc", headers=auth(hook.tokens["admin"]))
    assert r.status_code == 200, r.text
    return {c["branch"]: c for c in r.json()["candidates"]}


@pytest.fixture
def upstream(repo: Path) -> Path:
    setup_project(repo)
    with (repo / "branchdb.toml").open("a") as f:
        f.write('\n[branches]\ngrace = "1s"\n')
    git(repo, "commit", "-qam", "short grace")
    return repo


def test_webhook_databases_survive_gc_with_repository_set(
    upstream: Path, tmp_path: Path
) -> None:
    # The project folder: a clone made before any pull request existed. Nothing
    # fetches into it, so it never sees the pull requests' branches.
    folder = tmp_path / "folder"
    git(tmp_path, "clone", "-q", str(upstream), str(folder))
    pay = commit_on_branch(
        upstream, "feature/pay", {"migrations/003_pay.sql": MIGRATION}, new=True
    )
    # A fork's pull request: its commit is only under refs/pull/8/head.
    fork = commit_on_branch(upstream, "fork-tmp", {"fork.txt": "x"}, new=True)
    git(upstream, "update-ref", "refs/pull/8/head", fork)
    git(upstream, "branch", "-q", "-D", "fork-tmp")
    with running_daemon(
        upstream,
        tmp_path,
        "allow_forks = true\n",
        project=folder,
        server='gc_interval = "off"\n',
    ) as hook:
        opened = pull_request_event("opened", "feature/pay", pay)
        assert hook.done(hook.github("pull_request", opened))["status"] == "succeeded"
        forked = pull_request_event(
            "opened", "any", fork, number=8, head_repo=gh_repo("mallory/shop", 2)
        )
        assert hook.done(hook.github("pull_request", forked))["status"] == "succeeded"
        # A branch with no pull request, made by a CI PUT; merged later upstream.
        commit_on_branch(upstream, "feature/ci", {"ci.txt": "ci"}, new=True)
        r = hook.client.put(
            "/v1/projects/shop/branches/feature/ci", headers=auth(hook.tokens["ci"])
        )
        assert r.status_code == 201, r.text
        assert set(hook.branches()) == {"feature/pay", "pull/8", "feature/ci"}
        git(upstream, "merge", "-q", "--no-ff", "-m", "merge ci", "feature/ci")

        # GC across the grace period, three runs: the pull requests' databases stay.
        runs = [gc_run(hook)]
        for _ in range(2):
            time.sleep(1.2)
            runs.append(gc_run(hook))
        for run in runs:
            assert "feature/pay" not in run and "pull/8" not in run, run
        # What the mirror says is judged: feature/ci merged (not "deleted"), and
        # dropped once the grace period has passed.
        assert runs[0]["feature/ci"]["policy"] == "merged"
        assert "ancestor of main" in runs[0]["feature/ci"]["evidence"]
        assert runs[1]["feature/ci"]["deleted"]
        assert set(hook.branches()) == {"feature/pay", "pull/8"}

        # The fork's pull request closing hands its database to GC.
        closed = pull_request_event(
            "closed", "any", fork, number=8, head_repo=gh_repo("mallory/shop", 2)
        )
        hook.done(hook.github("pull_request", closed))
        plan = gc_run(hook)
        assert plan["pull/8"]["policy"] == "closed" and "feature/pay" not in plan


def test_deleted_upstream_is_deleted_unless_a_pull_request_is_open(
    upstream: Path, tmp_path: Path
) -> None:
    """Both branches are deleted upstream; the one whose pull request is still open
    keeps its database, the other is judged "deleted" from the fetched mirror."""
    pay = commit_on_branch(
        upstream, "feature/pay", {"migrations/003_pay.sql": MIGRATION}, new=True
    )
    commit_on_branch(upstream, "feature/gone", {"gone.txt": "x"}, new=True)
    with running_daemon(upstream, tmp_path, server='gc_interval = "off"\n') as hook:
        event = pull_request_event("opened", "feature/pay", pay)
        assert hook.done(hook.github("pull_request", event))["status"] == "succeeded"
        r = hook.client.put(
            "/v1/projects/shop/branches/feature/gone", headers=auth(hook.tokens["ci"])
        )
        assert r.status_code == 201, r.text
        assert gc_run(hook) == {}
        git(upstream, "branch", "-q", "-D", "feature/pay")
        git(upstream, "branch", "-q", "-D", "feature/gone")
        runs = [gc_run(hook)]
        time.sleep(1.2)
        runs.append(gc_run(hook))
        assert [{b: c["policy"] for b, c in r.items()} for r in runs] == [
            {"feature/gone": "deleted"}
        ] * 2
        assert runs[1]["feature/gone"]["deleted"]
        assert set(hook.branches()) == {"feature/pay"}


def test_a_failed_fetch_judges_nothing_from_git(
    upstream: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The mirror cannot be fetched (the repository moved): the run logs it and
    judges nothing "deleted" or "merged" from git; TTL still applies."""
    git(upstream, "branch", "feature/x")
    config = config_mod.load(cwd=upstream)
    mirror = Mirror(tmp_path / "mirror.git", str(upstream))
    eng = Engine(config, mirror=mirror)
    eng.up("feature/x")
    git(upstream, "branch", "-q", "-D", "feature/x")
    assert {c.branch: c.reason for c in collect(eng, dry_run=True).candidates} == {
        "feature/x": "deleted"
    }
    shutil.move(upstream / ".git", tmp_path / "moved.git")
    with caplog.at_level(logging.WARNING, logger="branchdb.gc"):
        report = collect(eng, dry_run=False)
    assert report.candidates == ()
    assert any("fetching" in r.getMessage() for r in caplog.records)
    # Back: the next run fetches and judges again.
    shutil.move(tmp_path / "moved.git", upstream / ".git")
    assert [c.reason for c in collect(eng, dry_run=False).candidates] == ["deleted"]
