"""``[state]`` in the daemon config and ``$BRANCHDB_STATE_URL``: which store is used."""

from __future__ import annotations

from pathlib import Path

import pytest
from apisupport import setup_project
from pgcluster import Cluster
from storesupport import fresh_database
from support import run

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.store.postgres_store import PostgresStore


def _config(tmp_path: Path, repo: Path, state: str) -> Path:
    setup_project(repo)
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'{state}\n[[projects]]\npath = "{repo}"\n')
    return cfg


def test_state_section_is_read(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANCHDB_STATE_URL", raising=False)
    cfg = _config(
        tmp_path, repo, '[state]\nurl = "postgresql://u@db/ops"\nschema = "bdb"\n'
    )
    s = daemon_config.load(cfg)
    assert (s.state_url, s.state_schema) == ("postgresql://u@db/ops", "bdb")
    monkeypatch.setenv("BRANCHDB_STATE_URL", "postgres://other@db2/x")
    assert daemon_config.load(cfg).state_url == "postgres://other@db2/x"


def test_default_is_the_embedded_store(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANCHDB_STATE_URL", raising=False)
    s = daemon_config.load(_config(tmp_path, repo, ""))
    assert (s.state_url, s.state_schema) == (None, None)
    monkeypatch.setenv("BRANCHDB_STATE_URL", "postgresql://u@h/d")
    assert daemon_config.load(cwd=repo).state_url == "postgresql://u@h/d"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ('[state]\nurl = "mysql://x@y/z"\n', "state.url must be a postgresql:// URL"),
        ('[state]\nhost = "db"\n', "unknown key 'state.host'"),
        ("[state]\nurl = 5\n", "state.url must be a str"),
        ('[state]\nschema = "a b"\n', "state.schema 'a b' is not a valid name"),
        ('state = "x"\n', "state must be a table"),
    ],
)
def test_bad_state_sections_are_refused(
    tmp_path: Path,
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    state: str,
    message: str,
) -> None:
    monkeypatch.delenv("BRANCHDB_STATE_URL", raising=False)
    with pytest.raises(ConfigError, match=message):
        daemon_config.load(_config(tmp_path, repo, state))


@pytest.mark.postgres
def test_token_cli_writes_to_the_configured_state_store(
    tmp_path: Path, repo: Path, pg_cluster: Cluster
) -> None:
    with fresh_database(pg_cluster) as url:
        cfg = _config(tmp_path, repo, f'[state]\nurl = "{url}"\nschema = "ops_state"\n')
        r = run(repo, "token", "create", "--scope", "ci", "--config", str(cfg))
        assert r.code == 0, r.err
        store = PostgresStore(url, "ops_state")
        try:
            assert [t["scope"] for t in store.list_tokens()] == ["ci"]
        finally:
            store.close()
        assert not (tmp_path / ".branchdb-daemon" / "state.db").exists()
        bad = tmp_path / "bad.toml"
        bad.write_text(f'[state]\nurl = "sqlite:///x"\n[[projects]]\npath = "{repo}"\n')
        r = run(repo, "token", "ls", "--config", str(bad))
        assert r.code != 0 and "Traceback" not in r.err
        assert r.err.count("\n") == 1 and "postgresql://" in r.err
