"""The CLI's side of hardening: tokens limited to projects, a dangling symlink among
the migrations, and a data directory that ignores itself. Real git repositories and
the installed ``branchdb`` script."""

from __future__ import annotations

import json
from pathlib import Path

from apisupport import setup_project
from support import run


def test_token_create_with_projects_is_listed(repo: Path) -> None:
    setup_project(repo)
    made = run(repo, "token", "create", "--scope", "ci", "--project", "shop")
    assert made.code == 0, made.err
    assert made.out.strip().startswith("bdb_") and "shop" in made.err
    assert run(repo, "token", "create", "--scope", "read").code == 0
    rows = json.loads(run(repo, "token", "ls", "--json").out)
    assert sorted((r["scope"], r["projects"]) for r in rows) == [
        ("ci", ["shop"]),
        ("read", []),
    ]
    table = run(repo, "token", "ls").out.splitlines()
    assert table[0].split() == ["ID", "NAME", "SCOPE", "PROJECTS", "CREATED"]
    assert sorted(line.split()[3] for line in table[1:]) == ["(all)", "shop"]


def test_token_for_a_project_not_served_is_refused(repo: Path) -> None:
    setup_project(repo)
    r = run(repo, "token", "create", "--scope", "ci", "--project", "shpo")
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and "'shpo'" in r.err and "shop" in r.err
    assert json.loads(run(repo, "token", "ls", "--json").out) == []
