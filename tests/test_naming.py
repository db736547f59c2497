from __future__ import annotations

import re

import pytest

from branchdb.daemon.core import naming

HOSTILE = [
    "main",
    "Main",
    "feature/x",
    "feature-x",
    "feature_x",
    "feature.x",
    "FEATURE/X",
    "ünïcödé/分支",
    "x" * 250,
    "x" * 249 + "y",
    "'; DROP DATABASE postgres; --",
    'a"b',
    "a b",
    "../../etc/passwd",
]


def test_branch_keys_are_file_safe_and_never_collide() -> None:
    keys = [naming.branch_key(b) for b in HOSTILE]
    assert len(set(keys)) == len(keys)
    for k in keys:
        assert re.fullmatch(r"[a-z0-9-]{1,52}", k), k


def test_pg_names_fit_63_bytes_and_never_collide() -> None:
    dbs = [naming.pg_database("shop", b) for b in HOSTILE]
    roles = [naming.pg_role("shop", b) for b in HOSTILE]
    assert len(set(dbs)) == len(dbs)
    assert len(set(roles)) == len(roles)
    assert not set(dbs) & set(roles)
    for name in dbs + roles:
        assert len(name.encode()) <= naming.PG_MAX_IDENT
        assert re.fullmatch(r"[a-z0-9_]+", name), name
        assert name.startswith(naming.PREFIX)
    # The same branch in two projects gets two databases.
    assert naming.pg_database("a", "main") != naming.pg_database("b", "main")


def test_names_are_stable() -> None:
    assert naming.branch_key("feature/x") == naming.branch_key("feature/x")
    assert naming.branch_key("feature/x").startswith("feature-x-")


def test_snapshot_names_validated() -> None:
    assert naming.snapshot_key("prod-2024") == "prod-2024"
    for bad in ["", "Prod", "a/b", "x" * 41, "-x", "a@1"]:
        with pytest.raises(ValueError):
            naming.snapshot_key(bad)
    snap = naming.pg_snapshot_database("shop" * 10, "s" * 40, 123456)
    assert len(snap) <= naming.PG_MAX_IDENT
