"""The CLI's side of hardening: tokens limited to projects, a dangling symlink among
the migrations, and a data directory that ignores itself. Real git repositories and
the installed ``branchdb`` script."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import httpx
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from support import git, run

from branchdb.daemon.api.app import create_app


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


# ------------------------------------------------------------ a dangling symlink
def _one_line_error(code: int, out: str, err: str) -> str:
    assert code not in (0, 70), (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("branchdb: error: ")
    return err.strip()


def _dangle(repo: Path) -> None:
    os.symlink("gone.sql", repo / "migrations" / "003_dangling.sql")


def test_a_dangling_symlink_among_the_migrations_is_a_user_error(repo: Path) -> None:
    setup_project(repo)
    assert run(repo, "up").code == 0  # main has a database; the link comes later
    _dangle(repo)
    for args in (["up"], ["up", "feature/x"], ["migrate"]):
        r = run(repo, *args)
        line = _one_line_error(r.code, r.out, r.err)
        assert "003_dangling.sql" in line and "gone.sql" in line, (args, line)
    listed = json.loads(run(repo, "ls", "--json").out)
    assert [b["branch"] for b in listed] == ["main"]


def test_a_dangling_symlink_through_the_daemon(repo: Path) -> None:
    """Remote mode names the file on the developer's machine; the daemon reading its
    own directory answers 4xx JSON naming it."""
    setup_project(repo)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    _dangle(repo)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        env = {"BRANCHDB_SERVER": base, "BRANCHDB_TOKEN": toks["ci"]}
        r = run(repo, "up", "feature/x", env=env)
        assert "003_dangling.sql" in _one_line_error(r.code, r.out, r.err)
        put = client.put(
            "/v1/projects/shop/branches/feature/x", headers=auth(toks["ci"])
        )
        assert 400 <= put.status_code < 500, put.text
        assert "003_dangling.sql" in put.json()["error"]["message"]
        listed = client.get("/v1/projects/shop/branches", headers=auth(toks["ci"]))
        assert listed.json() == []


# ------------------------------------------------------------ the data directory
def test_the_data_directory_ignores_itself(repo: Path) -> None:
    """`up` without `init` (no .gitignore entry): .branchdb/ never shows in git."""
    setup_project(repo)
    (repo / ".gitignore").unlink()
    git(repo, "commit", "-qam", "no ignore file")
    r = run(repo, "up")
    assert r.code == 0, r.err
    assert (repo / ".branchdb" / "state.db").is_file()
    assert (repo / ".branchdb" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    git(repo, "add", "-A")
    assert git(repo, "diff", "--cached", "--name-only") == ""


# ------------------------------------------------------------ remote snapshot rules
RULES_CASES = {
    # file name -> (its text, what the error says besides the file's name)
    "not_toml.toml": ("salt = [unclosed\n", "not valid TOML"),
    "no_table.toml": (
        'salt = "s"\n[tables.people]\ncolumns.email = "email"\n'
        '[tables.ghosts]\ncolumns.x = "null"\n',
        "'ghosts' does not exist",
    ),
    "unreviewed.toml": ('salt = "s"\n', "have no rule in"),
}


def test_remote_snapshot_rules_errors_name_the_users_file(repo: Path) -> None:
    setup_project(repo)
    seed = repo.parent / "seed.db"
    con = sqlite3.connect(seed)
    con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT)")
    con.commit()
    con.close()
    for name, (text, _) in RULES_CASES.items():
        (repo / name).write_text(text)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with serve_in_thread(create_app(settings)) as base:
        remote = {"BRANCHDB_SERVER": base, "BRANCHDB_TOKEN": toks["admin"]}
        for name, (_, says) in RULES_CASES.items():
            args = ("snapshot", "create", "s", "--source", str(seed), "--rules", name)
            errors = []
            for env in (remote, None):  # remote, then embedded: the same message
                r = run(repo, *args, env=env)
                assert r.code not in (0, 70) and "Traceback" not in r.err, r.err
                assert str(repo / name) in r.err and says in r.err, r.err
                assert "branchdb-rules-" not in r.err, r.err
                errors.append(r.err)
            assert errors[0] == errors[1]


# ------------------------------------------------------------ the one branch-name rule
def test_every_cli_branch_goes_through_the_rule(repo: Path) -> None:
    setup_project(repo)
    for args in (["ttl", "a..b", "3d"], ["ttl", "-rf", "3d"], ["url", "feat//x"]):
        if args[1].startswith("-"):
            args = [args[0], "--", *args[1:]]
        r = run(repo, *args)
        assert r.code == 2, (args, r.err)
        assert "invalid branch name" in _one_line_error(r.code, r.out, r.err)
    # git can check out a 300-byte name (each part under 255); the rule cannot.
    long = "x" * 200 + "/" + "y" * 99
    git(repo, "checkout", "-q", "-b", long)
    for args in (["url"], ["status"], ["up"]):
        r = run(repo, *args)
        assert r.code == 2, (args, r.err)
        assert "invalid branch name" in _one_line_error(r.code, r.out, r.err)
