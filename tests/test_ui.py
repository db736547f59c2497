"""The dashboard over plain HTTP (a real daemon under uvicorn): the setting that
turns it off, what stays out of the OpenAPI, sessions, masking and revealing a
password, and the sign-in form's own checks. The browser flows are in
test_ui_browser.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from apisupport import (
    branches,
    make_tokens,
    serve_in_thread,
    settings_for,
    setup_project,
    wait_up,
)
from hooksupport import commit_on_branch

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api import tokens
from branchdb.daemon.api.app import create_app
from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.store.sqlite_store import SqliteStore
from branchdb.daemon.ui import data

SECRET = "s3cr3t-p%40ss"  # percent-encoded in the URL: "s3cr3t-p@ss"


class Daemon(NamedTuple):
    base: str
    tokens: dict[str, str]
    state: Path


@pytest.fixture
def daemon(repo: Path) -> Iterator[Daemon]:
    setup_project(repo)
    branches(repo, "feature/a")
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with serve_in_thread(create_app(settings)) as base:
        # After start-up recovery, which forgets a record whose database is missing.
        wait_up(base, path="/v1/ready")
        # A branch whose URL carries a password (as a PostgreSQL branch's does).
        store = SqliteStore(settings.data_dir / "state.db")
        now = time.time()
        store.put_branch(
            BranchRecord(
                "shop",
                "feature/pg",
                "bdb_shop_feature_pg",
                "libsql",
                "fresh",
                "ready",
                now,
                now,
                url=f"postgresql://bdb_role:{SECRET}@127.0.0.1:5432/bdb_db",
            )
        )
        store.close()
        yield Daemon(base, toks, settings.data_dir / "state.db")


@contextmanager
def sign_in(base: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/ui/login")
        r = client.post("/ui/login", data={"token": token, "csrf": csrf(page.text)})
        assert r.status_code == 303, r.text
        yield client


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_ui_off_by_setting(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_project(repo)
    monkeypatch.setenv("BRANCHDB_UI", "off")
    settings = settings_for(repo)
    assert settings.ui is False
    with serve_in_thread(create_app(settings)) as base:
        r = httpx.get(f"{base}/ui/login")
        assert r.status_code == 404 and r.json()["error"]["type"] == "NotFound"
        assert httpx.get(f"{base}/ui/static/htmx.min.js").status_code == 404


def test_ui_setting_in_the_daemon_config(repo: Path, tmp_path: Path) -> None:
    setup_project(repo)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'[server]\nui = false\n[[projects]]\npath = "{repo}"\n')
    assert daemon_config.load(cfg).ui is False
    cfg.write_text(f'[server]\nui = "no"\n[[projects]]\npath = "{repo}"\n')
    with pytest.raises(ConfigError, match=r"server\.ui must be a bool"):
        daemon_config.load(cfg)


def test_ui_routes_are_outside_the_openapi(daemon: Daemon) -> None:
    schema = httpx.get(f"{daemon.base}/openapi.json").json()
    assert schema["paths"] and not [p for p in schema["paths"] if "/ui" in p]
    r = httpx.get(f"{daemon.base}/ui/login")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    js = httpx.get(f"{daemon.base}/ui/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:200]
    # Other paths under /ui/ answer an HTML 404.
    r = httpx.get(f"{daemon.base}/ui/no/such/page")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]


def test_sessions_are_signed_and_end_with_their_token(daemon: Daemon) -> None:
    with sign_in(daemon.base, daemon.tokens["ci"]) as client:
        _session_ends(daemon, client)


def _session_ends(daemon: Daemon, client: httpx.Client) -> None:
    assert client.get("/ui/p/shop").status_code == 200
    cookie = client.cookies["branchdb_session"]
    sid, _, sig = cookie.partition(".")
    # A cookie with another signature is no session: back to sign in.
    forged = httpx.get(
        f"{daemon.base}/ui/p/shop",
        cookies={"branchdb_session": f"{sid}.{'0' * len(sig)}"},
    )
    assert forged.status_code == 303 and "/ui/login?next=" in forged.headers["location"]
    # Revoking the token ends its sessions.
    store = SqliteStore(daemon.state)
    match = tokens.verify(store, daemon.tokens["ci"])
    assert match is not None and tokens.revoke(store, match.id)
    store.close()
    time.sleep(1.1)  # the token table is re-read at most every second
    r = client.get("/ui/p/shop")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_sign_in_checks_its_form(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.base) as client:
        page = client.get("/ui/login")
        # Without the double-submit token: refused, no session.
        r = client.post("/ui/login", data={"token": daemon.tokens["admin"]})
        assert r.status_code == 403 and "branchdb_session" not in r.headers.get(
            "set-cookie", ""
        )
        # Somewhere off the dashboard is never where sign-in sends you.
        r = client.post(
            "/ui/login",
            data={
                "token": daemon.tokens["read"],
                "csrf": csrf(page.text),
                "next": "//evil.example/ui/",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        assert (
            client.post(
                "/ui/login",
                content=b"x" * 20000,
                headers={"content-type": "application/x-www-form-urlencoded"},
            ).status_code
            == 400
        )


def test_a_password_shows_only_on_reveal_and_only_for_ci(daemon: Daemon) -> None:
    with (
        sign_in(daemon.base, daemon.tokens["ci"]) as ci,
        sign_in(daemon.base, daemon.tokens["read"]) as read,
    ):
        _reveal(ci, read)


def _reveal(ci: httpx.Client, read: httpx.Client) -> None:
    plain = "s3cr3t-p@ss"
    page = ci.get("/ui/p/shop/b/feature/pg")
    assert page.status_code == 200
    assert SECRET not in page.text and plain not in page.text
    assert data.MASK in page.text and 'id="reveal"' in page.text
    shown = ci.post(
        "/ui/p/shop/reveal", data={"csrf": csrf(page.text), "branch": "feature/pg"}
    )
    assert shown.status_code == 200 and SECRET in shown.text
    assert shown.headers["cache-control"] == "no-store"

    page = read.get("/ui/p/shop/b/feature/pg")
    assert SECRET not in page.text and 'id="reveal"' not in page.text
    refused = read.post(
        "/ui/p/shop/reveal", data={"csrf": csrf(page.text), "branch": "feature/pg"}
    )
    assert refused.status_code == 403 and SECRET not in refused.text


def test_mask_hides_every_form_of_the_secret() -> None:
    rec = BranchRecord(
        "p",
        "b",
        "d",
        "postgres",
        "fresh",
        "ready",
        0,
        0,
        url="postgresql://u:p%40ss@h:5432/d",
        info={"auth_token": "jwt.x.y"},
    )
    found = data.secrets_of(rec)
    assert found == ["p@ss", "p%40ss", "jwt.x.y"]
    jdbc = "jdbc:postgresql://h:5432/d?user=u&password=p%40ss"
    assert "p%40ss" not in data.mask(jdbc, found)
    assert (
        data.mask("DATABASE_URL=postgresql://u:p@ss@h/d", found).count(data.MASK) == 1
    )


def test_a_protected_branch_needs_the_explicit_force_box(daemon: Daemon) -> None:
    api = {"Authorization": f"Bearer {daemon.tokens['ci']}"}
    r = httpx.put(f"{daemon.base}/v1/projects/shop/branches/main", headers=api)
    assert r.status_code == 201, r.text
    with sign_in(daemon.base, daemon.tokens["ci"]) as ci:
        page = ci.get("/ui/p/shop/b/main")
        assert "it is protected: delete anyway" in page.text
        token = csrf(page.text)
        r = ci.post("/ui/p/shop/delete", data={"csrf": token, "branch": "main"})
        assert r.status_code == 409 and "protected" in r.text
        assert ci.get("/ui/p/shop/b/main").status_code == 200
        r = ci.post(
            "/ui/p/shop/delete", data={"csrf": token, "branch": "main", "force": "1"}
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/p/shop?deleted=main"
        assert ci.get("/ui/p/shop/b/main").status_code == 404


def test_a_token_limited_to_other_projects_sees_none_of_this_one(
    daemon: Daemon,
) -> None:
    store = SqliteStore(daemon.state)
    limited = tokens.create(store, "admin", projects=["other"])[0]
    store.close()
    with sign_in(daemon.base, limited) as client:
        home = client.get("/ui/")
        assert home.status_code == 200 and "reaches no project" in home.text
        for path in ("/ui/p/shop", "/ui/p/shop/b/feature/pg", "/ui/p/shop/gc"):
            r = client.get(path)
            assert r.status_code == 403 and "limited to project" in r.text, path


def _put(daemon: Daemon, branch: str) -> None:
    r = httpx.put(
        f"{daemon.base}/v1/projects/shop/branches/{branch}",
        headers={"Authorization": f"Bearer {daemon.tokens['ci']}"},
    )
    assert r.status_code == 201, r.text


def _branch_adding_a_column(daemon: Daemon, repo: Path, branch: str) -> None:
    """A new git branch with one migration more than main, and its database."""
    commit_on_branch(
        repo,
        branch,
        {"migrations/003_col.sql": "ALTER TABLE users ADD COLUMN nickname TEXT;\n"},
        new=True,
    )
    _put(daemon, branch)


def test_the_branch_page_shows_its_schema_diff_against_the_default_branch(
    daemon: Daemon, repo: Path
) -> None:
    _put(daemon, "main")
    _branch_adding_a_column(daemon, repo, "feature/col")
    with sign_in(daemon.base, daemon.tokens["read"]) as read:
        page = read.get("/ui/p/shop/b/feature/col")
        assert 'hx-get="/ui/p/shop/diff?branch=feature/col"' in page.text
        frag = read.get(
            "/ui/p/shop/diff",
            params={"branch": "feature/col"},
            headers={"HX-Request": "true"},
        )
        assert frag.status_code == 200
        assert "1 schema change" in frag.text and "nickname" in frag.text
        assert "<html" not in frag.text  # the fragment alone, for htmx
        # The default branch against itself: said in place, not an error page.
        same = read.get("/ui/p/shop/diff", params={"branch": "main"})
        assert same.status_code == 200 and "No schema review" in same.text


def test_the_branch_table_loads_pending_migrations_per_row(
    daemon: Daemon, repo: Path
) -> None:
    _branch_adding_a_column(daemon, repo, "feature/p")
    # A commit after the database was made: one migration pending on the branch.
    commit_on_branch(
        repo,
        "feature/p",
        {"migrations/004_more.sql": "ALTER TABLE users ADD COLUMN bio TEXT;\n"},
        new=False,
    )
    with sign_in(daemon.base, daemon.tokens["read"]) as read:
        page = read.get("/ui/p/shop")
        assert page.status_code == 200
        rows = re.findall(r'hx-get="(/ui/p/shop/facts\?[^"]+)"', page.text)
        assert len(rows) == page.text.count("<tr>") - 1  # one per branch row
        # The libsql file backend's size is already in the table: no size asked.
        assert not any("size=1" in u for u in rows)
        url = next(u for u in rows if "branch=feature/p&" in u).replace("&amp;", "&")
        frag = read.get(url, headers={"HX-Request": "true"})
        assert frag.status_code == 200 and "<html" not in frag.text
        assert "+1 pending" in frag.text and "004_more.sql" in frag.text
        assert re.search(r'id="mig-\d+" title="3 applied, 1 pending', frag.text)
        # With size asked (a server backend's row): the size comes out of band.
        frag = read.get(
            "/ui/p/shop/facts",
            params={"branch": "feature/p", "i": 7, "size": 1},
            headers={"HX-Request": "true"},
        )
        assert 'id="size-7" hx-swap-oob="true" title="' in frag.text
        # A record whose git branch is gone says so in its cell, not as an error.
        frag = read.get("/ui/p/shop/facts", params={"branch": "feature/pg", "i": 2})
        assert frag.status_code == 200 and 'id="mig-2" class="error"' in frag.text
        # An unknown branch is a 404, a bad index a 4xx: never a 500.
        assert (
            read.get("/ui/p/shop/facts", params={"branch": "nope", "i": 1}).status_code
            == 404
        )
        assert (
            read.get("/ui/p/shop/facts", params={"branch": "main", "i": 0}).status_code
            == 422
        )
