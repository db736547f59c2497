"""One way to delete a branch database: ``down``, GC and quota eviction all drop the
database, forget every record keyed by the branch, write an audit row and (GC,
eviction) count it — checked on both state stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storesupport import KINDS, Backing, backing
from support import git
from test_gc import HOUR, Clock, branch_with_commit

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.gc.collector import collect, totals


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backing]:
    cluster = (
        request.getfixturevalue("pg_cluster") if request.param == "postgres" else None
    )
    with backing(request.param, tmp_path, cluster) as b:
        yield b


def _engine(repo: Path, place: Backing, clock: Clock, extra: str = "") -> Engine:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\nttl = "7d"\ngrace = "1h"\n' + extra
    )
    return Engine(config_mod.load(cwd=repo), store=place.open(), clock=clock)


def test_an_eviction_is_audited_and_counted(repo: Path, place: Backing) -> None:
    clock = Clock()
    eng = _engine(repo, place, clock, 'max_branches = 2\non_limit = "evict"\n')
    eng.up("old")
    clock.now += 60
    eng.up("newer")
    clock.now += 60
    old_file = Path(eng.get("old").url.removeprefix("file:"))
    with acting("token:t1", "PUT"):
        res = eng.up("third")
    assert res.evicted == ("old",) and not old_file.exists()
    (entry,) = eng.audit_log(action="delete")
    assert (entry.branch, entry.actor, entry.reason) == ("old", "token:t1", "PUT")
    assert "evicted" in entry.detail and "'third'" in entry.detail
    assert totals(eng).by_reason["evicted"].databases == 1
    eng.store.close()


def test_down_then_up_starts_clean(repo: Path, place: Backing) -> None:
    """A closed pull request's mark, a TTL and a GC mark go with the database: a new
    database for the same branch name is judged on its own (not "merged")."""
    clock = Clock()
    eng = _engine(repo, place, clock)
    branch_with_commit(repo, "feature/x")
    eng.up("feature/x")
    eng.pull_request_closed("feature/x", merged=True, reference="acme/shop#1")
    from branchdb.daemon.gc.ttl import set_ttl

    set_ttl(eng, "feature/x", "never")
    collect(eng, dry_run=False)  # marks it
    assert eng.store.gc_marks("shop", "branch") != {}
    eng.down("feature/x")
    assert eng.store.closed_branches("shop") == {}
    assert eng.store.gc_marks("shop", "branch") == {}
    assert eng.store.branch_ttls("shop") == {}
    # The pull request is reopened as a new one: the branch gets a database again.
    eng.up("feature/x")
    clock.now += 2 * HOUR
    plan = {c.branch: c for c in collect(eng, dry_run=False).candidates}
    assert "feature/x" not in plan, plan["feature/x"].evidence
    assert eng.get("feature/x").status == "ready"
    eng.store.close()


def test_gc_deletion_is_audited_and_forgets_everything(
    repo: Path, place: Backing
) -> None:
    clock = Clock()
    eng = _engine(repo, place, clock)
    branch_with_commit(repo, "gone")
    eng.up("gone")
    git(repo, "branch", "-q", "-D", "gone")
    with acting("scheduler", "scheduled gc"):
        assert collect(eng, dry_run=False).deleted == ()  # marks
        clock.now += HOUR + 1
        (c,) = collect(eng, dry_run=False).deleted
    assert (c.branch, c.reason) == ("gone", "deleted")
    (entry,) = eng.audit_log(action="delete")
    assert (entry.branch, entry.actor) == ("gone", "scheduler")
    assert entry.detail.startswith("gc deleted: ")
    assert eng.store.gc_marks("shop", "branch") == {}
    assert eng.list_branches() == []
    assert totals(eng).by_reason["deleted"].databases == 1
    eng.store.close()
