"""The merge rule: "merged" is decided from history, never from commit timestamps.

When a database is made, the default branch's head is recorded with it. A branch
whose tip is reachable from that head has no work of its own and is never "merged";
any other tip that the default branch contains (merge commit, fast-forward) or whose
changes it contains (squash, rebase) is. Real git repositories; commit times are set
explicitly so that "created before", "after" and "in the same second" are exact.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import git
from test_gc import Clock, engine, reasons

from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.models import BranchRecord

ORDERS = ("created-then-committed", "committed-then-created", "same-second")
STYLES = ("merge-commit", "fast-forward", "squash")


def commit_at(repo: Path, when: int, name: str, text: str = "x") -> str:
    """Commit *name* with author and committer time *when*; the new sha."""
    (repo / name).write_text(text)
    git(repo, "add", name)
    stamp = f"@{when} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    subprocess.run(
        ["git", "commit", "-q", "-m", f"add {name}"],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    return git(repo, "rev-parse", "HEAD")


def merge(repo: Path, branch: str, style: str, when: int) -> None:
    """Merge *branch* into main the way *style* says (main is checked out)."""
    stamp = f"@{when} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}

    def g(*args: str) -> None:
        subprocess.run(
            ["git", *args], cwd=repo, env=env, check=True, capture_output=True
        )

    if style == "merge-commit":
        g("merge", "-q", "--no-ff", "-m", f"merge {branch}", branch)
    elif style == "fast-forward":
        g("merge", "-q", "--ff-only", branch)
    else:
        g("merge", "-q", "--squash", branch)
        g("commit", "-q", "-m", f"squashed {branch}")


def make_branch_with_work(
    repo: Path, eng: Engine, clock: Clock, branch: str, order: str, t0: int
) -> None:
    """Branch off main, make the database and commit work, in *order*."""
    git(repo, "checkout", "-q", "-b", branch, "main")
    if order == "created-then-committed":
        clock.now = t0
        eng.up(branch)
        commit_at(repo, t0 + 5, f"{branch}.txt", branch)
    elif order == "committed-then-created":
        commit_at(repo, t0, f"{branch}.txt", branch)
        clock.now = t0 + 5
        eng.up(branch)
    else:  # the hook makes the database, the commit follows within the second
        clock.now = t0 + 0.4
        eng.up(branch)
        commit_at(repo, t0, f"{branch}.txt", branch)
    git(repo, "checkout", "-q", "main")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("order", ORDERS)
def test_merged_whatever_the_order(repo: Path, order: str, style: str) -> None:
    clock = Clock()
    t0 = int(clock.now)
    eng = engine(repo, clock)
    make_branch_with_work(repo, eng, clock, "feat", order, t0)
    assert "feat" not in reasons(eng)  # open work: kept
    merge(repo, "feat", style, t0 + 10)
    clock.now = t0 + 20
    found = reasons(eng)
    assert found.get("feat") == "merged", found


@pytest.mark.parametrize("order", ORDERS)
def test_a_branch_without_commits_of_its_own_is_never_merged(
    repo: Path, order: str
) -> None:
    clock = Clock()
    t0 = int(clock.now)
    eng = engine(repo, clock)
    # main's head is committed at t0; the branch is made from it with no work.
    commit_at(repo, t0, "main.txt")
    git(repo, "branch", "fresh", "main")
    clock.now = {
        "created-then-committed": t0 - 30,  # a clock behind the committer's
        "committed-then-created": t0 + 30,
        "same-second": t0 + 0.5,
    }[order]
    eng.up("fresh")
    # main moves on: other work is merged, by every style.
    for i, style in enumerate(STYLES):
        git(repo, "checkout", "-q", "-b", f"other{i}", "main")
        commit_at(repo, t0 + 40 + i, f"other{i}.txt")
        git(repo, "checkout", "-q", "main")
        merge(repo, f"other{i}", style, t0 + 50 + i)
    clock.now = t0 + 100
    assert "fresh" not in reasons(eng)
    # A branch made later from an *older* main commit: no work of its own either.
    git(repo, "branch", "behind", "main~2")
    eng.up("behind")
    assert "behind" not in reasons(eng)


def test_the_recorded_head_is_the_default_branch_at_creation(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    main = git(repo, "rev-parse", "main")
    git(repo, "branch", "feat")
    rec = eng.up("feat").record
    assert rec.default_heads == [main]
    assert eng.get("feat").default_heads == [main]  # stored with the record
    # A remote-tracking default branch that differs is recorded too.
    commit_at(repo, int(clock.now) + 1, "later.txt")
    git(repo, "update-ref", "refs/remotes/origin/main", "main")
    git(repo, "reset", "-q", "--hard", main)
    git(repo, "branch", "feat2")
    ahead = git(repo, "rev-parse", "origin/main")
    assert sorted(eng.up("feat2").record.default_heads) == sorted([main, ahead])


def test_records_without_a_recorded_head_fall_back_to_commit_times(
    repo: Path,
) -> None:
    """Records made before the head was recorded keep the old rule: a tip that
    the default branch contains counts as merged only if it was committed after
    the database was made (a squash/rebase merge is recognised whatever the time)."""
    clock = Clock()
    t0 = int(clock.now)
    eng = engine(repo, clock)
    for branch, order in (("after", ORDERS[0]), ("before", ORDERS[1])):
        make_branch_with_work(repo, eng, clock, branch, order, t0)
        legacy = eng.get(branch)
        legacy.default_heads = []
        eng.store.put_branch(legacy)
    for i, branch in enumerate(("after", "before")):
        merge(repo, branch, "merge-commit", t0 + 10 + i)
    clock.now = t0 + 20
    assert reasons(eng) == {"after": "merged"}


def test_a_recorded_head_the_repository_lacks_falls_back_too(repo: Path) -> None:
    clock = Clock()
    t0 = int(clock.now)
    eng = engine(repo, clock)
    make_branch_with_work(repo, eng, clock, "feat", ORDERS[0], t0)
    rec: BranchRecord = eng.get("feat")
    rec.default_heads = ["0123456789" * 4]  # e.g. made from another clone's main
    eng.store.put_branch(rec)
    merge(repo, "feat", "merge-commit", t0 + 10)
    clock.now = t0 + 20
    assert reasons(eng) == {"feat": "merged"}
