"""Garbage collection and the one branch-name rule: a record whose name git could not
have (made by a branchdb before the rule) is collected like a deleted branch, its
database dropped after the grace period, whether or not git is there to ask."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.gc.collector import collect

HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("with_git", [True, False], ids=["git", "no-git"])
@pytest.mark.parametrize("name", ["a..b", "-rf", "feat/x.lock", "x" * 300])
def test_a_record_with_a_name_git_refuses_is_collected(
    repo: Path, name: str, with_git: bool
) -> None:
    if not with_git:
        shutil.rmtree(repo / ".git")
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\ngrace = "1h"\nprotected = []\n'
    )
    clock = Clock()
    eng = Engine(config_mod.load(cwd=repo), clock=clock)
    made = eng.up("feature/ok").record
    # As an older branchdb (a webhook before the rule) would have recorded it.
    eng.store.delete_branch("shop", "feature/ok")
    made.branch = name
    eng.store.put_branch(made)
    plan = collect(eng, dry_run=True).candidates
    assert [(c.branch, c.reason) for c in plan] == [(name, "deleted")]
    assert "invalid branch name" in plan[0].evidence
    assert collect(eng, dry_run=False).deleted == ()  # marked, grace starts
    clock.now += HOUR + 1
    deleted = collect(eng, dry_run=False).deleted
    assert [c.branch for c in deleted] == [name]
    assert eng.list_branches() == []
    assert not eng.backend.exists(made.database)
