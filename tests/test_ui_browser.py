"""The dashboard in a real headless Chromium against a real daemon (uvicorn).

One daemon serves a real git repository with SQL migrations; branches are made
through the API (``PUT``), one from a snapshot; a GC run collects one branch (the
history) and another branch's git branch is deleted (a candidate). The browser
signs in with pasted tokens, reads the pages, resets a branch and watches its job
finish live (htmx), and is refused what its token or its form may not do.
Screenshots of the main views go to ``build/screenshots`` (see :mod:`uisupport`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from support import git
from uisupport import chromium, csrf_of, require_browser, shot

from branchdb.daemon.api.app import create_app
from branchdb.daemon.config import project as project_config
from branchdb.daemon.core.engine import Engine


class Served(NamedTuple):
    base: str
    repo: Path
    tokens: dict[str, str]
    client: httpx.Client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_browser()
    root = tmp_path_factory.mktemp("ui")
    repo = root / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    setup_project(repo)
    with (repo / "branchdb.toml").open("a") as f:
        f.write('\n[branches]\ngrace = "1s"\nttl = "7d"\nprotected = ["main"]\n')
    git(repo, "commit", "-qam", "grace")
    for name in ("feature/a", "feature/b", "old/gone", "stale/x", "main"):
        if name != "main":
            git(repo, "branch", name)
    seed = root / "seed.db"
    with sqlite3.connect(seed) as db:
        db.execute("CREATE TABLE plans (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO plans (name) VALUES ('free'), ('pro')")
    settings = settings_for(repo)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        admin, ci = auth(toks["admin"]), auth(toks["ci"])
        r = client.post(
            "/v1/projects/shop/snapshots",
            json={"name": "seed", "source": str(seed)},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        for name in ("main", "feature/a", "old/gone", "stale/x"):
            r = client.put(f"/v1/projects/shop/branches/{name}", headers=ci)
            assert r.status_code == 201, r.text
        r = client.put(
            "/v1/projects/shop/branches/feature/b",
            params={"from": "seed@1"},
            headers=ci,
        )
        assert r.status_code == 201, r.text
        # History: stale/x's git branch goes, a run marks it, the next deletes it.
        git(repo, "branch", "-D", "stale/x")
        assert client.post("/v1/projects/shop/gc", headers=admin).status_code == 200
        time.sleep(1.2)
        r = client.post("/v1/projects/shop/gc", headers=admin)
        assert [c["branch"] for c in r.json()["candidates"] if c["deleted"]] == [
            "stale/x"
        ]
        # A candidate: old/gone's git branch is deleted now (not yet marked).
        git(repo, "branch", "-D", "old/gone")
        yield Served(base, repo, toks, client)


@pytest.fixture(scope="module")
def browser(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("profile")) as driver:
        yield driver


def sign_in(driver: Any, served: Served, scope: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{served.base}/ui/")
    assert "/ui/login" in driver.current_url  # no session: sent to sign in
    field = driver.find_element(By.ID, "token")
    field.send_keys(served.tokens[scope])
    field.submit()
    wait_for(driver, lambda d: d.current_url.endswith("/ui/"))


def wait_for(driver: Any, condition: Any, timeout: float = 20) -> Any:
    """Poll *condition* until true; an element htmx just swapped out (stale) is
    only a reason to look again."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition)


def job_status(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "job-status").text)


def text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def audit_count(served: Served, branch: str, action: str) -> int:
    r = served.client.get(
        "/v1/projects/shop/audit",
        params={"branch": branch, "action": action},
        headers=auth(served.tokens["read"]),
    )
    assert r.status_code == 200, r.text
    return len(r.json())


def test_sign_in_and_see_the_branches_made_through_the_api(
    served: Served, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(f"{served.base}/ui/login")
    driver.find_element(By.ID, "token").send_keys("bdb_not-a-token")
    driver.find_element(By.ID, "token").submit()
    assert "not valid" in text(driver)
    shot(driver, "login")

    sign_in(driver, served, "ci")
    # The cookie: HttpOnly, SameSite=Strict, and not the token.
    cookie = driver.get_cookie("branchdb_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert served.tokens["ci"] not in cookie["value"]
    assert "4 branch databases" in text(driver)
    shot(driver, "projects")

    driver.find_element(By.CSS_SELECTOR, "a.card").click()
    rows = driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
    names = [r.find_element(By.CSS_SELECTOR, "th").text for r in rows]
    assert names == ["feature/a", "feature/b", "main", "old/gone"]
    body = text(driver)
    assert "seed@1" in body and "protected" in body and "1 w · in 7 d" in body
    # Sortable: by source, descending, puts the snapshot's branch first.
    driver.get(f"{served.base}/ui/p/shop?sort=source&dir=desc")
    first = driver.find_element(By.CSS_SELECTOR, "table tbody tr th").text
    assert first == "feature/b"
    driver.get(f"{served.base}/ui/p/shop")
    # Each row's pending count is loaded as the row comes into view (htmx).
    wait_for(
        driver,
        lambda d: (
            "applied, 0 pending"
            in (d.find_element(By.ID, "mig-1").get_attribute("title") or "")
        ),
    )
    shot(driver, "branches")
    # Exact times on hover.
    stamp = driver.find_element(By.CSS_SELECTOR, "table tbody time")
    assert stamp.get_attribute("title").endswith("UTC")

    driver.get(f"{served.base}/ui/p/shop/snapshots")
    row = driver.find_element(By.CSS_SELECTOR, "table tbody tr").text
    assert "seed@1" in row and row.split()[-2:] != []
    shot(driver, "snapshots")


def test_reset_a_branch_and_watch_its_job_finish(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, served, "ci")
    driver.get(f"{served.base}/ui/p/shop/b/feature/a")
    # htmx loads the live status into the page.
    wait_for(driver, lambda d: "Pending" in text(d))
    assert "Pending\nnone" in text(driver)
    shot(driver, "branch")
    before = audit_count(served, "feature/a", "reset")

    # Hold the branch's lock: the reset job waits, visibly running, until freed.
    engine = Engine(project_config.load(served.repo / "branchdb.toml"))
    with engine.lock("feature/a"):
        driver.find_element(By.ID, "reset").click()
        driver.switch_to.alert.accept()  # "Reset feature/a?" (ui.js)
        wait_for(driver, lambda d: "/ui/jobs/" in d.current_url)
        wait_for(driver, lambda d: "waiting for another branchdb" in text(d))
        assert wait_for(driver, job_status) == "running"  # held: it cannot finish
        driver.execute_script("window.stillTheSamePage = true")
        shot(driver, "job-running")
    # Progress arrives in place: the same document, updated by htmx.
    wait_for(driver, lambda d: job_status(d) == "succeeded")
    assert driver.execute_script("return window.stillTheSamePage") is True
    assert "applying 002_orders.sql" in text(driver)
    shot(driver, "job")
    assert audit_count(served, "feature/a", "reset") == before + 1

    driver.get(f"{served.base}/ui/jobs")
    assert "succeeded" in text(driver)
    shot(driver, "jobs")
    driver.get(f"{served.base}/ui/p/shop/audit?action=reset")
    assert "feature/a" in text(driver) and "token:" in text(driver)
    shot(driver, "audit")


def test_gc_candidate_with_its_evidence_and_history(
    served: Served, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, served, "read")
    driver.get(f"{served.base}/ui/p/shop/gc")
    rows = driver.find_elements(By.CSS_SELECTOR, "#gc-candidates tbody tr")
    found = {r.find_element(By.CSS_SELECTOR, "th").text: r.text for r in rows}
    assert list(found) == ["old/gone"]
    assert "deleted" in found["old/gone"]
    evidence = driver.find_element(By.CSS_SELECTOR, "#gc-candidates .evidence").text
    assert "old/gone" in evidence or "git" in evidence, evidence
    # History: the collected stale/x, one bar with a database today.
    assert "1 database collected in all" in text(driver)
    bars = driver.find_elements(By.CSS_SELECTOR, ".chart rect")
    assert len(bars) == 14
    assert float(bars[-1].get_attribute("height")) > 0
    assert not driver.find_elements(By.ID, "gc-run")  # admin only: not offered
    shot(driver, "gc")


def test_a_read_token_is_not_offered_and_is_refused_actions(
    served: Served, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, served, "read")
    driver.get(f"{served.base}/ui/p/shop/b/feature/b")
    assert not driver.find_elements(By.ID, "reset")
    assert not driver.find_elements(By.ID, "delete")
    assert "can look, not change" in text(driver)
    # Posted by hand anyway (with the session's valid CSRF token): refused.
    csrf = csrf_of(driver.page_source)
    before = audit_count(served, "feature/b", "delete")
    driver.execute_script(
        """
        const f = document.createElement('form');
        f.method = 'post'; f.action = '/ui/p/shop/delete';
        for (const [k, v] of [['csrf', arguments[0]], ['branch', 'feature/b']]) {
          const i = document.createElement('input');
          i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
        }
        document.body.appendChild(f); f.submit();
        """,
        csrf,
    )
    wait_for(driver, lambda d: "403" in d.find_element(By.TAG_NAME, "h1").text)
    assert "has scope 'read'; this needs 'ci'" in text(driver)
    shot(driver, "refused")
    assert audit_count(served, "feature/b", "delete") == before
    r = served.client.get(
        "/v1/projects/shop/branches/feature/b", headers=auth(served.tokens["read"])
    )
    assert r.status_code == 200  # still there


def test_a_form_without_its_csrf_token_is_refused(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, served, "ci")
    driver.get(f"{served.base}/ui/p/shop/b/feature/b")
    before = audit_count(served, "feature/b", "delete")
    # Strip the token from the delete form, then submit it as a user would.
    driver.execute_script(
        "document.querySelector('#delete').form"
        ".querySelector('input[name=csrf]').remove()"
    )
    driver.find_element(By.ID, "delete").click()
    driver.switch_to.alert.accept()
    wait_for(driver, lambda d: "403" in d.find_element(By.TAG_NAME, "h1").text)
    assert "CSRF" in text(driver)
    # A wrong token is no better than none.
    driver.get(f"{served.base}/ui/p/shop/b/feature/b")
    driver.execute_script(
        "document.querySelector('#delete').form"
        ".querySelector('input[name=csrf]').value = 'forged'"
    )
    driver.find_element(By.ID, "delete").click()
    driver.switch_to.alert.accept()
    wait_for(driver, lambda d: "403" in d.find_element(By.TAG_NAME, "h1").text)
    assert audit_count(served, "feature/b", "delete") == before


def test_phone_width_and_no_inline_script(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    sign_in(driver, served, "ci")
    driver.set_window_size(390, 844)
    try:
        driver.get(f"{served.base}/ui/p/shop")
        # The page itself does not scroll sideways; the table scrolls in its box.
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth"
            " - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        shot(driver, "branches-phone")
    finally:
        driver.set_window_size(1280, 900)
    # Keyboard: the first Tab lands on "Skip to content", Enter moves focus to main.
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{served.base}/ui/p/shop")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = driver.switch_to.active_element
    assert focused.text == "Skip to content"
    focused.send_keys(Keys.ENTER)
    assert driver.switch_to.active_element.get_attribute("id") == "main"
    # No page visited by this module broke the policy (the console says so).
    violations = [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"]
    ]
    assert violations == []
    # The policy forbids inline scripts, and the page has none.
    r = served.client.get("/ui/login")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in r.headers["content-security-policy"]
    assert not [
        s
        for s in driver.find_elements(By.TAG_NAME, "script")
        if not s.get_attribute("src")
    ]
