"""The hook's fast path answers exactly like the full path, and imports almost nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import git, run

from branchdb.cli import fast
from branchdb.daemon import views
from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core.engine import Engine

FULL = {"BRANCHDB_NO_FASTPATH": "1"}


def ready_repo(repo: Path, cache: Path) -> dict[str, str]:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[migrations]\ndir = "migrations"\nformat = "sql"\n'
    )
    old = time.time() - 60  # an old config: its parse is cached
    os.utime(repo / "branchdb.toml", (old, old))
    (repo / "migrations").mkdir()
    (repo / "migrations" / "001.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    env = {"XDG_CACHE_HOME": str(cache)}
    assert run(repo, "up", env=env).code == 0
    return env


def strip_time(text: str) -> dict[str, object]:
    data = json.loads(text)
    data.pop("last_used_at")
    return data


def test_same_answers_both_ways(repo: Path, tmp_path: Path) -> None:
    env = ready_repo(repo, tmp_path / "cache")
    for args in (["up"], ["up", "-q"], ["up", "main"], ["up", "--hook"]):
        fast, full = run(repo, *args, env=env), run(repo, *args, env={**env, **FULL})
        assert (fast.code, fast.out, fast.err) == (full.code, full.out, full.err), args
    fast = run(repo, "up", "--json", env=env)
    full = run(repo, "up", "--json", env={**env, **FULL})
    assert strip_time(fast.out) == strip_time(full.out)
    assert strip_time(fast.out)["up_to_date"] is True


def test_fast_json_is_the_engines_up_to_date_answer(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path's ``up --json`` is the full path's, key for key, to the second:
    the record it reads from the state store (stdlib only), printed by
    views.up_to_date_dict, equals views.up_dict of what Engine.up answers."""
    env = ready_repo(repo, tmp_path / "cache")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("BRANCHDB_CONFIG", raising=False)
    monkeypatch.delenv("BRANCHDB_SERVER", raising=False)
    monkeypatch.chdir(repo)
    now = time.time() + 3600  # later than the record's last use: both refresh it
    monkeypatch.setattr(fast.time, "time", lambda: now)
    rec = fast._up_to_date(None)
    assert rec is not None, "the fast path did not answer"
    fast_json = views.up_to_date_dict(rec)  # type: ignore[arg-type]
    res = Engine(config_mod.load(cwd=repo), clock=lambda: now).up("main")
    assert res.up_to_date
    assert fast_json == views.up_dict(res)
    assert list(fast_json) == list(views.up_dict(res))  # same order when printed


@pytest.mark.parametrize("flag", ["-q", "--json"])
def test_fast_path_imports_almost_nothing(
    repo: Path, tmp_path: Path, flag: str
) -> None:
    env = ready_repo(repo, tmp_path / "cache")
    probe = (
        f"import sys; sys.argv = ['branchdb', 'up', '{flag}']\n"
        "from branchdb.cli.entry import run\n"
        "code = run()\n"
        "heavy = [m for m in ('branchdb.daemon.core.engine', 'branchdb.daemon.config.project', "
        "'argparse', 'tomllib', 'pathlib', 'typing', 'psycopg', 'libsql_client', "
        "'dataclasses', 'branchdb.daemon.core.results', 'branchdb.daemon.wire') "
        "if m in sys.modules]\n"
        "import json; print(json.dumps([code, heavy]), file=sys.stderr)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert p.returncode == 0, p.stderr
    code, heavy = json.loads(p.stderr.splitlines()[-1])
    assert code == 0
    # pathlib and typing may come from the interpreter's own start-up (site, the
    # editable-install finder); the rest must not be imported.
    assert set(heavy) <= {"pathlib", "typing"}, heavy


def test_falls_back_whenever_anything_changed(repo: Path, tmp_path: Path) -> None:
    env = ready_repo(repo, tmp_path / "cache")
    (repo / "migrations" / "002.sql").write_text("CREATE TABLE u (id INTEGER);\n")
    r = run(repo, "up", env=env)
    assert r.out.startswith("main: 1 migration applied"), r.out + r.err
    assert run(repo, "up", env=env).out.startswith("main: up to date")
    # The database file vanished: the full path notices and rebuilds it.
    url = run(repo, "url", env=env).out.strip()
    Path(url.removeprefix("file:")).unlink()
    r = run(repo, "up", env=env)
    assert r.code == 0 and "created" in r.out, r.out + r.err
    # A detached HEAD is still a clear error (from the full path).
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "x")
    git(repo, "checkout", "-q", "--detach")
    r = run(repo, "up", env=env)
    assert r.code == 2 and "detached" in r.err
