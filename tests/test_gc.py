"""Garbage collection in embedded mode: real git histories, a controllable clock."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from support import BRANCHDB, git, run

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.gc.collector import collect
from branchdb.daemon.vcs.repo import heads_of

HOUR = 3600.0


class Clock:
    """Starts at the real time (commit times are real); tests move it forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def engine(repo: Path, clock: Clock, extra: str = "") -> Engine:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\nttl = "7d"\ngrace = "1h"\n' + extra
    )
    config = config_mod.load(cwd=repo)
    # As the CLI and the daemon wire it: a create records the default branch's head.
    heads = heads_of(repo, config.project.default_branch)
    return Engine(config, clock=clock, heads=heads)


def commit(repo: Path, name: str, text: str = "x") -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"add {name}")


def branch_with_commit(repo: Path, branch: str) -> None:
    git(repo, "checkout", "-q", "-b", branch, "main")
    commit(repo, f"{branch.replace('/', '_')}.txt", branch)
    git(repo, "checkout", "-q", "main")


def reasons(eng: Engine) -> dict[str | None, str]:
    return {c.branch: c.reason for c in collect(eng, dry_run=True).candidates}


def test_merge_styles_are_all_detected(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    eng.up("main")
    # As on a developer's machine: the hook makes each database at `checkout -b`,
    # then the work is committed (commit times have one-second resolution).
    for b in ("merge", "ff", "squash", "rebase", "open", "fresh"):
        git(repo, "branch", b)
        eng.up(b)
    time.sleep(1.1)
    for b in ("merge", "ff", "squash", "rebase", "open"):
        git(repo, "checkout", "-q", b)
        commit(repo, f"{b}.txt", b)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "ff")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", "merge")
    git(repo, "merge", "-q", "--squash", "squash")
    git(repo, "commit", "-q", "-m", "squashed")
    commit(repo, "main-moves.txt")
    git(repo, "cherry-pick", "rebase")  # what a rebase merge does to main
    found = reasons(eng)
    assert found == {
        "merge": "merged",
        "ff": "merged",
        "squash": "merged",
        "rebase": "merged",
    }
    # "open" has unmerged work, "fresh" none at all (its tip is an old main, not a
    # fast-forward), main is protected: all kept.
    assert "open" not in found and "fresh" not in found and "main" not in found


def test_deleted_idle_and_protected(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    branch_with_commit(repo, "gone")
    branch_with_commit(repo, "busy")
    branch_with_commit(repo, "sleepy")
    for b in ("main", "gone", "busy", "sleepy"):
        eng.up(b)
    git(repo, "branch", "-D", "gone")
    clock.now += 8 * 86400  # main and sleepy go idle
    eng.url("busy")  # a use refreshes it
    found = reasons(eng)
    assert found == {"gone": "deleted", "sleepy": "idle"}


def test_grace_period_and_reuse(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    branch_with_commit(repo, "a")
    branch_with_commit(repo, "b")
    paths = {b: Path(eng.up(b).record.url.removeprefix("file:")) for b in ("a", "b")}
    git(repo, "branch", "-D", "a")
    git(repo, "branch", "-D", "b")
    assert collect(eng, dry_run=True).candidates[0].marked_at is None
    first = collect(eng, dry_run=False)  # marks, deletes nothing
    assert first.deleted == () and all(p.exists() for p in paths.values())
    clock.now += 0.5 * HOUR
    eng.url("b")  # b is used again inside the grace window
    clock.now += 0.6 * HOUR
    second = collect(eng, dry_run=False)
    assert [c.branch for c in second.deleted] == ["a"]
    assert not paths["a"].exists() and paths["b"].exists()
    assert [r.branch for r in eng.list_branches()] == ["b"]
    # b was re-marked by the second run; it goes one grace period later.
    clock.now += 1.1 * HOUR
    assert [c.branch for c in collect(eng, dry_run=False).deleted] == ["b"]


def test_over_quota_lru(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    eng.up("main")
    for b in ["x1", "x2", "x3", "x4"]:
        branch_with_commit(repo, b)  # open work: not merged, not deleted
        clock.now += 60
        eng.up(b)
    # The limit is lowered after the fact (creating beyond it is refused).
    eng = engine(repo, clock, "max_branches = 3\n")
    clock.now += 60
    eng.url("x1")  # x1 is used last: x2 and x3 are the least recently used
    # 5 databases, max 3 (protected main counts): the two LRU non-protected go.
    assert reasons(eng) == {"x2": "over-quota", "x3": "over-quota"}


def test_orphans_and_foreign_files(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    eng.up("main")
    branches = repo / ".branchdb" / "branches"
    mine = json.dumps({"store": eng.store.store_id})
    orphan = branches / "bdb-crashed-0123456789.db"  # made by this store, no record
    orphan.write_bytes(b"")
    Path(f"{orphan}.store").write_text(mine)
    foreign = [
        branches / "users-own.db",
        repo / ".branchdb" / "notes.db",
        repo / "app.db",
        # Not provably this store's: another store's, and one made before stores
        # had ids (no .store file).
        branches / "bdb-theirs-0123456789.db",
        branches / "bdb-older-0123456789.db",
    ]
    for f in foreign:
        f.write_bytes(b"precious")
    Path(f"{foreign[3]}.store").write_text(json.dumps({"store": "f" * 32}))
    first = collect(eng, dry_run=False)
    assert [(c.reason, c.database) for c in first.candidates] == [
        ("orphan", "bdb-crashed-0123456789")
    ]
    assert orphan.exists()
    clock.now += 2 * HOUR
    second = collect(eng, dry_run=False)
    assert [c.database for c in second.deleted] == ["bdb-crashed-0123456789"]
    assert not orphan.exists() and not Path(f"{orphan}.store").exists()
    assert all(f.read_bytes() == b"precious" for f in foreign)
    assert eng.get("main").status == "ready"
    assert Path(f"{eng.get('main').url.removeprefix('file:')}.store").read_text() == (
        mine
    )


def test_missing_database_is_reported(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    url = eng.up("main").record.url
    Path(url.removeprefix("file:")).unlink()
    assert collect(eng, dry_run=True).missing == ("main",)


def test_cli_dry_run_then_run(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\ngrace = "1s"\n'
    )
    git(repo, "branch", "feature/done")
    assert run(repo, "up", "feature/done").code == 0
    time.sleep(1.1)  # work committed after the database was made
    git(repo, "checkout", "-q", "feature/done")
    commit(repo, "done.txt")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "m", "feature/done")
    r = run(repo, "gc", "--dry-run", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert [(c["branch"], c["policy"], c["deleted"]) for c in data["candidates"]] == [
        ("feature/done", "merged", False)
    ]
    assert "ancestor of main" in data["candidates"][0]["evidence"]
    assert run(repo, "url", "feature/done").code == 0  # dry run changed nothing
    r = run(repo, "gc")  # marks it
    assert r.code == 0 and "marked" in r.out
    time.sleep(1.1)  # the grace period
    # Two collectors at once: exactly one deletes, neither fails.
    procs = [
        subprocess.Popen(
            [BRANCHDB, "gc", "--json"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    deleted = [c for o, _ in outs for c in json.loads(o)["candidates"] if c["deleted"]]
    assert len(deleted) == 1 and deleted[0]["branch"] == "feature/done"
    assert run(repo, "url", "feature/done").code == 1
    r = run(repo, "gc")
    assert r.out.startswith("nothing to collect")


def test_closed_pull_requests_are_collectable(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)
    for b in ("pr-merged", "pr-closed", "pr-reopened"):
        git(repo, "branch", b)
        eng.up(b)
    eng.pull_request_closed("pr-merged", merged=True, reference="#12")
    eng.pull_request_closed("pr-closed", merged=False, reference="#13")
    eng.pull_request_closed("pr-reopened", merged=False, reference="#14")
    eng.pull_request_opened("pr-reopened")
    plan = {c.branch: c for c in collect(eng, dry_run=True).candidates}
    assert {b: c.reason for b, c in plan.items()} == {
        "pr-merged": "merged",
        "pr-closed": "closed",
    }
    assert plan["pr-merged"].evidence == "pull request #12 was closed (merged)"
    collect(eng, dry_run=False)
    clock.now += 2 * HOUR
    deleted = sorted(c.branch or "" for c in collect(eng, dry_run=False).deleted)
    assert deleted == ["pr-closed", "pr-merged"]
    assert eng.store.closed_branches(eng.project) == {}
