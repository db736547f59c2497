"""A snapshot whose ledger is ahead of the branch: a plain message, no `ready` ghost.

Production was migrated by the team's real tool (drizzle-orm) to stage 3; a branch
still at stage 2 cannot use that snapshot, and rebuilding from it cannot help.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from nodetools import require_node, run_drizzle_migrator
from support import FIXTURES, git, run

pytestmark = pytest.mark.node

DRIZZLE = FIXTURES / "drizzle"
CONFIG = '[project]\nname = "shop"\n[migrations]\ndir = "drizzle"\nformat = "drizzle"\n'


def test_snapshot_ahead_of_branch(repo: Path, tmp_path: Path) -> None:
    require_node()
    (repo / "branchdb.toml").write_text(CONFIG)
    shutil.copytree(DRIZZLE / "sqlite-stage2", repo / "drizzle")
    # prod@1 at stage 2, then the tool migrates production to stage 3: prod@2.
    prod = tmp_path / "prod.db"
    run_drizzle_migrator("libsql", DRIZZLE / "sqlite-stage2", f"file:{prod}")
    assert run(repo, "snapshot", "create", "prod", "--source", str(prod)).code == 0
    run_drizzle_migrator("libsql", DRIZZLE / "sqlite-stage3", f"file:{prod}")
    assert run(repo, "snapshot", "create", "prod", "--source", str(prod)).code == 0
    git(repo, "checkout", "-q", "-b", "feature/old")

    for extra in ((), ("--reset-on-drift",)):
        r = run(repo, "up", "--from", "prod", *extra)
        assert r.code != 0
        assert "snapshot prod@2 is ahead of this branch" in r.err, r.err
        assert "0002_nickname_coupons.sql" not in r.err  # the branch has no file
        assert "Rebase this branch onto main" in r.err
        assert "`branchdb up --from prod@1`" in r.err
        assert "--reset-on-drift" not in r.err  # it would fail the same way
        # Not left behind as a `ready` branch (nor as a database).
        ls = json.loads(run(repo, "ls", "--json").out)
        assert [b["branch"] for b in ls] == []
        assert list((repo / ".branchdb" / "branches").glob("*feature*")) == []

    r = run(repo, "up", "--from", "prod@1", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["applied"] == []
