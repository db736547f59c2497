from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from branchdb.daemon.config import project as config
from branchdb.daemon.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "branchdb.toml"
    p.write_text(text)
    return p


def test_defaults_and_walk_up(tmp_path: Path) -> None:
    write(tmp_path, '[project]\nname = "shop"\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    cfg = config.load(cwd=deep)
    assert cfg.root == tmp_path.resolve()
    assert cfg.project.name == "shop"
    assert cfg.database.backend == "libsql"
    assert cfg.migrations.format == "auto"
    assert cfg.branches.protected == ("main", "master")
    assert cfg.data_dir == tmp_path.resolve() / ".branchdb"


def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('[project]\nname = "other"\n')
    monkeypatch.setenv("BRANCHDB_CONFIG", str(other))
    assert config.load(cwd=tmp_path).project.name == "other"


def test_full_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
[project]
name = "shop"
default_branch = "trunk"
[database]
backend = "libsql"
from = "prod"
reset_on_drift = true
[migrations]
dir = "drizzle"
format = "drizzle"
[branches]
protected = ["trunk", "release/*"]
ttl = "14d"
""",
    )
    cfg = config.load(cwd=tmp_path)
    assert cfg.database.from_snapshot == "prod"
    assert cfg.database.reset_on_drift is True
    assert cfg.migrations_dir == tmp_path.resolve() / "drizzle"
    assert cfg.branches.ttl == 14 * 86400
    assert cfg.branches.protected == ("trunk", "release/*")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[database]\nbackend = 'mysql'\n", "database.backend 'mysql'"),
        ("[database]\nbackned = 'libsql'\n", "unknown key 'database.backned' (did you"),
        ("[databse]\n", "unknown key 'databse'"),
        ("[migrations]\nformat = 'liquibase'\n", "migrations.format 'liquibase'"),
        ("[branches]\nttl = 'soon'\n", "branches.ttl: invalid duration"),
        ("[branches]\nprotected = 'main'\n", "branches.protected must be a list"),
        ("[database]\nreset_on_drift = 'yes'\n", "database.reset_on_drift must be"),
        ("[project]\nname = 'a b'\n", "project.name"),
        ("[migrations]\nformat = 'command'\n", "needs migrations.command"),
        ("[project\n", "invalid TOML"),
        ("[snapshots]\nkeep = 0\n", "snapshots.keep must be"),
        ("[snapshots.prod]\nsorce = 'x'\n", "unknown key 'snapshots.prod.sorce'"),
        ("[snapshots.prod]\nsource = 'a'\nsource_env = 'B'\n", "exactly one of"),
        ("[snapshots.Prod]\nsource = 'a'\n", "invalid snapshot name"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(cwd=tmp_path)
    assert needle in str(e.value)
    assert "branchdb.toml" in str(e.value)


def test_missing_config_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="branchdb init"):
        config.load(cwd=tmp_path)


def test_parsed_config_is_cached_and_invalidated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "branchdb"

    def age(p: Path) -> None:  # as if edited a minute ago
        old = time.time() - 60
        os.utime(p, (old, old))

    p = write(tmp_path, '[project]\nname = "one"\n')
    assert config.load(cwd=tmp_path).project.name == "one"
    assert not cache.exists()  # just modified: never cached (racy)
    age(p)
    assert config.load(cwd=tmp_path).project.name == "one"
    cached = list(cache.glob("config-*.json"))
    assert len(cached) == 1
    assert config.load(cwd=tmp_path).project.name == "one"  # from the cache
    p.write_text('[project]\nname = "two"\n')  # same size: the stat still differs
    assert config.load(cwd=tmp_path).project.name == "two"
    p.write_text('[project]\nname = "three"\nbogus = 1\n')
    age(p)
    with pytest.raises(ConfigError, match="bogus"):
        config.load(cwd=tmp_path)
    # A corrupt cache is ignored, never trusted.
    cached[0].write_text("{not json")
    p.write_text('[project]\nname = "four"\n')
    age(p)
    assert config.load(cwd=tmp_path).project.name == "four"
    assert config.load(cwd=tmp_path).project.name == "four"
