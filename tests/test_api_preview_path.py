"""The preview path: what a PUT without an upload applies, and when.

A CI job asks the daemon for its branch's database with ``PUT …/branches/{branch}``
(no upload). The daemon is served from a checkout of ``main``; the branch's migrations
exist only in the repository. Every test runs against real git repositories and a real
PostgreSQL 15 cluster, with drizzle migrations: ``main`` has 2, ``feature/x`` 4.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for
from hooksupport import Hook, pull_request_event, running_daemon
from pgcluster import Cluster
from support import git

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api.app import create_app
from branchdb.daemon.vcs import tree as git_tree

BR = "/v1/projects/shop/branches"
WHEN = 1795919138973

#: drizzle migrations, in order: main has the first two, feature/x all four.
MIGRATIONS = [
    ("0000_init", 'CREATE TABLE "users" ("id" serial PRIMARY KEY, "email" text);'),
    ("0001_add_bio", 'ALTER TABLE "users" ADD COLUMN "bio" text;'),
    ("0002_posts", 'CREATE TABLE "posts" ("id" serial PRIMARY KEY, "body" text);'),
    ("0003_comments", 'CREATE TABLE "comments" ("id" serial PRIMARY KEY);'),
    ("0004_likes", 'CREATE TABLE "likes" ("id" serial PRIMARY KEY);'),
]


def drizzle(n: int) -> dict[str, str]:
    """The first *n* migrations as drizzle-kit writes them (journal included)."""
    files: dict[str, str] = {}
    entries = []
    for idx, (tag, sql) in enumerate(MIGRATIONS[:n]):
        files[f"drizzle/{tag}.sql"] = sql + "\n"
        entries.append(
            {
                "idx": idx,
                "version": "7",
                "when": WHEN + idx * 1000,
                "tag": tag,
                "breakpoints": True,
            }
        )
    journal = {"version": "7", "dialect": "postgresql", "entries": entries}
    files["drizzle/meta/_journal.json"] = json.dumps(journal, indent=2) + "\n"
    return files


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class Shop:
    """The repository: main at 2 migrations; feature/x at 3 (``sha3``) then 4."""

    def __init__(self, repo: Path, name: str, admin_url: str) -> None:
        self.repo = repo
        self.name = name  # branchdb project name (the cluster is shared)
        self.admin_url = admin_url
        (repo / "branchdb.toml").write_text(
            f'[project]\nname = "{name}"\n\n'
            f'[database]\nbackend = "postgres"\nserver = "{admin_url}"\n\n'
            '[migrations]\ndir = "drizzle"\nformat = "drizzle"\n'
        )
        (repo / ".gitignore").write_text(".branchdb/\n.branchdb-daemon/\n")
        self.main = commit(repo, drizzle(2), "two migrations")
        git(repo, "checkout", "-q", "-b", "feature/x")
        self.sha3 = commit(repo, drizzle(3), "posts")
        self.sha4 = commit(repo, drizzle(4), "comments")
        git(repo, "checkout", "-q", "main")
        # main moves on without feature/x: a commit that is not on its history.
        self.main_only = commit(repo, {"NOTES": "main only\n"}, "notes")


def drop_project(admin_url: str, name: str) -> None:
    """Drop project *name*'s databases and roles: the cluster is the session's."""
    with psycopg.connect(admin_url, autocommit=True) as c:
        rows = c.execute("SELECT datname FROM pg_database").fetchall()
        for (db,) in rows:
            if db.startswith(f"bdb_{name}_"):
                c.execute(
                    psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        psycopg.sql.Identifier(db)
                    )
                )
        for (role,) in c.execute("SELECT rolname FROM pg_roles").fetchall():
            if role.startswith(f"bdbr_{name}_"):
                c.execute(
                    psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(
                        psycopg.sql.Identifier(role)
                    )
                )


@pytest.fixture
def shop(repo: Path, pg_cluster: Cluster) -> Iterator[Shop]:
    name = "pp" + repo.parent.name[-10:].replace("_", "").lower()
    yield Shop(repo, name, pg_cluster.admin_url)
    drop_project(pg_cluster.admin_url, name)


class Api:
    """A client of a daemon serving one project; paths under ``BR`` are its branches
    whatever the project is called."""

    def __init__(self, client: httpx.Client, toks: dict[str, str], name: str) -> None:
        self.client = client
        self.tokens = toks
        self.name = name

    def call(
        self, method: str, path: str, scope: str = "ci", **kw: Any
    ) -> httpx.Response:
        path = path.replace("/projects/shop/", f"/projects/{self.name}/")
        return self.client.request(method, path, headers=auth(self.tokens[scope]), **kw)


@pytest.fixture
def served(shop: Shop) -> Iterator[Api]:
    """``branchdb serve`` from the checkout of main, without a daemon config: the
    repository is the one holding the project (the README's quick start)."""
    settings = settings_for(shop.repo)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield Api(client, toks, shop.name)


def ledger(url: str) -> list[int]:
    """The ``created_at`` of every drizzle ledger row of the database at *url*."""
    with psycopg.connect(url) as c:
        rows = c.execute(
            'SELECT created_at FROM "drizzle"."__drizzle_migrations" ORDER BY id'
        ).fetchall()
    return [int(r[0]) for r in rows]


def applied_count(url: str) -> int:
    return len(ledger(url))


def tags(n: int) -> list[str]:
    return [f"{tag}.sql" for tag, _ in MIGRATIONS[:n]]


# ------------------------------------------------------------ what PUT reads


def test_put_applies_the_branchs_committed_migrations(served: Api, shop: Shop) -> None:
    """The reproduction: served from main (2 migrations), feature/x has 4."""
    assert len(list((shop.repo / "drizzle").glob("*.sql"))) == 2  # the checkout
    r = served.call("PUT", f"{BR}/feature/x")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["applied"] == tags(4)
    assert applied_count(body["url"]) == 4
    again = served.call("PUT", f"{BR}/feature/x")
    assert again.status_code == 200 and again.json()["up_to_date"] is True
    # main gets main's committed two.
    r = served.call("PUT", f"{BR}/main")
    assert r.status_code == 201 and r.json()["applied"] == tags(2), r.text


def test_put_reads_a_push_made_after_the_daemon_started(
    served: Api, shop: Shop
) -> None:
    assert served.call("PUT", f"{BR}/feature/x").status_code == 201
    git(shop.repo, "checkout", "-q", "feature/x")
    commit(shop.repo, drizzle(5), "likes")
    git(shop.repo, "checkout", "-q", "main")
    r = served.call("PUT", f"{BR}/feature/x")
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == ["0004_likes.sql"]
    assert applied_count(r.json()["url"]) == 5


def test_a_branch_the_repository_does_not_have_is_404(served: Api, shop: Shop) -> None:
    r = served.call("PUT", f"{BR}/feature/nope")
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["type"] == "NotFound"
    assert "feature/nope" in err["message"] and "repository" in err["message"]
    assert served.call("GET", BR, "read").json() == []  # nothing was created
    for verb in ("reset", "migrate"):
        r = served.call("POST", f"{BR}/feature/nope/{verb}")
        assert r.status_code == 404, r.text


def test_sha_pins_a_commit_of_the_branch(served: Api, shop: Shop) -> None:
    r = served.call("PUT", f"{BR}/feature/x", params={"sha": shop.sha3[:7]})
    assert r.status_code == 201, r.text
    assert r.json()["applied"] == tags(3)
    url = r.json()["url"]
    assert applied_count(url) == 3
    # Pinned at the tip (full sha, upper case): the fourth.
    r = served.call("PUT", f"{BR}/feature/x", params={"sha": shop.sha4.upper()})
    assert r.status_code == 200 and r.json()["applied"] == ["0003_comments.sql"]
    assert applied_count(url) == 4


@pytest.mark.parametrize(
    ("sha", "status", "words"),
    [
        ("xyz1234", 422, "sha"),
        ("abc12", 422, "sha"),  # shorter than 7
        ("a" * 65, 422, "sha"),
        ("0123456789abcdef0123456789abcdef01234567", 404, "not in"),
    ],
)
def test_sha_is_validated(
    served: Api, shop: Shop, sha: str, status: int, words: str
) -> None:
    r = served.call("PUT", f"{BR}/feature/x", params={"sha": sha})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    assert served.call("GET", BR, "read").json() == []


def test_a_sha_off_the_branchs_history_is_409(served: Api, shop: Shop) -> None:
    r = served.call("PUT", f"{BR}/feature/x", params={"sha": shop.main_only})
    assert r.status_code == 409, r.text
    assert "feature/x" in r.json()["error"]["message"]
    assert served.call("GET", BR, "read").json() == []


def test_reset_migrate_and_status_read_the_branch(served: Api, shop: Shop) -> None:
    r = served.call("PUT", f"{BR}/feature/x", params={"sha": shop.sha3})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    st = served.call("POST", f"{BR}/feature/x/status", "read")
    assert st.status_code == 200, st.text
    assert st.json()["pending"] == ["0003_comments.sql"]
    pinned = served.call(
        "POST", f"{BR}/feature/x/status", "read", params={"sha": shop.sha3}
    )
    assert pinned.status_code == 200 and pinned.json()["pending"] == []
    dry = served.call("POST", f"{BR}/feature/x/migrate", params={"dry_run": True})
    assert dry.json()["pending"] == ["0003_comments.sql"], dry.text
    r = served.call("POST", f"{BR}/feature/x/migrate")
    assert r.status_code == 200 and r.json()["applied"] == ["0003_comments.sql"]
    assert applied_count(url) == 4
    r = served.call("POST", f"{BR}/feature/x/reset")
    assert r.status_code == 200 and r.json()["applied"] == tags(4), r.text
    r = served.call("POST", f"{BR}/feature/x/reset", params={"sha": shop.sha3})
    assert r.status_code == 200 and r.json()["applied"] == tags(3), r.text
    assert applied_count(url) == 3


def test_an_upload_still_wins_and_excludes_sha(served: Api, shop: Shop) -> None:
    files = {"files": {k.removeprefix("drizzle/"): v for k, v in drizzle(1).items()}}
    r = served.call("PUT", f"{BR}/feature/x", json=files)
    assert r.status_code == 201 and r.json()["applied"] == tags(1), r.text
    r = served.call("PUT", f"{BR}/feature/x", json=files, params={"sha": shop.sha3})
    assert r.status_code == 409, r.text
    assert "sha" in r.json()["error"]["message"]


def test_fork_branches_read_the_pull_request_head(shop: Shop, tmp_path: Path) -> None:
    """``pull/<N>`` (a fork's pull request, allow_forks) is refs/pull/N/head."""
    git(shop.repo, "update-ref", "refs/pull/7/head", shop.sha3)
    with running_daemon(shop.repo, tmp_path, "allow_forks = true\n") as hook:
        r = hook.client.put(f"{BR}/pull/7", headers=auth(hook.tokens["ci"]))
        assert r.status_code == 201, r.text
        assert r.json()["applied"] == tags(3)


def test_fork_branches_need_allow_forks(shop: Shop, tmp_path: Path) -> None:
    git(shop.repo, "update-ref", "refs/pull/7/head", shop.sha3)
    with running_daemon(shop.repo, tmp_path) as hook:
        r = hook.client.put(f"{BR}/pull/7", headers=auth(hook.tokens["ci"]))
        assert r.status_code == 404, r.text


def test_without_a_repository_the_working_tree_is_the_source(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    """A project outside any git repository: its directory is all there is."""
    root = tmp_path / "plain"
    root.mkdir()
    shop = root  # not a git repository
    (shop / "branchdb.toml").write_text(
        '[project]\nname = "ppplain"\n\n'
        f'[database]\nbackend = "postgres"\nserver = "{pg_cluster.admin_url}"\n\n'
        '[migrations]\ndir = "drizzle"\nformat = "drizzle"\n'
    )
    write(shop, drizzle(3))
    settings = settings_for(shop)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        api = Api(client, toks, "ppplain")
        try:
            r = api.call("PUT", f"{BR}/feature/any")
            assert r.status_code == 201 and r.json()["applied"] == tags(3), r.text
            r = api.call("PUT", f"{BR}/feature/other", params={"sha": "abcdef1"})
            assert r.status_code == 409, r.text
            assert "repository" in r.json()["error"]["message"]
        finally:
            drop_project(pg_cluster.admin_url, "ppplain")


# ------------------------------------------------- a PUT racing the webhook


@pytest.fixture
def hook(shop: Shop, tmp_path: Path) -> Iterator[Hook]:
    with running_daemon(shop.repo, tmp_path) as h:
        yield h


def put(hook: Hook, branch: str, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=str(hook.client.base_url), timeout=60) as c:
        return c.put(f"{BR}/{branch}", headers=auth(hook.tokens["ci"]), params=params)


def race(hook: Hook, branch: str, sha: str, number: int) -> dict[str, httpx.Response]:
    """The pull request webhook for *branch* and a CI PUT of it, sent together."""
    go = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}
    event = pull_request_event("opened", branch, sha, number=number)

    def send_hook() -> None:
        go.wait()
        answers["hook"] = hook.github("pull_request", event)

    def send_put() -> None:
        go.wait()
        answers["put"] = put(hook, branch)

    threads = [threading.Thread(target=f) for f in (send_hook, send_put)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def test_a_put_racing_the_webhook_gets_the_branchs_migrations(
    hook: Hook, shop: Shop
) -> None:
    """The webhook and the CI PUT fired together, twenty times: every answer's URL
    holds the branch's four migrations, and the webhook's job succeeds too."""
    n = 20
    for i in range(n):
        git(shop.repo, "branch", f"feature/r{i}", shop.sha4)
    for i in range(n):
        branch = f"feature/r{i}"
        answers = race(hook, branch, shop.sha4, 100 + i)
        r = answers["put"]
        assert r.status_code in (200, 201), (branch, r.text)
        assert ledger(r.json()["url"]) == [WHEN + k * 1000 for k in range(4)]
        job = hook.done(answers["hook"])
        assert job["status"] == "succeeded", job
        assert job["result"]["url"] == r.json()["url"]
    assert len(hook.branches()) == n


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch, shop: Shop) -> Iterator[threading.Event]:
    """Webhook jobs at ``shop.sha3`` stop before their work until the event is set
    (as a slow fetch of a large repository would hold them)."""
    release = threading.Event()
    real = git_tree.migrations_at

    def slow(config: Any, mirror: Any, sha: str, subdir: str) -> Any:
        if sha == shop.sha3:
            release.wait(30)
        return real(config, mirror, sha, subdir)

    monkeypatch.setattr(git_tree, "migrations_at", slow)
    yield release
    release.set()


def test_a_put_waits_for_the_branchs_webhook_job(
    hook: Hook, shop: Shop, held: threading.Event
) -> None:
    """A webhook for an earlier commit is still being worked on when the PUT comes:
    the PUT answers after it, so nothing changes the database behind the answer."""
    r = hook.github(
        "pull_request", pull_request_event("opened", "feature/x", shop.sha3)
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    answers: list[httpx.Response] = []
    answered: list[float] = []

    def send_put() -> None:
        answers.append(put(hook, "feature/x"))
        answered.append(time.time())

    t = threading.Thread(target=send_put)
    t.start()
    t.join(1.0)
    assert not answers, answers[0].text if answers else ""  # still waiting
    held.set()
    t.join(60)
    r = answers[0]
    assert r.status_code == 200, r.text  # the webhook created it (with 3)
    assert r.json()["applied"] == ["0003_comments.sql"]
    job = hook.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["applied"] == tags(3)
    assert job["finished_at"] <= answered[0]
    assert applied_count(r.json()["url"]) == 4


def test_a_put_stops_waiting_with_a_clear_409(
    hook: Hook, shop: Shop, held: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    from branchdb.daemon.api import branches

    monkeypatch.setattr(branches, "TURN_TIMEOUT", 0.5)
    r = hook.github(
        "pull_request", pull_request_event("opened", "feature/x", shop.sha3)
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    started = time.monotonic()
    r = put(hook, "feature/x")
    assert time.monotonic() - started < 10
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["type"] == "Refused"
    assert "feature/x" in err["message"] and "webhook" in err["message"]
    held.set()
    job = hook.wait(job_id)
    assert job["status"] == "succeeded", job


def test_a_put_does_not_wait_for_publishing(shop: Shop, tmp_path: Path) -> None:
    """Publishing (here: a callback that is refused, retried with backoff) runs after
    the webhook's job; a PUT waits for the job, not for the publication."""
    from pgcluster import free_port

    extra = (
        "\n[projects.publish]\n"
        f'callback_url = "http://127.0.0.1:{free_port()}/hook"\n'
        'callback_secret = "callback-secret-0123456789"\n'
        "callback_attempts = 3\ncallback_backoff = 2.0\n"
    )
    with running_daemon(shop.repo, tmp_path, extra) as hook:
        r = hook.github(
            "pull_request", pull_request_event("opened", "feature/x", shop.sha4)
        )
        job = hook.done(r)
        assert job["status"] == "succeeded" and job["result"]["publish_job"], job
        started = time.monotonic()
        r = put(hook, "feature/x")
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 3
        hook.wait(job["result"]["publish_job"])


# ------------------------------------------------ a PUT confirms the database


def test_put_recreates_a_database_dropped_out_of_band(
    served: Api, shop: Shop, pg_cluster: Cluster
) -> None:
    r = served.call("PUT", f"{BR}/feature/x")
    assert r.status_code == 201, r.text
    database, url = r.json()["database"], r.json()["url"]
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(
            psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                psycopg.sql.Identifier(database)
            )
        )
    r = served.call("PUT", f"{BR}/feature/x")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True and body["up_to_date"] is False
    assert body["applied"] == tags(4)
    assert body["url"] == url  # same role and password: the URL handed out works
    assert applied_count(url) == 4
    again = served.call("PUT", f"{BR}/feature/x")
    assert again.status_code == 200 and again.json()["up_to_date"] is True


def test_put_answers_503_when_the_server_is_down(repo: Path) -> None:
    from pgcluster import start_cluster

    cluster = start_cluster()
    try:
        shop = Shop(repo, "ppdown", cluster.admin_url)
        settings = settings_for(shop.repo)
        toks = make_tokens(settings)
        with (
            serve_in_thread(create_app(settings)) as base,
            httpx.Client(base_url=base, timeout=60) as client,
        ):
            api = Api(client, toks, shop.name)
            r = api.call("PUT", f"{BR}/feature/x")
            assert r.status_code == 201, r.text
            password = r.json()["url"].split(":")[2].split("@")[0]
            cluster.stop()
            r = api.call("PUT", f"{BR}/feature/x")
            assert r.status_code == 503, r.text
            err = r.json()["error"]
            assert err["type"] == "ServerUnavailable"
            assert "cannot connect to PostgreSQL server" in err["message"]
            assert "refused" in err["message"] and password not in r.text
            for verb in ("reset", "migrate"):
                r = api.call("POST", f"{BR}/feature/x/{verb}")
                assert r.status_code == 503, r.text
    finally:
        cluster.stop()


def test_a_repository_that_cannot_be_fetched_is_503(shop: Shop, tmp_path: Path) -> None:
    """The mirror has feature/x from an earlier fetch, but the repository is gone:
    the PUT says so rather than applying what the mirror last saw."""
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(shop.repo), str(upstream))
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{tmp_path / "daemon"}"\n\n'
        f'[[projects]]\nname = "shop"\npath = "{shop.repo}"\n'
        f'repository = "{upstream}"\n'
    )
    settings = daemon_config.load(cfg)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        api = Api(client, toks, "shop")
        assert api.call("PUT", f"{BR}/feature/x", params={"sha": shop.sha3}).is_success
        shutil.rmtree(upstream)
        r = api.call("PUT", f"{BR}/feature/x")
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["type"] == "RepositoryUnavailable"
        assert str(upstream) in err["message"]
        assert (
            applied_count(api.call("GET", f"{BR}/feature/x", "read").json()["url"]) == 3
        )
