"""``[state]`` in the daemon config and ``$BRANCHDB_STATE_URL``: which store is used."""

from __future__ import annotations

from pathlib import Path

import pytest
from apisupport import setup_project
from pgcluster import Cluster
from storesupport import fresh_database
from support import run

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.config import project as config_mod
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


def test_the_projects_state_section_is_shared_with_the_daemon(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """branchdb.toml's [state] is what the CLI uses; the daemon uses it too (when
    its own config names none), and refuses one that differs from its own."""
    monkeypatch.delenv("BRANCHDB_STATE_URL", raising=False)
    setup_project(repo)
    with (repo / "branchdb.toml").open("a") as f:
        f.write('\n[state]\nurl = "postgresql://u@db/ops"\nschema = "bdb"\n')
    state = config_mod.load(cwd=repo).state
    assert (state.url, state.schema) == ("postgresql://u@db/ops", "bdb")
    s = daemon_config.load(cwd=repo)
    assert (s.state_url, s.state_schema) == ("postgresql://u@db/ops", "bdb")
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'[[projects]]\npath = "{repo}"\n')
    s = daemon_config.load(cfg)
    assert (s.state_url, s.state_schema) == ("postgresql://u@db/ops", "bdb")
    cfg.write_text(
        f'[state]\nurl = "postgresql://u@db/ops"\nschema = "bdb"\n'
        f'[[projects]]\npath = "{repo}"\n'
    )
    assert daemon_config.load(cfg).state_url == "postgresql://u@db/ops"
    cfg.write_text(
        f'[state]\nurl = "postgresql://u:pw@db/ops"\n[[projects]]\npath = "{repo}"\n'
    )
    with pytest.raises(ConfigError, match="separate records") as e:
        daemon_config.load(cfg)
    assert "pw" not in str(e.value)


def test_bad_state_in_the_project_config(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANCHDB_STATE_URL", raising=False)
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[state]\nurl = "sqlite:///x"\n'
    )
    r = run(repo, "ls")
    assert r.code == 2 and "state.url must be a postgresql:// URL" in r.err
