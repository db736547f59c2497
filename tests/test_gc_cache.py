"""The squash/rebase check's answers persist, keyed by (branch tip, default tip)."""

from __future__ import annotations

import time
from pathlib import Path

from support import git
from test_gc import Clock, commit, engine

from branchdb.daemon.gc.collector import collect


def test_squash_answers_are_cached_until_main_moves(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    for b in ("squash", "open"):
        git(repo, "branch", b)
        eng.up(b)
    time.sleep(1.1)  # work committed after the databases were made
    for b in ("squash", "open"):
        git(repo, "checkout", "-q", b)
        commit(repo, f"{b}.txt", b)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--squash", "squash")
    git(repo, "commit", "-q", "-m", "squashed")
    tips = {b: git(repo, "rev-parse", b) for b in ("squash", "open")}
    main = git(repo, "rev-parse", "main")
    first = {c.branch: c.evidence for c in collect(eng, dry_run=True).candidates}
    assert "squash or rebase merge" in first["squash"] and "open" not in first
    cached = eng.store.merge_checks(eng.project, main)
    assert cached == {tips["squash"]: True, tips["open"]: False}
    # A second plan answers the same from the cache.
    second = {c.branch: c.evidence for c in collect(eng, dry_run=True).candidates}
    assert second == first
    # Proof that the plan reads the cache rather than asking git again: a
    # (deliberately wrong) cached answer is believed.
    eng.store.add_merge_checks(eng.project, main, {tips["squash"]: False})
    assert "squash" not in {c.branch for c in collect(eng, dry_run=True).candidates}
    eng.store.add_merge_checks(eng.project, main, {tips["squash"]: True})
    # main moves on: the old answers go, new ones are computed for the new tip.
    commit(repo, "later.txt")
    collect(eng, dry_run=True)
    assert eng.store.merge_checks(eng.project, main) == {}
    new = eng.store.merge_checks(eng.project, git(repo, "rev-parse", "main"))
    assert new == {tips["squash"]: True, tips["open"]: False}
