"""The branch URL in the forms common tools read (README: "URL forms")."""

from __future__ import annotations

import pytest

from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core.errors import ConfigError, Refused
from branchdb.daemon.core.urlforms import FORMS, convert

SQLITE = "file:/w/app/.branchdb/branches/bdb-main.db"
PG = "postgresql://bdbr_main:p%40ss@127.0.0.1:5432/bdb_main"

EXPECTED = {
    "native": (SQLITE, PG),
    "libpq": (None, PG),
    "dbmate": (
        "sqlite:/w/app/.branchdb/branches/bdb-main.db",
        "postgres://bdbr_main:p%40ss@127.0.0.1:5432/bdb_main?sslmode=prefer",
    ),
    "sqlalchemy": (
        "sqlite:////w/app/.branchdb/branches/bdb-main.db",
        "postgresql+psycopg://bdbr_main:p%40ss@127.0.0.1:5432/bdb_main",
    ),
    "jdbc": (
        "jdbc:sqlite:/w/app/.branchdb/branches/bdb-main.db",
        "jdbc:postgresql://127.0.0.1:5432/bdb_main?user=bdbr_main&password=p%40ss",
    ),
    "prisma": (SQLITE, PG),
    "path": ("/w/app/.branchdb/branches/bdb-main.db", None),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_on_both_backends(form: str) -> None:
    for url, want in zip((SQLITE, PG), EXPECTED[form], strict=True):
        if want is None:
            with pytest.raises(Refused):
                convert(url, form)
        else:
            assert convert(url, form) == want


def test_an_explicit_sslmode_is_kept() -> None:
    url = "postgresql://u:p@db.example.com/app?sslmode=verify-full"
    assert convert(url, "dbmate") == (
        "postgres://u:p@db.example.com/app?sslmode=verify-full"
    )
    assert convert(url, "jdbc").endswith("?user=u&password=p&sslmode=verify-full")


def test_url_format_config_key(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    cfg = from_mapping({"database": {"url_format": "dbmate"}}, root, None)
    assert cfg.database.url_format == "dbmate"
    with pytest.raises(ConfigError, match="url_format 'psql' is not one of"):
        from_mapping({"database": {"url_format": "psql"}}, root, None)
