"""The local branch loop end to end: real git repos, the real CLI, real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from support import BRANCHDB, git, run, tables

CONFIG = """\
[project]
name = "shop"

[migrations]
dir = "migrations"
format = "sql"
"""


def setup_repo(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(CONFIG)
    mig = repo / "migrations"
    mig.mkdir()
    (mig / "001_users.sql").write_text(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);\n"
    )
    (mig / "002_orders.sql").write_text(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users);\n"
        "CREATE INDEX orders_user ON orders (user_id);\n"
    )
    (repo / ".gitignore").write_text(".branchdb/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "migrations")


def db_path(url: str) -> Path:
    assert url.startswith("file:/")
    return Path(url.removeprefix("file:"))


def test_up_creates_migrates_and_is_idempotent(repo: Path) -> None:
    setup_repo(repo)
    r = run(repo, "up")
    assert r.code == 0, r.err
    line, url = r.out.strip().splitlines()
    assert line == "main: created (fresh), 2 migrations applied"
    assert tables(db_path(url)) >= {"users", "orders", "_branchdb_migrations"}
    again = run(repo, "up", "--json")
    data = json.loads(again.out)
    assert data["up_to_date"] is True and data["url"] == url
    assert data["applied"] == [] and data["migrations_applied"] == 2
    assert run(repo, "url").out.strip() == url


def test_hook_gives_each_branch_its_own_database(repo: Path) -> None:
    setup_repo(repo)
    assert run(repo, "hook", "install").code == 0
    main_url = run(repo, "up").out.strip().splitlines()[-1]
    git(repo, "checkout", "-q", "-b", "feature/x")
    # `checkout -b` already ran the hook: feature/x got its own database.
    assert run(repo, "url").out.strip() not in ("", main_url)
    (repo / "migrations" / "003_coupons.sql").write_text(
        "CREATE TABLE coupons (code TEXT PRIMARY KEY);\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "coupons")
    git(repo, "checkout", "-q", "main")
    # The hook runs on checkout; its one line goes to stderr.
    p = subprocess.run(
        ["git", "checkout", "feature/x"], cwd=repo, capture_output=True, text=True
    )
    assert p.returncode == 0
    assert "branchdb: feature/x: 1 migration applied" in p.stderr
    feature_url = run(repo, "url").out.strip()
    assert feature_url != main_url
    assert "coupons" in tables(db_path(feature_url))
    assert "coupons" not in tables(db_path(main_url))  # main untouched
    ls = json.loads(run(repo, "ls", "--json").out)
    assert sorted(b["branch"] for b in ls) == ["feature/x", "main"]


def test_hook_never_fails_the_checkout(repo: Path) -> None:
    setup_repo(repo)
    run(repo, "hook", "install")
    git(repo, "checkout", "-q", "-b", "broken")
    (repo / "migrations" / "003_bad.sql").write_text("CREATE TABLE oops (;\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bad")
    git(repo, "checkout", "-q", "main")
    p = subprocess.run(
        ["git", "checkout", "broken"], cwd=repo, capture_output=True, text=True
    )
    assert p.returncode == 0
    warnings = [w for w in p.stderr.splitlines() if w.startswith("branchdb:")]
    assert (
        len(warnings) == 1 and "warning" in warnings[0] and "003_bad.sql" in warnings[0]
    )
    assert git(repo, "branch", "--show-current") == "broken"
    # Detached HEAD: the hook stays silent.
    sha = git(repo, "rev-parse", "HEAD")
    p = subprocess.run(
        ["git", "checkout", "-q", sha], cwd=repo, capture_output=True, text=True
    )
    assert p.returncode == 0 and "branchdb" not in p.stderr


def test_hook_keeps_an_existing_hook(repo: Path) -> None:
    setup_repo(repo)
    hooks = repo / ".git" / "hooks"
    mine = hooks / "post-checkout"
    mine.write_text(
        '#!/bin/sh\necho "user hook ran $3" >> "$(git rev-parse --show-toplevel)/.hooklog"\n'
    )
    mine.chmod(0o755)
    assert run(repo, "hook", "install").code == 0
    assert run(repo, "hook", "install").code == 0  # idempotent
    git(repo, "checkout", "-q", "-b", "other")
    assert (repo / ".hooklog").read_text() == "user hook ran 1\n"
    assert run(repo, "url").code == 0  # branchdb's part ran too
    assert run(repo, "hook", "uninstall").code == 0
    assert "user hook ran" in mine.read_text()
    assert not (hooks / "post-checkout.branchdb-previous").exists()


def test_env_prints_and_writes_dotenv(repo: Path) -> None:
    setup_repo(repo)
    url = run(repo, "up").out.strip().splitlines()[-1]
    assert run(repo, "env").out.strip() == f"DATABASE_URL={url}"
    assert run(repo, "env", "--var", "DB").out.strip() == f"DB={url}"
    dotenv = repo / ".env"
    dotenv.write_text("# keep me\nSECRET=abc\nDATABASE_URL=old\nexport OTHER=1\n")
    r = run(repo, "env", "--write", ".env")
    assert r.code == 0, r.err
    assert dotenv.read_text() == (
        f"# keep me\nSECRET=abc\nDATABASE_URL={url}\nexport OTHER=1\n"
    )


def test_down_needs_confirmation_and_protects(repo: Path) -> None:
    setup_repo(repo)
    run(repo, "up")
    r = run(repo, "down")
    assert r.code != 0 and "--yes" in r.err
    r = run(repo, "down", "--yes")
    assert r.code != 0 and "protected" in r.err and "--force" in r.err
    run(repo, "up", "feature/y")
    path = db_path(run(repo, "url", "feature/y").out.strip())
    assert path.exists()
    r = run(repo, "down", "feature/y", "--yes")
    assert r.code == 0, r.err
    assert not path.exists()
    r = run(repo, "url", "feature/y")
    assert r.code == 1 and "branchdb up feature/y" in r.err
    assert run(repo, "down", "--yes", "--force").code == 0


def test_failing_migration_is_rolled_back_and_named(repo: Path) -> None:
    setup_repo(repo)
    run(repo, "up")
    (repo / "migrations" / "003_half.sql").write_text(
        "CREATE TABLE half (id INTEGER);\nINSERT INTO nope VALUES (1);\n"
    )
    r = run(repo, "up")
    assert r.code != 0
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert (
        "003_half.sql" in r.err
        and "statement 2" in r.err
        and "no such table: nope" in r.err
    )
    url = run(repo, "url").out.strip()
    assert "half" not in tables(db_path(url))  # rolled back whole
    assert {"users", "orders"} <= tables(db_path(url))  # still usable
    (repo / "migrations" / "003_half.sql").write_text(
        "CREATE TABLE half (id INTEGER);\n"
    )
    r = run(repo, "up")
    assert r.code == 0 and "1 migration applied" in r.out


def test_edited_migration_is_refused(repo: Path) -> None:
    setup_repo(repo)
    run(repo, "up")
    (repo / "migrations" / "001_users.sql").write_text(
        "CREATE TABLE users (id INTEGER);\n"
    )
    r = run(repo, "up")
    assert r.code != 0
    assert "001_users.sql" in r.err and "branchdb reset" in r.err
    r = run(repo, "reset", "--force")
    assert r.code == 0, r.err
    assert run(repo, "up").out.startswith("main: up to date")


def test_drift_after_rebase(repo: Path) -> None:
    setup_repo(repo)
    git(repo, "checkout", "-q", "-b", "feature/z")
    mig = repo / "migrations"
    (mig / "003_feature.sql").write_text("CREATE TABLE feature (id INTEGER);\n")
    assert run(repo, "up").code == 0
    feature_url = run(repo, "url").out.strip()
    with sqlite3.connect(db_path(feature_url)) as c:  # by hand: no migration has it
        c.execute("CREATE TABLE notes (body TEXT)")
    # Main took number 003 meanwhile; after the rebase the branch renumbers to 004.
    (mig / "003_feature.sql").rename(mig / "004_feature.sql")
    (mig / "003_main.sql").write_text("CREATE TABLE from_main (id INTEGER);\n")
    r = run(repo, "up")
    assert r.code != 0
    assert "003_feature.sql" in r.err and "--reset-on-drift" in r.err
    # Drift explained: the database against what the branch's migrations make.
    assert "What --reset-on-drift would change" in r.err
    assert "- table from_main: (id INTEGER NULL)" in r.err
    assert "+ table notes: (body TEXT NULL)" in r.err
    assert "from_main" not in tables(db_path(feature_url))  # nothing was changed
    r = run(repo, "up", "--reset-on-drift")
    assert r.code == 0, r.err
    assert "rebuilt" in r.out
    assert {"feature", "from_main"} <= tables(db_path(run(repo, "url").out.strip()))
    assert run(repo, "url").out.strip() == feature_url  # same URL after rebuild


def test_clear_errors_without_damage(repo: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "empty"
    nowhere.mkdir()
    r = run(nowhere, "up", "x")
    assert r.code == 2 and "branchdb init" in r.err and "Traceback" not in r.err
    setup_repo(repo)
    (repo / "branchdb.toml").write_text(CONFIG.replace('"sql"', '"liquibase"'))
    r = run(repo, "up")
    assert r.code == 2 and "migrations.format 'liquibase'" in r.err
    (repo / "branchdb.toml").write_text(CONFIG)
    git(repo, "checkout", "-q", "--detach")
    r = run(repo, "up")
    assert r.code == 2 and "detached" in r.err
    r = run(repo, "up", "--fresh", "--from", "x")
    assert r.code == 2 and "not allowed with" in r.err
    r = run(repo, "up", "bad\nname")
    assert r.code == 2 and "invalid branch name" in r.err
    assert not (repo / ".branchdb" / "branches").exists() or not list(
        (repo / ".branchdb" / "branches").glob("*.db")
    )


def test_odd_branch_names_get_distinct_databases(repo: Path) -> None:
    setup_repo(repo)
    names = ["feature/X", "feature/x", "feature-x", "ünï/分支", "y" * 250, "a'b\"c"]
    urls = set()
    for name in names:
        r = run(repo, "up", name, "--json")
        assert r.code == 0, (name, r.err)
        data = json.loads(r.out)
        assert data["branch"] == name
        urls.add(data["url"])
        assert "users" in tables(db_path(data["url"]))
    assert len(urls) == len(names)


def test_concurrent_up_ends_with_one_database(repo: Path) -> None:
    setup_repo(repo)
    env = {**os.environ}
    procs = [
        subprocess.Popen(
            [BRANCHDB, "up", "race", "--json"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    urls = {json.loads(o)["url"] for o, _ in outs}
    assert len(urls) == 1
    created = [json.loads(o)["created"] for o, _ in outs]
    assert created.count(True) == 1
    dbs = list((repo / ".branchdb" / "branches").glob("*.db"))
    assert len(dbs) == 1
    con = sqlite3.connect(dbs[0])
    assert con.execute("SELECT count(*) FROM _branchdb_migrations").fetchone()[0] == 2


def test_snapshots_and_cloning(repo: Path) -> None:
    setup_repo(repo)
    # "Production": a migrated database with data, carrying the ledger.
    prod = db_path(run(repo, "up", "prod-source").out.strip().splitlines()[-1])
    con = sqlite3.connect(prod)
    con.execute("INSERT INTO users (email) VALUES ('a@x.test'), ('b@x.test')")
    con.commit()
    con.close()
    r = run(repo, "snapshot", "create", "prod", "--source", str(prod))
    assert r.code == 0 and "prod@1" in r.out, r.err
    r = run(repo, "snapshot", "create", "prod", "--source", str(prod), "--json")
    assert json.loads(r.out)["ref"] == "prod@2"
    ls = json.loads(run(repo, "snapshot", "ls", "--json").out)
    assert [s["ref"] for s in ls] == ["prod@1", "prod@2"]
    (repo / "migrations" / "003_coupons.sql").write_text(
        "CREATE TABLE coupons (c TEXT);\n"
    )
    r = run(repo, "up", "clone-me", "--from", "prod@1", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["source"] == "snapshot:prod@1"
    assert data["applied"] == ["003_coupons.sql"]  # only what the clone lacked
    con = sqlite3.connect(db_path(data["url"]))
    assert con.execute("SELECT count(*) FROM users").fetchone()[0] == 2
    con.close()
    r = run(repo, "snapshot", "rm", "prod@1")
    assert r.code != 0 and "clone-me" in r.err
    assert run(repo, "snapshot", "rm", "prod@2").code == 0
    r = run(repo, "snapshot", "create", "Bad/Name", "--source", str(prod))
    assert r.code != 0 and "invalid snapshot name" in r.err


def test_init_writes_config_and_gitignore(repo: Path) -> None:
    (repo / "drizzle" / "meta").mkdir(parents=True)
    (repo / "drizzle" / "meta" / "_journal.json").write_text(
        '{"version":"7","dialect":"sqlite","entries":[]}'
    )
    r = run(repo, "init")
    assert r.code == 0, r.err
    text = (repo / "branchdb.toml").read_text()
    assert 'dir = "drizzle"' in text and 'format = "drizzle"' in text
    assert "/.branchdb/" in (repo / ".gitignore").read_text()
    assert run(repo, "init").code != 0  # never overwrites silently
    r = run(repo, "up")
    assert r.code == 0, r.err


def test_worktrees_and_git_dir(repo: Path, tmp_path: Path) -> None:
    setup_repo(repo)
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "in-worktree", str(wt))
    r = run(wt, "up", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["branch"] == "in-worktree"
    # GIT_DIR as git sets it for hooks; a subdirectory of the work tree.
    sub = repo / "migrations"
    r = run(sub, "up", "--json", env={"GIT_DIR": "../.git"})
    assert r.code == 0 and json.loads(r.out)["branch"] == "main", r.err
