"""Hostile input over real HTTP: branch names, malformed JSON, oversized bodies.

Every one gets a 4xx JSON error and changes nothing (no database file, no record);
branch names git allows (slashes, unicode, an encoded slash) work.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from pydantic import BaseModel

from branchdb.daemon.api.app import create_app
from branchdb.daemon.store.sqlite_store import SqliteStore

BR = "/v1/projects/shop/branches"
LIMIT = 64 * 1024
SECRET = "hostile-test-secret"


class Live:
    def __init__(self, repo: Path, base: str, token: str) -> None:
        self.repo = repo
        self.base = base
        self.token = token
        self.client = httpx.Client(base_url=base, timeout=60, headers=auth(token))

    def raw(
        self, method: str, path: str, body: bytes = b"", **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with *path* sent byte for byte (no client normalisation)."""
        u = urlsplit(self.base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            conn.putheader("Authorization", f"Bearer {self.token}")
            for k, v in headers.items():
                conn.putheader(k.replace("_", "-"), v)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def files(self) -> set[str]:
        folder = self.repo / ".branchdb" / "branches"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def records(self) -> list[str]:
        store = SqliteStore(self.repo / ".branchdb" / "state.db")
        try:
            return [r.branch for r in store.list_branches("shop")]
        finally:
            store.close()


class Echo(BaseModel):
    name: str
    count: int


@pytest.fixture
def live(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    setup_project(repo)
    monkeypatch.setenv("BRANCHDB_WEBHOOK_SECRET", SECRET)
    settings = settings_for(repo)._replace(max_body=LIMIT)
    token = make_tokens(settings)["admin"]
    app = create_app(settings)

    # A route with a JSON body, added to the real app: no route of the API takes
    # a parsed body yet, and the handlers for malformed JSON must hold for the first.
    @app.post("/v1/test/echo")
    async def echo(item: Echo) -> dict[str, object]:
        return item.model_dump()

    with serve_in_thread(app) as base:
        live = Live(repo, base, token)
        try:
            yield live
        finally:
            live.client.close()


def assert_json_error(status: int, body: bytes, want: int, kind: str) -> dict[str, str]:
    assert status == want, body
    error: dict[str, str] = json.loads(body)["error"]
    assert error["type"] == kind and error["message"], error
    return error


HOSTILE = [
    "..",
    "../../etc/passwd",
    "feature/../../x",
    "a..b",
    "nul\x00byte",
    "new\nline",
    "tab\there",
    "esc\x1b[31m",
    "del\x7f",
    "with space",
    "x" * 300,
    "-rf",
    "x.lock",
    "feature/.hidden",
    "ends.",
    "ends/",
    "a//b",
    "@",
    "a@{1}",
    "tilde~1",
    "caret^",
    "colon:x",
    "star*",
    "question?",
    "bracket[",
    "back\\slash",
]


def test_hostile_branch_names_get_400_and_change_nothing(live: Live) -> None:
    for name in HOSTILE:
        path = f"{BR}/{quote(name, safe='')}"
        for method, suffix in (
            ("PUT", ""),
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/reset"),
            ("POST", "/migrate"),
        ):
            status, _, body = live.raw(method, path + suffix)
            if "\n" in name:
                # starlette's {branch:path} never matches a newline: no route.
                assert_json_error(status, body, 404, "NotFound")
            else:
                assert_json_error(status, body, 400, "GitError")
    assert live.files() == set()
    assert live.records() == []


def test_traversal_in_raw_paths_is_refused(live: Live) -> None:
    for path in (
        f"{BR}/../../../etc/passwd",  # literal dot segments: nobody normalises them
        f"{BR}/%2e%2e/%2e%2e/state.db",
        f"{BR}/..%2f..%2fstate.db",
        f"{BR}/%00",
        f"{BR}/%0d%0aSet-Cookie:%20x",
    ):
        status, _, body = live.raw("PUT", path)
        assert 400 <= status < 500, (path, body)
        assert json.loads(body)["error"]["message"]
    assert live.files() == set() and live.records() == []


def test_slash_unicode_and_encoded_slash_names_work(live: Live) -> None:
    c = live.client
    created = c.put(f"{BR}/feature/x")
    assert created.status_code == 201, created.text
    # An encoded slash is the same branch (the server decodes the path).
    again = c.put(f"{BR}/feature%2Fx")
    assert again.status_code == 200 and again.json()["url"] == created.json()["url"]
    deep = c.put(f"{BR}/team/a/b/c")
    assert deep.status_code == 201 and deep.json()["branch"] == "team/a/b/c"
    uni = c.put(f"{BR}/{quote('fé/ünï-日本')}")
    assert uni.status_code == 201, uni.text
    assert uni.json()["branch"] == "fé/ünï-日本"
    got = c.get(f"{BR}/{quote('fé/ünï-日本')}")
    assert got.status_code == 200 and got.json()["url"] == uni.json()["url"]
    longest = "y" * 255
    assert c.put(f"{BR}/{longest}").status_code == 201
    assert sorted(live.records()) == sorted(
        ["feature/x", "team/a/b/c", "fé/ünï-日本", longest]
    )
    # A branch named like a sub-resource is still a branch for PUT/GET.
    assert c.put(f"{BR}/x/reset").status_code == 201
    assert c.get(f"{BR}/x/reset").json()["branch"] == "x/reset"


def test_malformed_json_is_400_and_invalid_json_422(live: Live) -> None:
    for bad in (b"{", b'{"name": "a", "count": }', b"\xff\xfe", b"nul\x00"):
        status, _, body = live.raw(
            "POST", "/v1/test/echo", bad, content_type="application/json"
        )
        assert_json_error(status, body, 400, "BadRequest")
    status, _, body = live.raw(
        "POST", "/v1/test/echo", b'{"name": 1}', content_type="application/json"
    )
    error = assert_json_error(status, body, 422, "ValidationError")
    assert "details" in error
    ok = live.client.post("/v1/test/echo", json={"name": "a", "count": 2})
    assert ok.status_code == 200 and ok.json() == {"name": "a", "count": 2}


def test_webhook_malformed_json_with_a_good_signature_is_400(live: Live) -> None:
    body = b'{"action": "opened", '
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    status, _, out = live.raw(
        "POST",
        "/v1/webhooks/github?project=shop",
        body,
        content_type="application/json",
        x_github_event="pull_request",
        x_github_delivery="d-1",
        x_hub_signature_256=sig,
    )
    assert_json_error(status, out, 400, "BadRequest")
    assert live.records() == []


def test_oversized_bodies_get_413_before_parsing(live: Live) -> None:
    big = b"x" * (LIMIT + 1)
    # Declared too large: refused without reading it, whatever the route.
    for path in ("/v1/test/echo", "/v1/webhooks/github?project=shop", f"{BR}/big"):
        method = "PUT" if path.startswith(BR) else "POST"
        status, headers, body = live.raw(
            method, path, big, content_type="application/json"
        )
        assert_json_error(status, body, 413, "PayloadTooLarge")
        assert headers.get("connection") == "close"

    # Chunked (no Content-Length): counted while read, refused past the limit.
    def chunks() -> Iterator[bytes]:
        for _ in range(LIMIT // 1024 + 8):
            yield b"y" * 1024

    r = httpx.post(
        f"{live.base}/v1/test/echo",
        content=chunks(),
        headers={**auth(live.token), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "PayloadTooLarge"
    # Exactly at the limit: passes and reaches the route.
    head, tail = b'{"name": "', b'", "count": 1}'
    at_limit = head + b"z" * (LIMIT - len(head) - len(tail)) + tail
    assert len(at_limit) == LIMIT
    ok = live.client.post(
        "/v1/test/echo", content=at_limit, headers={"Content-Type": "application/json"}
    )
    assert ok.status_code == 200, ok.text
    assert live.files() == set() and live.records() == []


def test_unknown_methods_and_routes_answer_json(live: Live) -> None:
    status, headers, body = live.raw("OPTIONS", "/v1/projects/shop/gc")
    assert_json_error(status, body, 405, "MethodNotAllowed")
    assert headers["allow"] == "GET, POST"
    status, _, body = live.raw("GET", "/v1/nope")
    assert_json_error(status, body, 404, "NotFound")


def test_max_body_is_configurable(repo: Path) -> None:
    from branchdb.daemon.api import settings as daemon_config
    from branchdb.daemon.core.errors import ConfigError

    setup_project(repo)
    conf = repo / "daemon.toml"
    conf.write_text(f'[server]\nmax_body = 1000\n[[projects]]\npath = "{repo}"\n')
    assert daemon_config.load(conf).max_body == 1000
    assert settings_for(repo).max_body == daemon_config.DEFAULT_MAX_BODY
    conf.write_text(f'[server]\nmax_body = 0\n[[projects]]\npath = "{repo}"\n')
    with pytest.raises(ConfigError, match="max_body"):
        daemon_config.load(conf)
