"""Publishing a branch's URL: GitHub (a local stand-in) and a signed callback."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from githubstub import CallbackReceiver, GitHubStub, serve

from branchdb.daemon.api import publish
from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api.publish import Publication, PublishSettings
from branchdb.daemon.core.errors import ConfigError

TOKEN = "ghs_" + "x" * 36
SECRET = "callback-secret"
PASSWORD = "s3cr3t-pw"
URL = f"postgresql://bdb_u:{PASSWORD}@127.0.0.1:5432/bdb_shop_feature"


@pytest.fixture
def stub() -> Iterator[GitHubStub]:
    gh = GitHubStub(TOKEN)
    with serve(gh.app) as base:
        gh.base = base
        yield gh


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    cb = CallbackReceiver()
    with serve(cb.app) as base:
        cb.base = base
        yield cb


def settings(gh: GitHubStub, cb: CallbackReceiver, **kw: object) -> PublishSettings:
    base: dict[str, object] = {
        "github": ("deployment", "status", "comment"),
        "api_url": gh.base,
        "github_token": TOKEN,
        "callback_url": cb.base + "/hook",
        "callback_secret": SECRET,
        "callback_backoff": 0.01,
    }
    base.update(kw)
    return PublishSettings(**base)  # type: ignore[arg-type]


def pub(status: str = "ready", sha: str = "a" * 40) -> Publication:
    url = URL if status == "ready" else None
    return Publication("shop", "feature/x", sha, status, url, "acme/shop", 7)


def test_github_sees_no_password_and_the_comment_is_updated(
    stub: GitHubStub, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(stub, receiver)
    out = publish.publish(s, pub())
    assert all(v["ok"] for v in out.values()), out
    assert out["comment"]["updated"] is False
    (dep,) = stub.deployments.values()
    assert dep["ref"] == "a" * 40 and dep["environment"] == "branchdb/feature/x"
    (st,) = stub.deployment_statuses[dep["id"]]
    assert st["state"] == "success"
    assert st["environment_url"] == URL.replace(PASSWORD, "***")
    (cs,) = stub.statuses
    assert cs["sha"] == "a" * 40 and cs["context"] == "branchdb/feature/x"
    assert "target_url" not in stub.requests[-3]["json"]  # not an http(s) link
    for r in stub.requests:
        assert PASSWORD not in json.dumps(r["json"])
        assert r["headers"]["authorization"] == f"Bearer {TOKEN}"
        assert r["headers"]["x-github-api-version"] == "2022-11-28"
        assert r["headers"]["accept"] == "application/vnd.github+json"

    out = publish.publish(s, pub(sha="b" * 40))  # synchronize: same comment, edited
    assert out["comment"]["updated"] is True
    (comment,) = stub.comments.values()
    assert "b" * 12 in comment["body"] and PASSWORD not in comment["body"]
    assert len(stub.deployments) == 2

    # The callback gets the full URL, signed; the signature covers the timestamp.
    for req in receiver.requests:
        body = req["body"]
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(req["headers"]["x-branchdb-signature-256"], want)
        data = json.loads(body)
        assert data["url"] == URL and data["status"] == "ready"
        assert str(data["timestamp"]) == req["headers"]["x-branchdb-timestamp"]
    assert PASSWORD not in caplog.text


def test_libsql_server_token_only_in_the_callback(
    stub: GitHubStub, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A libsql server branch: GitHub gets the URL (it holds no secret), the token
    goes only to the signed callback."""
    token = "eyJhbGciOiJFZERTQSJ9.eyJpZCI6ImJkYi1zaG9wIn0.c2lnbmF0dXJl"
    url = "libsql://bdb-shop-feature-x-0123456789.db.example.com"
    p = Publication("shop", "feature/x", "a" * 40, "ready", url, "acme/shop", 7)
    out = publish.publish(settings(stub, receiver), p._replace(auth_token=token))
    assert all(v["ok"] for v in out.values()), out
    for r in stub.requests:
        assert token not in json.dumps(r["json"])
    (req,) = receiver.requests
    assert json.loads(req["body"])["auth_token"] == token
    assert token not in caplog.text


def test_api_link_mode(stub: GitHubStub, receiver: CallbackReceiver) -> None:
    s = settings(
        stub,
        receiver,
        github=("status",),
        link="api",
        daemon_url="https://branchdb.example.com",
        callback_url=None,
    )
    out = publish.publish(s, pub())
    assert out == {"status": {"ok": True, "status": stub.statuses[0]["id"]}}
    assert stub.statuses[0]["target_url"] == (
        "https://branchdb.example.com/v1/projects/shop/branches/feature/x"
    )


def test_failures_are_reported_never_raised(
    stub: GitHubStub, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "branchdb.publish")
    stub.fail_next = [502]
    receiver.fail_next = [500, 503]  # two outages, then accepted: retried
    out = publish.publish(settings(stub, receiver, github=("deployment",)), pub())
    assert out["deployment"]["ok"] is False and "502" in out["deployment"]["error"]
    assert out["callback"] == {"ok": True, "attempts": 3, "http_status": 204}

    receiver.fail_next = [400]  # a refusal is not retried
    out = publish.publish(settings(stub, receiver, github=()), pub())
    assert out["callback"]["ok"] is False and out["callback"]["attempts"] == 1

    bad = settings(stub, receiver, github_token="wrong", callback_attempts=2)
    receiver.fail_next = [500, 500]
    out = publish.publish(bad, pub())
    assert "401" in out["comment"]["error"]
    assert out["callback"] == {"ok": False, "attempts": 2, "error": "HTTP 500"}
    dead = settings(stub, receiver, github=(), callback_url="http://127.0.0.1:9/x")
    assert publish.publish(dead, pub())["callback"]["ok"] is False
    assert "failed" in caplog.text and PASSWORD not in caplog.text
    assert "wrong" not in caplog.text


def test_stub_refuses_like_github(stub: GitHubStub) -> None:
    import httpx

    h = {"Authorization": f"token {TOKEN}", "Accept": "application/vnd.github+json"}
    url = f"{stub.base}/repos/acme/shop/deployments"
    assert httpx.post(url, json={"ref": "main"}).status_code == 401
    assert httpx.post(url, json={}, headers=h).status_code == 422
    bad_version = {**h, "X-GitHub-Api-Version": "1999-01-01"}
    assert httpx.post(url, json={"ref": "x"}, headers=bad_version).status_code == 400
    assert httpx.post(url + "/999/statuses", json={}, headers=h).status_code == 404
    assert httpx.get(f"{stub.base}/nope", headers=h).json()["message"] == "Not Found"


def test_publish_config(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apisupport import setup_project

    setup_project(repo)

    def load(publish_toml: str) -> PublishSettings | None:
        cfg = tmp_path / "daemon.toml"
        cfg.write_text(
            f'[[projects]]\npath = "{repo}"\n\n[projects.publish]\n{publish_toml}'
        )
        return daemon_config.load(cfg).projects["shop"].publish

    monkeypatch.setenv("BRANCHDB_GITHUB_TOKEN_SHOP", TOKEN)
    monkeypatch.setenv("BRANCHDB_CALLBACK_SECRET_SHOP", SECRET)
    s = load('github = ["deployment", "comment"]\ncallback_url = "https://cb.test/x"\n')
    assert s is not None and s.github_token == TOKEN and s.callback_secret == SECRET
    assert s.api_url == "https://api.github.com"
    assert TOKEN not in repr(s) and SECRET not in repr(s)
    for bad in (
        'github = ["tweet"]\n',
        'link = "api"\n',
        "nope = 1\n",
        'api_url = "ftp://x"\n',
        'github = ["status"]\ngithub_token_env = "UNSET_VAR_XYZ"\n',
        'environment = "{nope}"\n',
    ):
        with pytest.raises(ConfigError):
            load(bad)


def test_gitlab_secret_from_the_environment(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apisupport import setup_project

    setup_project(repo)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'[[projects]]\npath = "{repo}"\n')
    assert daemon_config.load(cfg).projects["shop"].gitlab_secret is None
    monkeypatch.setenv("BRANCHDB_GITLAB_SECRET_SHOP", "from-env")
    assert daemon_config.load(cfg).projects["shop"].gitlab_secret == "from-env"
    cfg.write_text(f'[[projects]]\npath = "{repo}"\ngitlab_secret = "in-file"\n')
    assert daemon_config.load(cfg).projects["shop"].gitlab_secret == "in-file"
    assert daemon_config.load(cwd=repo).projects["shop"].gitlab_secret == "from-env"
