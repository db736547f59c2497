"""Configuration for containers: every secret from a ``_FILE`` too, and the first admin
token from the environment (no shell in the container needed)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from apisupport import serve_in_thread, setup_project

from branchdb.daemon.api import settings as daemon_settings
from branchdb.daemon.api import tokens
from branchdb.daemon.api.app import create_app
from branchdb.daemon.config import env
from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.store.sqlite_store import SqliteStore


def test_a_variable_or_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANCHDB_X", raising=False)
    monkeypatch.delenv("BRANCHDB_X_FILE", raising=False)
    assert env.get("BRANCHDB_X") is None
    monkeypatch.setenv("BRANCHDB_X", "plain")
    assert env.get("BRANCHDB_X") == "plain"
    secret = tmp_path / "x"
    secret.write_text("from a file\n")  # as `echo` and Kubernetes Secrets write it
    monkeypatch.setenv("BRANCHDB_X_FILE", str(secret))
    with pytest.raises(ConfigError, match="not both"):
        env.get("BRANCHDB_X")
    monkeypatch.delenv("BRANCHDB_X")
    assert env.get("BRANCHDB_X") == "from a file"
    secret.write_bytes(b"x" * (env.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="over 65536 bytes"):
        env.get("BRANCHDB_X")
    monkeypatch.setenv("BRANCHDB_X_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read"):
        env.get("BRANCHDB_X")


def test_daemon_secrets_come_from_files(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_project(repo)
    hook = tmp_path / "webhook-secret"
    hook.write_text("s3cret\n")
    state = tmp_path / "state-url"
    state.write_text("postgresql://bdb:pw@127.0.0.1/ops\n")
    monkeypatch.setenv("BRANCHDB_WEBHOOK_SECRET_FILE", str(hook))
    monkeypatch.setenv("BRANCHDB_STATE_URL_FILE", str(state))
    monkeypatch.setenv("BRANCHDB_PORT", "9123")
    loaded = daemon_settings.load(cwd=repo)
    assert loaded.projects["shop"].webhook_secret == "s3cret"
    assert loaded.state_url == "postgresql://bdb:pw@127.0.0.1/ops"
    assert loaded.port == 9123


def test_the_first_admin_token_comes_from_the_environment(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_project(repo)
    token = "bdb_" + "k" * 40
    secret = tmp_path / "admin-token"
    secret.write_text(token + "\n")
    monkeypatch.setenv("BRANCHDB_ADMIN_TOKEN_FILE", str(secret))
    monkeypatch.setenv("BRANCHDB_DAEMON_DATA_DIR", str(tmp_path / "daemon"))
    loaded = daemon_settings.load(cwd=repo)
    assert loaded.admin_token_sha256 == tokens.digest(token)

    def start_and_ask(headers: dict[str, str]) -> int:
        with serve_in_thread(create_app(loaded)) as base:
            r = httpx.get(f"{base}/v1/projects/shop/branches", headers=headers)
            return r.status_code

    assert start_and_ask({"Authorization": f"Bearer {token}"}) == 200
    assert start_and_ask({"Authorization": f"Bearer {token}"}) == 200  # idempotent
    store = SqliteStore(tmp_path / "daemon" / "state.db")
    try:
        (row,) = store.list_tokens()
        assert (row["id"], row["scope"]) == ("bootstrap", "admin")
        assert token not in repr(row)  # only its digest is stored
    finally:
        store.close()
    # A rotated Secret: the new token works, the old one no longer does.
    rotated = "bdb_" + "r" * 40
    secret.write_text(rotated)
    loaded = daemon_settings.load(cwd=repo)
    assert start_and_ask({"Authorization": f"Bearer {rotated}"}) == 200
    assert start_and_ask({"Authorization": f"Bearer {token}"}) == 401


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BRANCHDB_ADMIN_TOKEN", "hunter2", "must start with 'bdb_'"),
        ("BRANCHDB_ADMIN_TOKEN_SHA256", "abc", "64 hex digits"),
    ],
)
def test_a_bad_bootstrap_token_is_a_clear_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    setup_project(repo)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        daemon_settings.load(cwd=repo)


def test_a_libsql_server_from_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Compose does: a project whose branchdb.toml says postgres (or nothing),
    served with BRANCHDB_BACKEND=libsql and the sqld service's settings."""
    from branchdb.daemon.config.project import load

    (tmp_path / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[database]\nbackend = "postgres"\n'
    )
    key = tmp_path / "sqld_key.pem"
    for name, value in {
        "BRANCHDB_BACKEND": "libsql",
        "BRANCHDB_SQLD_URL": "http://127.0.0.1:8080",
        "BRANCHDB_SQLD_ADMIN_URL": "http://127.0.0.1:9090",
        "BRANCHDB_SQLD_KEY_FILE": str(key),
        "BRANCHDB_SQLD_PUBLIC_URL": "libsql://{namespace}.db.example.com",
    }.items():
        monkeypatch.setenv(name, value)
    config = load(cwd=tmp_path)
    assert config.database.backend == "sqld"
    assert config.libsql.server == "http://127.0.0.1:8080"
    assert config.libsql.key_file == key
    assert config.libsql.public_url == "libsql://{namespace}.db.example.com"
    monkeypatch.setenv("BRANCHDB_SQLD_PUBLIC_URL", "libsql://db.example.com")
    with pytest.raises(ConfigError, match="must contain"):
        load(cwd=tmp_path)
