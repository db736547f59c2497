"""Done-when: on a pull request the daemon publishes the schema review — one comment
edited in place by later pushes, or a check run with annotations on the migration
lines (GitHub's Checks API, against the stand-in) — computed on real PostgreSQL 15
against the default branch's database, which it makes first. Nothing in it is data
or a credential."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from apisupport import auth, setup_project
from githubstub import GitHubStub, serve
from gitlabstub import GitLabStub
from hooksupport import (
    Hook,
    commit_on_branch,
    merge_request_event,
    pull_request_event,
    running_daemon,
)
from pgcluster import Cluster
from support import git

from branchdb.daemon.api import publish_review

GH_TOKEN = "ghs_" + "r" * 36
FEATURE = {
    "migrations/003_profile.sql": (
        "ALTER TABLE users ADD COLUMN nickname text;\n"
        "CREATE INDEX users_email ON users (email);\n"
        "ALTER TABLE users ADD COLUMN age integer NOT NULL;\n"
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk "
        "FOREIGN KEY (user_id) REFERENCES users (id);\n"
        "INSERT INTO users (id, email, age) VALUES (1, 'secret@example.com', 41);\n"
    )
}
MORE = {"migrations/004_drop.sql": "ALTER TABLE users DROP COLUMN nickname;\n"}


@pytest.fixture
def gh() -> Iterator[GitHubStub]:
    stub = GitHubStub(GH_TOKEN)
    with serve(stub.app) as base:
        stub.base = base
        yield stub


def _daemon(
    repo: Path, tmp_path: Path, gh: GitHubStub, cluster: Cluster, mode: str
) -> Iterator[Hook]:
    setup_project(repo)
    name = "rv" + repo.parent.name[-10:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n\n'
        f'[database]\nbackend = "postgres"\nserver = "{cluster.admin_url}"\n\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n'
    )
    git(repo, "commit", "-qam", "postgres")
    extra = (
        "\n[projects.publish]\n"
        f'review = "{mode}"\n'
        f'api_url = "{gh.base}"\n'
        'daemon_url = "https://branchdb.example.com"\n'
    )
    with running_daemon(repo, tmp_path, extra) as hook:
        yield hook


@pytest.fixture
def comment_daemon(
    repo: Path,
    tmp_path: Path,
    gh: GitHubStub,
    pg_cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Hook]:
    monkeypatch.setenv("BRANCHDB_GITHUB_TOKEN", GH_TOKEN)
    yield from _daemon(repo, tmp_path, gh, pg_cluster, "comment")


@pytest.fixture
def check_daemon(
    repo: Path,
    tmp_path: Path,
    gh: GitHubStub,
    pg_cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Hook]:
    monkeypatch.setenv("BRANCHDB_GITHUB_TOKEN", GH_TOKEN)
    yield from _daemon(repo, tmp_path, gh, pg_cluster, "check")


def _open(hook: Hook, action: str, sha: str, delivery: str) -> dict:  # type: ignore[type-arg]
    event = pull_request_event(action, "feature/profile", sha)
    job = hook.done(hook.github("pull_request", event, delivery=delivery))
    assert job["status"] == "succeeded", job
    pub = hook.wait(job["result"]["publish_job"])
    assert pub["status"] == "succeeded", pub
    return pub["result"]["review"]  # type: ignore[no-any-return]


def _no_secrets(gh: GitHubStub, hook: Hook) -> None:
    sent = json.dumps([r["json"] for r in gh.requests])
    assert "secret@example.com" not in sent  # data never leaves
    for rec in hook.branches().values():
        password = psycopg.conninfo.conninfo_to_dict(rec["url"])["password"]
        assert password and password not in sent


def test_review_comment_is_edited_by_a_later_push(
    comment_daemon: Hook, gh: GitHubStub
) -> None:
    hook = comment_daemon
    sha1 = commit_on_branch(hook.upstream, "feature/profile", FEATURE, new=True)
    out = _open(hook, "opened", sha1, "d1")
    assert out == {
        "ok": True,
        "mode": "comment",
        "comment": out["comment"],
        "updated": False,
    }
    assert "main" in hook.branches()  # the default branch's database, made for it
    (c,) = gh.comments.values()
    body = c["body"]
    assert body.startswith("<!-- branchdb-review:shop/feature/profile -->")
    assert "**4 schema changes** against branch main" in body
    assert "+ column public.users.nickname: text NULL" in body
    assert "+ foreign key public.orders.orders_user_fk" in body
    for rule in (
        "require-concurrent-index-creation",
        "adding-required-field",
        "constraint-missing-not-valid",
    ):
        assert f"`{rule}`" in body
    assert (
        "`migrations/003_profile.sql` | 2 | `require-concurrent-index-creation`" in body
    )
    # A later push: the same comment, edited.
    sha2 = commit_on_branch(hook.upstream, "feature/profile", MORE, new=False)
    out = _open(hook, "synchronize", sha2, "d2")
    assert out["updated"] is True and out["comment"] == c["id"]
    assert len(gh.comments) == 1
    body = gh.comments[c["id"]]["body"]
    assert sha2[:12] in body and "nickname" not in body.split("### ")[1].split("```")[1]
    assert "`ban-drop-column`" in body
    _no_secrets(gh, hook)


def test_review_check_run_with_annotations(check_daemon: Hook, gh: GitHubStub) -> None:
    hook = check_daemon
    sha1 = commit_on_branch(hook.upstream, "feature/profile", FEATURE, new=True)
    out = _open(hook, "opened", sha1, "c1")
    assert out["ok"] and out["updated"] is False, out
    (run,) = gh.check_runs.values()
    assert run["name"] == publish_review.CHECK_NAME and run["head_sha"] == sha1
    assert run["status"] == "completed" and run["conclusion"] == "neutral"
    assert run["output"]["title"].startswith("4 schema changes, ")
    notes = gh.annotations[run["id"]]
    got = {(a["path"], a["start_line"], a["title"]) for a in notes}
    assert ("migrations/003_profile.sql", 2, "require-concurrent-index-creation") in got
    assert ("migrations/003_profile.sql", 3, "adding-required-field") in got
    assert ("migrations/003_profile.sql", 4, "constraint-missing-not-valid") in got
    assert all(a["annotation_level"] == "warning" for a in notes)
    # The same commit again (reopened): the check run is updated, not doubled.
    out = _open(hook, "reopened", sha1, "c2")
    assert out["updated"] is True and out["check_run"] == run["id"]
    assert len(gh.check_runs) == 1
    # GitHub appends an update's annotations: none sent twice.
    assert len(gh.annotations[run["id"]]) == len(notes)
    assert gh.check_runs[run["id"]]["output"]["annotations_count"] == len(notes)
    # A push is a new commit: its own check run, with the new migration's finding.
    sha2 = commit_on_branch(hook.upstream, "feature/profile", MORE, new=False)
    out = _open(hook, "synchronize", sha2, "c3")
    assert out["updated"] is False and len(gh.check_runs) == 2
    new = gh.check_runs[out["check_run"]]
    assert new["head_sha"] == sha2
    titles = {a["title"] for a in gh.annotations[new["id"]]}
    assert "ban-drop-column" in titles
    # The full text behind the daemon's API, with a read token.
    r = hook.client.get(
        "/v1/projects/shop/branches/feature/profile/diff",
        params={"format": "text"},
        headers=auth(hook.tokens["read"]),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "- column public.users.nickname" not in r.text  # added then dropped
    assert "+ column public.users.age: integer NOT NULL" in r.text
    _no_secrets(gh, hook)


def test_gitlab_merge_request_gets_one_review_note(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab: the review as one merge request note, edited by a later push (SQLite:
    branchdb's own rules). The stand-in follows GitLab's documented notes API."""
    token = "glpat-" + "g" * 20
    monkeypatch.setenv("BRANCHDB_GITLAB_TOKEN", token)
    gl = GitLabStub(token)
    setup_project(repo)
    with serve(gl.app) as base:
        extra = (
            "\n[projects.publish]\n"
            'review = "comment"\n'
            f'gitlab_api_url = "{base}/api/v4"\n'
        )
        with running_daemon(repo, tmp_path, extra) as hook:
            drop = {
                "migrations/003_drop.sql": "ALTER TABLE orders DROP COLUMN user_id;\n"
            }
            sha1 = commit_on_branch(hook.upstream, "feature/slim", drop, new=True)
            for action, sha in (("open", sha1), ("update", None)):
                if sha is None:
                    more = {
                        "migrations/004_nick.sql": "ALTER TABLE users ADD nick TEXT;\n"
                    }
                    sha = commit_on_branch(
                        hook.upstream, "feature/slim", more, new=False
                    )
                job = hook.done(
                    hook.gitlab(merge_request_event(action, "feature/slim", sha))
                )
                pub = hook.wait(job["result"]["publish_job"])
                assert pub["result"]["review"]["ok"], pub
            (note,) = gl.notes.values()
            assert note["project_id"] == 14 and note["noteable_iid"] == 3
            assert note["body"].startswith("<!-- branchdb-review:shop/feature/slim -->")
            assert sha[:12] in note["body"]  # edited by the later push
            assert "- column orders.user_id: INTEGER NULL" in note["body"]
            assert "+ column users.nick: TEXT NULL" in note["body"]
            assert "`sqlite-drop-column`" in note["body"]
            assert [r["method"] for r in gl.requests].count("PUT") == 1
            assert all(r["headers"]["private-token"] == token for r in gl.requests)
