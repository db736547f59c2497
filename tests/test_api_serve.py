"""`branchdb serve` as a real process, and the daemon configuration file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from apisupport import auth, branches, free_port, setup_project, wait_up
from support import BRANCHDB, run, tables

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.core.errors import ConfigError


def test_serve_subprocess_creates_a_branch(repo: Path) -> None:
    setup_project(repo)
    branches(repo, "feature/preview")
    created = run(repo, "token", "create", "--scope", "ci", "--name", "preview")
    assert created.code == 0, created.err
    token = created.out.strip()
    assert token.startswith("bdb_") and "shown once" in created.err
    ls = run(repo, "token", "ls", "--json")
    assert '"scope": "ci"' in ls.out and token not in ls.out
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")}
    proc = subprocess.Popen(
        [BRANCHDB, "serve", "--port", str(port)],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(
            base,
            timeout=30,
            dead=lambda: None if proc.poll() is None else str(proc.communicate()),
        )
        r = httpx.put(
            f"{base}/v1/projects/shop/branches/feature/preview",
            headers=auth(token),
            timeout=60,
        )
        assert r.status_code == 201, r.text
        url = r.json()["url"]
        assert tables(Path(url.removeprefix("file:"))) >= {"users", "orders"}
        got = httpx.get(
            f"{base}/v1/projects/shop/branches/feature/preview", headers=auth(token)
        )
        assert got.json()["url"] == url
        # The CLI on the same project sees the daemon's branch.
        assert run(repo, "url", "feature/preview").out.strip() == url
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM for its exit status.
    assert proc.returncode in (0, -15), err
    assert "Application shutdown complete" in err
    assert f"on http://127.0.0.1:{port}" in err


def test_revoked_token_is_refused(repo: Path) -> None:
    setup_project(repo)
    run(repo, "token", "create", "--scope", "read")
    import json

    (tok,) = json.loads(run(repo, "token", "ls", "--json").out)
    assert run(repo, "token", "revoke", tok["id"]).code == 0
    assert json.loads(run(repo, "token", "ls", "--json").out) == []
    assert run(repo, "token", "revoke", tok["id"]).code == 1


def test_daemon_config_file(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_project(repo)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(
        '[server]\nhost = "0.0.0.0"\nport = 9999\n\n'
        f'[[projects]]\npath = "{repo}"\nname = "shop-prod"\n'
    )
    monkeypatch.setenv("BRANCHDB_WEBHOOK_SECRET_SHOP_PROD", "s3cret")
    monkeypatch.setenv("BRANCHDB_PORT", "7000")
    s = daemon_config.load(cfg)
    assert (s.host, s.port, s.data_dir) == (
        "0.0.0.0",
        7000,
        tmp_path / ".branchdb-daemon",
    )
    p = s.projects["shop-prod"]
    assert p.config.project.name == "shop" and p.webhook_secret == "s3cret"
    assert p.repository == str(repo.resolve()) and p.subdir == ""
    assert daemon_config.load(cfg, port=1234).port == 1234
    cfg.write_text(f'[[projects]]\npath = "{repo}"\nrepo = "x"\n')
    with pytest.raises(ConfigError, match=r"projects\.repo"):
        daemon_config.load(cfg)
    cfg.write_text("[server]\nport = 1\n")
    with pytest.raises(ConfigError, match="at least one"):
        daemon_config.load(cfg)


def test_no_config_serves_the_project_here(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_project(repo)
    monkeypatch.delenv("BRANCHDB_DAEMON_CONFIG", raising=False)
    s = daemon_config.load(cwd=repo)
    assert (s.host, s.port) == ("127.0.0.1", 8765)
    assert list(s.projects) == ["shop"] and s.data_dir == repo.resolve() / ".branchdb"
    assert s.projects["shop"].repository == str(repo.resolve())
