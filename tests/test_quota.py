"""Quotas (issue #5): branches.max_branches enforced when a database is created."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from support import git, run

from branchdb.daemon.api.app import create_app

CONFIG = '[project]\nname = "shop"\n[branches]\nmax_branches = 3\n'


def db_path(repo: Path, branch: str) -> Path:
    r = run(repo, "url", branch)
    assert r.code == 0, r.err
    return Path(r.out.strip().removeprefix("file:"))


def test_cli_refuses_beyond_the_limit(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(CONFIG)
    for b in ("a", "b", "c"):
        git(repo, "branch", b)
    for b in ("main", "a", "b"):
        assert run(repo, "up", b).code == 0
    before = sorted(p.name for p in (repo / ".branchdb" / "branches").iterdir())
    r = run(repo, "up", "c")
    assert r.code == 1 and r.out == ""
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert "is at its limit of 3 branch databases (branches.max_branches)" in r.err
    after = sorted(p.name for p in (repo / ".branchdb" / "branches").iterdir())
    assert after == before  # nothing was created
    ls = json.loads(run(repo, "ls", "--json").out)
    assert sorted(b["branch"] for b in ls) == ["a", "b", "main"]
    # An existing branch is not a new one: up again still works.
    assert run(repo, "up", "a").code == 0
    assert run(repo, "down", "b", "--yes").code == 0
    assert run(repo, "up", "c").code == 0


def test_cli_evicts_the_least_recently_used(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(CONFIG + 'on_limit = "evict"\n')
    for b in ("a", "b", "c", "d"):
        git(repo, "branch", b)
    for b in ("main", "a", "b"):
        assert run(repo, "up", b).code == 0
    b_file = db_path(repo, "b")
    a_file = db_path(repo, "a")  # a is used last: b is the least recently used
    run(repo, "url", "main")  # protected anyway
    r = run(repo, "up", "c")
    assert r.code == 0, r.err
    assert "evicted b (least recently used; branches.max_branches)" in r.out
    assert not b_file.exists() and a_file.exists()
    assert run(repo, "url", "b").code == 1
    ls = json.loads(run(repo, "ls", "--json").out)
    assert sorted(x["branch"] for x in ls) == ["a", "c", "main"]
    totals = json.loads(run(repo, "gc", "--dry-run", "--json").out)["totals"]
    assert totals["by_reason"]["evicted"]["databases"] == 1


def test_evict_refuses_when_only_protected_branches_remain(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\nmax_branches = 1\non_limit = "evict"\n'
    )
    git(repo, "branch", "a")
    assert run(repo, "up", "main").code == 0
    r = run(repo, "up", "a")
    assert r.code == 1 and "none can be evicted" in r.err
    assert run(repo, "url", "main").code == 0


def test_bad_on_limit_is_a_config_error(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(CONFIG + 'on_limit = "panic"\n')
    r = run(repo, "ls")
    assert r.code == 2 and 'branches.on_limit must be "refuse" or "evict"' in r.err


@pytest.fixture
def client(request: pytest.FixtureRequest, repo: Path) -> Iterator[httpx.Client]:
    setup_project(repo)
    with (repo / "branchdb.toml").open("a") as f:
        f.write(f"[branches]\nmax_branches = 2\non_limit = {request.param!r}\n")
    for b in ("x", "y", "z"):
        git(repo, "branch", b)
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(
            base_url=base + "/v1/projects/shop/branches",
            headers=auth(toks["ci"]),
            timeout=60,
        ) as c,
    ):
        yield c


@pytest.mark.parametrize("client", ["refuse"], indirect=True)
def test_api_refuses_with_409(client: httpx.Client) -> None:
    assert client.put("/x").status_code == 201
    assert client.put("/y").status_code == 201
    r = client.put("/z")
    assert r.status_code == 409
    assert r.json()["error"]["type"] == "QuotaExceeded"
    assert "max_branches" in r.json()["error"]["message"]
    assert client.get("/z").status_code == 404
    # In the background too: the job fails with the same status and error.
    job = client.put("/z", params={"wait": "false"}).json()
    assert job["status"] in ("running", "failed")


@pytest.mark.parametrize("client", ["evict"], indirect=True)
def test_api_evicts(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    assert client.put("/x").status_code == 201
    assert client.put("/y").status_code == 201
    x_file = Path(client.get("/x").json()["url"].removeprefix("file:"))
    y_file = Path(client.get("/y").json()["url"].removeprefix("file:"))  # y newer
    with caplog.at_level(logging.INFO, logger="branchdb.gc"):
        r = client.put("/z")
    assert r.status_code == 201, r.text
    assert r.json()["evicted"] == ["x"]
    assert not x_file.exists() and y_file.exists()
    assert client.get("/x").status_code == 404
    assert any(
        "evicted database" in m and "'x'" in m and "to create 'z'" in m
        for m in caplog.messages
    ), caplog.messages


def test_gc_pace_must_be_a_non_negative_number(repo: Path) -> None:
    for bad, msg in (("-1", "gc.pace must be >= 0"), ('"fast"', "gc.pace must be")):
        (repo / "branchdb.toml").write_text(CONFIG + f"[gc]\npace = {bad}\n")
        r = run(repo, "ls")
        assert r.code == 2 and msg in r.err, r.err
    (repo / "branchdb.toml").write_text(CONFIG + "[gc]\npace = 0\n")
    assert run(repo, "ls").code == 0
