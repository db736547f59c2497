"""Per-branch TTL overrides, the persistent GC counters and GET /metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from prometheus_client.parser import text_string_to_metric_families
from support import git, run
from test_gc import Clock, branch_with_commit, engine

from branchdb.daemon.api.app import create_app
from branchdb.daemon.gc.collector import collect
from branchdb.daemon.gc.ttl import set_ttl

DAY = 86400.0


def test_branch_ttl_overrides_the_project_default(repo: Path) -> None:
    clock = Clock()
    eng = engine(repo, clock)  # project ttl 7d
    for b in ("short", "forever", "plain"):
        branch_with_commit(repo, b)
        eng.up(b)
    assert set_ttl(eng, "short", "1d").ttl == DAY
    assert set_ttl(eng, "forever", "never").ttl is None
    clock.now += 2 * DAY
    plan = {c.branch: c for c in collect(eng, dry_run=True).candidates}
    assert list(plan) == ["short"]
    assert plan["short"].reason == "idle"
    assert "ttl 1d, set for this branch" in plan["short"].evidence
    clock.now += 6 * DAY  # past the project's 7 days: plain goes, forever stays
    assert sorted(c.branch or "" for c in collect(eng, dry_run=True).candidates) == [
        "plain",
        "short",
    ]
    info = set_ttl(eng, "forever", "default")
    assert (info.ttl, info.ttl_source) == (7 * DAY, "project")
    assert "forever" in {c.branch for c in collect(eng, dry_run=True).candidates}
    # The override goes with the branch's record.
    collect(eng, dry_run=False)
    clock.now += 2 * 3600
    collect(eng, dry_run=False)
    assert eng.store.branch_ttls(eng.project) == {}


def test_ttl_cli(repo: Path) -> None:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[branches]\nttl = "14d"\n'
    )
    git(repo, "branch", "feature/x")
    assert run(repo, "up", "feature/x").code == 0
    r = run(repo, "ttl", "feature/x", "3d")
    assert r.code == 0, r.err
    assert r.out.startswith("ttl of feature/x: 3d, idle after ")
    assert "(this branch)" in r.out
    r = run(repo, "status", "feature/x", "--json")
    assert json.loads(r.out)["ttl"]["ttl"] == 3 * DAY
    assert "ttl:         3d, idle after" in run(repo, "status", "feature/x").out
    r = run(repo, "ttl", "feature/x", "never", "--json")
    assert json.loads(r.out) == {
        "branch": "feature/x",
        "ttl": None,
        "ttl_source": "branch",
        "idle_after": None,
        "protected": False,
    }
    r = run(repo, "ttl", "feature/x", "default")
    assert "14d" in r.out and "(project default)" in r.out
    # Bad input: one line, non-zero, no traceback.
    for args, code in (
        (("feature/x", "soon"), 2),
        (("feature/x", "0s"), 2),
        (("nope", "3d"), 1),
    ):
        r = run(repo, "ttl", *args)
        assert r.code == code, r
        assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    assert "invalid duration 'soon'" in run(repo, "ttl", "feature/x", "soon").err


@pytest.fixture
def served(repo: Path) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    setup_project(repo)
    with (repo / "branchdb.toml").open("a") as f:
        f.write('[branches]\ngrace = "0s"\n')
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield client, toks


def test_ttl_route(repo: Path, served: tuple[httpx.Client, dict[str, str]]) -> None:
    client, toks = served
    git(repo, "branch", "feature/y")
    br = "/v1/projects/shop/branches/feature/y"
    assert client.put(br, headers=auth(toks["ci"])).status_code == 201
    r = client.patch(br, json={"ttl": "2h"}, headers=auth(toks["ci"]))
    assert r.status_code == 200, r.text
    assert r.json()["ttl"] == 7200 and r.json()["ttl_source"] == "branch"
    names = [
        b["branch"]
        for b in client.get(
            "/v1/projects/shop/branches", headers=auth(toks["read"])
        ).json()
    ]
    assert names == ["feature/y"]
    r = client.patch(br, json={"ttl": "2h"}, headers=auth(toks["read"]))
    assert r.status_code == 403
    r = client.patch(br, json={"ttl": "2 parsecs"}, headers=auth(toks["ci"]))
    assert r.status_code == 422 and r.json()["error"]["type"] == "ValidationError"
    r = client.patch(br, json={"ttl": "99999w"}, headers=auth(toks["ci"]))
    assert r.status_code == 200 and r.json()["ttl"] == 99999 * 604800
    r = client.patch(br, json={}, headers=auth(toks["ci"]))
    assert r.status_code == 422
    missing = "/v1/projects/shop/branches/nope"
    r = client.patch(missing, json={"ttl": "2h"}, headers=auth(toks["ci"]))
    assert r.status_code == 404


def metrics(
    client: httpx.Client, token: str
) -> dict[tuple[str, tuple[Any, ...]], float]:
    r = client.get("/metrics", headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_after_a_real_gc(
    repo: Path,
    served: tuple[httpx.Client, dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, toks = served
    assert client.get("/metrics").status_code == 401
    for b in ("gone-1", "gone-2", "kept"):
        git(repo, "branch", b)
        r = client.put(f"/v1/projects/shop/branches/{b}", headers=auth(toks["ci"]))
        assert r.status_code == 201, r.text
    sizes = {
        b: Path(
            client.get(
                f"/v1/projects/shop/branches/{b}", headers=auth(toks["read"])
            ).json()["url"][5:]
        )
        .stat()
        .st_size
        for b in ("gone-1", "gone-2")
    }
    before = metrics(client, toks["read"])
    p = (("project", "shop"),)
    assert before[("branchdb_branches", p)] == 3
    assert before[("branchdb_gc_runs_total", p)] == 0
    git(repo, "branch", "-D", "gone-1", "gone-2")
    with caplog.at_level(logging.INFO, logger="branchdb.gc"):
        r = client.post("/v1/projects/shop/gc", headers=auth(toks["admin"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(c["branch"] for c in body["candidates"] if c["deleted"]) == [
        "gone-1",
        "gone-2",
    ]
    assert body["totals"]["collected_databases"] == 2
    assert body["totals"]["collected_bytes"] == sum(sizes.values())
    assert body["totals"]["runs"] == 1
    logged = [r.getMessage() for r in caplog.records if "gc deleted" in r.getMessage()]
    assert len(logged) == 2
    for b, size in sizes.items():
        assert any(
            f"{b!r}" in m and "reason=deleted" in m and f"freed {size} bytes" in m
            for m in logged
        ), logged
    after = metrics(client, toks["read"])
    d = (("project", "shop"), ("reason", "deleted"))
    assert after[("branchdb_branches", p)] == 1
    assert after[("branchdb_gc_collected_databases_total", d)] == 2
    assert after[("branchdb_gc_collected_bytes_total", d)] == sum(sizes.values())
    assert after[("branchdb_gc_runs_total", p)] == 1
    assert after[("branchdb_gc_last_run_timestamp_seconds", p)] > 0
    # Persistent: a fresh app over the same state store reports the same totals.
    r = run(repo, "gc", "--dry-run", "--json")
    assert json.loads(r.out)["totals"]["collected_databases"] == 2
