"""Two replicas behind one address: docker-compose.yml plus
docker-compose.replicas.yml, two daemon services on different ports sharing the
PostgreSQL state store. A webhook delivered to one and redelivered to the other runs
once; a branch made through one is served by the other; garbage collection started
on both at once deletes the branch once."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from composesupport import ROOT, compose_stack, require_compose
from hooksupport import pull_request_event
from support import git
from test_compose import CONFIG, deliver, make_project, wait_job

require_compose()


def make_gc_project(project: Path) -> None:
    make_project(project)
    # A closed pull request's database goes one second after GC marks it.
    (project / "branchdb.toml").write_text(CONFIG + '\n[branches]\ngrace = "1s"\n')
    git(project, "commit", "-q", "-am", "grace")


def test_the_second_daemon_is_the_first_with_its_own_port_and_data() -> None:
    one = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    two = yaml.safe_load((ROOT / "docker-compose.replicas.yml").read_text())
    a, b = one["branchdb"], two["services"]["branchdb2"]
    assert {k: v for k, v in a.items() if k != "build"}.keys() == b.keys()
    env_a, env_b = dict(a["environment"]), dict(b["environment"])
    assert env_b.pop("BRANCHDB_PORT") != env_a.pop("BRANCHDB_PORT")
    assert env_a == env_b
    assert [v for v in a["volumes"] if not v.startswith("daemon:")] == [
        v for v in b["volumes"] if not v.startswith("daemon2:")
    ]
    for key in ("image", "user", "depends_on", "healthcheck", "network_mode"):
        assert a[key] == b[key], key


def test_two_replicas_share_branches_deliveries_and_one_collector() -> None:
    files = ("docker-compose.replicas.yml",)
    with compose_stack(
        make_gc_project, files=files, daemons=("branchdb", "branchdb2")
    ) as stack:
        one, two = stack.base("branchdb"), stack.base("branchdb2")
        auth = {"Authorization": f"Bearer {stack.token}"}
        sha = git(stack.project, "-c", "safe.directory=*", "rev-parse", "feature/pay")
        opened = pull_request_event("opened", "feature/pay", sha)
        delivery = secrets.token_hex(8)
        first = deliver(one, stack.webhook_secret, opened, delivery)
        assert first.status_code == 202, first.text
        # GitHub redelivers; the load balancer sends it to the other replica.
        again = deliver(two, stack.webhook_secret, opened, delivery)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "duplicate"
        job = wait_job(one, stack.token, first.json()["job"]["id"])
        assert job["status"] == "succeeded", job

        # Made through one, served by the other: same database, nothing re-made.
        path = "/v1/projects/shop/branches/feature/pay"
        seen = httpx.get(f"{two}{path}", headers=auth)
        assert seen.status_code == 200, seen.text
        assert seen.json()["status"] == "ready"
        put = httpx.put(f"{two}{path}", headers=auth, timeout=60)
        assert put.status_code == 200, put.text
        assert put.json()["created"] is False
        assert (
            put.json()["url"] == httpx.get(f"{one}{path}", headers=auth).json()["url"]
        )
        audit = httpx.get(
            f"{two}/v1/projects/shop/audit",
            params={"branch": "feature/pay", "action": "create"},
            headers=auth,
        ).json()
        assert len(audit) == 1, audit
        database = seen.json()["database"]

        closed = pull_request_event("closed", "feature/pay", sha, merged=True)
        r = deliver(two, stack.webhook_secret, closed, secrets.token_hex(8))
        assert r.status_code in (200, 202), r.text
        if r.status_code == 202:
            assert wait_job(two, stack.token, r.json()["job"]["id"])["status"] == (
                "succeeded"
            )
        marked = httpx.post(f"{one}/v1/projects/shop/gc", headers=auth, timeout=60)
        assert marked.status_code == 200, marked.text
        assert [c["branch"] for c in marked.json()["candidates"]] == ["feature/pay"]
        time.sleep(1.5)  # past the grace period of the mark

        # Both replicas are asked to collect at the same moment.
        answers: dict[str, httpx.Response] = {}
        go = threading.Barrier(2)

        def collect(base: str) -> None:
            go.wait()
            answers[base] = httpx.post(
                f"{base}/v1/projects/shop/gc", headers=auth, timeout=120
            )

        threads = [threading.Thread(target=collect, args=(b,)) for b in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deleted: list[Any] = []
        for base, answer in answers.items():
            # 409: the other replica held the collector's lease; never a 500.
            assert answer.status_code in (200, 409), (base, answer.text)
            if answer.status_code == 200:
                deleted += [c for c in answer.json()["candidates"] if c["deleted"]]
        assert [c["branch"] for c in deleted] == ["feature/pay"]
        deletes = httpx.get(
            f"{one}/v1/projects/shop/audit",
            params={"branch": "feature/pay", "action": "delete"},
            headers=auth,
        ).json()
        assert len(deletes) == 1, deletes
        with psycopg.connect(stack.pg_admin_url) as c:
            rows = c.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchall()
        assert rows == []
        for base in (one, two):
            assert httpx.get(f"{base}{path}", headers=auth).status_code == 404
