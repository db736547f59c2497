"""``GET /metrics`` read with prometheus_client's own parser: request latency by route
template (never a branch name), operation durations by backend, jobs, webhooks."""

from __future__ import annotations

from pathlib import Path

import httpx
from apisupport import (
    auth,
    branches,
    make_tokens,
    serve_in_thread,
    settings_for,
    setup_project,
)
from prometheus_client.parser import text_string_to_metric_families

from branchdb.daemon.api.app import create_app


def scrape(
    base: str, token: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{base}/metrics", headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }


def test_requests_operations_and_jobs_are_measured(repo: Path) -> None:
    setup_project(repo)
    branches(repo, "feature/secret-name")  # the daemon reads the branch's commit
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with serve_in_thread(create_app(settings)) as base:
        ci = auth(toks["ci"])
        assert (
            httpx.put(
                f"{base}/v1/projects/shop/branches/feature/secret-name", headers=ci
            ).status_code
            == 201
        )
        assert (
            httpx.put(
                f"{base}/v1/projects/shop/branches/feature/secret-name", headers=ci
            ).status_code
            == 200
        )
        assert (
            httpx.post(
                f"{base}/v1/projects/shop/branches/feature/secret-name/reset",
                headers=ci,
            ).status_code
            == 200
        )
        assert httpx.get(f"{base}/v1/nowhere").status_code == 404
        m = scrape(base, toks["read"])
    route = "/v1/projects/{project}/branches/{branch:path}"
    put = ("method", "PUT"), ("route", route)
    assert (
        m[("branchdb_http_request_duration_seconds_count", (*put, ("status", "201")))]
        == 1
    )
    assert (
        m[("branchdb_http_request_duration_seconds_count", (*put, ("status", "200")))]
        == 1
    )
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert m[("branchdb_http_request_duration_seconds_count", unmatched)] == 1
    ops = {
        dict(labels)["operation"]: value
        for (name, labels), value in m.items()
        if name == "branchdb_operation_duration_seconds_count"
        and dict(labels)["backend"] == "libsql"
    }
    assert ops == {"create": 1, "migrate": 2, "reset": 1}
    # Label values are templates and fixed words: a branch name never becomes one.
    assert not any("secret-name" in v for _, labels in m for _, v in labels)
    assert m[("branchdb_branches", (("project", "shop"),))] == 1
    assert ("branchdb_jobs", (("status", "running"),)) in m
