"""Two replicas (engines on separate hosts: separate data directories, so no shared
file lock) sharing one PostgreSQL state store and one PostgreSQL server."""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgcluster import Cluster
from storesupport import fresh_database
from support import git

from branchdb.daemon.config import project as config_mod
from branchdb.daemon.core import naming
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.engine import Engine, UpResult
from branchdb.daemon.core.errors import Refused
from branchdb.daemon.gc.collector import collect
from branchdb.daemon.store.postgres_store import PostgresStore

pytestmark = pytest.mark.postgres


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Replicas:
    def __init__(self, project: str, a: Engine, b: Engine, cluster: Cluster) -> None:
        self.project = project
        self.a, self.b = a, b
        self.cluster = cluster

    def databases(self) -> set[str]:
        with psycopg.connect(self.cluster.admin_url) as c:
            rows = c.execute("SELECT datname FROM pg_database").fetchall()
        prefix = naming.pg_database(self.project, "x").rsplit("_", 2)[0]
        return {r[0] for r in rows if r[0].startswith(prefix)}


@pytest.fixture
def replicas(
    repo: Path, tmp_path: Path, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Replicas]:
    monkeypatch.delenv("BRANCHDB_PG_URL", raising=False)
    project = f"rep{secrets.token_hex(3)}"
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{project}"\n'
        f'[database]\nbackend = "postgres"\nserver = "{pg_cluster.admin_url}"\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n'
        '[branches]\nttl = "1h"\ngrace = "1h"\n'
    )
    (repo / "migrations").mkdir()
    for i in range(1, 4):
        (repo / "migrations" / f"00{i}_t{i}.sql").write_text(
            f"CREATE TABLE t{i} (id integer primary key);\n"
        )
    (repo / ".gitignore").write_text(".branchdb/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "migrations")
    other = tmp_path / "host-b"
    shutil.copytree(repo, other)  # the second host's checkout and data directory
    clock = Clock()
    with fresh_database(pg_cluster) as url:
        sa, sb = PostgresStore(url), PostgresStore(url)
        a = Engine(config_mod.load(cwd=repo), store=sa, clock=clock)
        b = Engine(config_mod.load(cwd=other), store=sb, clock=clock)
        assert a.config.data_dir != b.config.data_dir
        try:
            yield Replicas(project, a, b, pg_cluster)
        finally:
            for e in (a, b):
                for r in e.list_branches():
                    e.down(r.branch, force=True)
            sa.close()
            sb.close()


def _both(r: Replicas, fn_a: object, fn_b: object) -> list[object]:
    start = threading.Barrier(2)
    out: list[object] = [None, None]

    def run(i: int, fn: object) -> None:
        start.wait()
        try:
            out[i] = fn()  # type: ignore[operator]
        except BaseException as e:  # returned, asserted by the caller
            out[i] = e

    threads = [
        threading.Thread(target=run, args=(i, f)) for i, f in enumerate((fn_a, fn_b))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_creates_of_one_branch_on_two_replicas_make_one_database(
    replicas: Replicas,
) -> None:
    r = replicas
    for branch in ("feature/a", "feature/b", "feature/c"):
        results = _both(r, lambda b=branch: r.a.up(b), lambda b=branch: r.b.up(b))
        assert all(isinstance(x, UpResult) for x in results), results
        ups = [x for x in results if isinstance(x, UpResult)]
        assert sorted(u.created for u in ups) == [False, True]
        assert {u.record.url for u in ups} == {ups[0].record.url}
        creates = r.a.audit_log(branch=branch, action="create")
        assert len(creates) == 1
    names = {
        naming.pg_database(r.project, b)
        for b in ("feature/a", "feature/b", "feature/c")
    }
    assert r.databases() == names
    assert [x.branch for x in r.b.list_branches()] == [
        "feature/a",
        "feature/b",
        "feature/c",
    ]


def test_only_one_collector_runs_and_an_interrupted_run_is_finished_later(
    replicas: Replicas,
) -> None:
    r = replicas
    clock = r.a.clock
    assert isinstance(clock, Clock)
    for b in ("gone-1", "gone-2", "gone-3"):
        r.a.up(b)
    clock.now += 2 * 3600  # idle past the TTL (and the branches never existed in git)
    first = collect(r.a, dry_run=False)  # marks them
    assert {c.branch for c in first.candidates} == {"gone-1", "gone-2", "gone-3"}
    assert first.deleted == ()
    clock.now += 2 * 3600  # past the grace period: due

    inside, release = threading.Event(), threading.Event()

    def slow(msg: str) -> None:  # the collector of replica A, stopped mid-run
        if msg.startswith("deleted"):
            inside.set()
            assert release.wait(60)
            raise KeyboardInterrupt("collector killed after its first deletion")

    def collect_a() -> object:
        with acting("scheduler", "scheduled gc"):
            return collect(r.a, dry_run=False, progress=slow)

    holder: list[object] = []
    t = threading.Thread(target=lambda: holder.append(_catch(collect_a)))
    t.start()
    assert inside.wait(60)
    with pytest.raises(Refused, match="another collector is running"):
        collect(r.b, dry_run=False)
    assert len(collect(r.b, dry_run=True).candidates) == 2  # planning is never blocked
    release.set()
    t.join()
    assert isinstance(holder[0], KeyboardInterrupt)
    assert len(r.databases()) == 2  # one deleted before the interruption

    # Replica B re-runs: the interrupted run is finished, nothing else changes.
    with acting("scheduler", "scheduled gc"):
        done = collect(r.b, dry_run=False)
    assert len(done.deleted) == 2
    assert r.databases() == set()
    assert r.a.list_branches() == []
    assert r.a.store.gc_marks(r.project, "branch") == {}
    deletes = r.a.audit_log(action="delete")
    assert len(deletes) == 3
    assert {e.actor for e in deletes} == {"scheduler"}
    assert all(e.detail.startswith("gc ") for e in deletes)


def _catch(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except BaseException as e:  # handed to the test thread
        return e
