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


#: Golden names: every existing database, role and file was named by these rules. A
#: change here orphans all of them (and GC would treat them as someone else's), so a
#: change to naming needs a migration path, not a new expected value.
GOLDEN = [
    (
        "main",
        "main-0d6e4079e3",
        "bdb_shop_main_82b973c4dc",
        "bdbr_shop_main_82b973c4dc",
    ),
    (
        "feature/x",
        "feature-x-217d2bf51f",
        "bdb_shop_feature_x_68eb5bbd01",
        "bdbr_shop_feature_x_68eb5bbd01",
    ),
    (
        "ünïcödé/分支",
        "unicode-65a0e92952",
        "bdb_shop_unicode_07adfc737d",
        "bdbr_shop_unicode_07adfc737d",
    ),
    (
        "x" * 250,
        "x" * 40 + "-086d4a1c29",
        "bdb_shop_" + "x" * 24 + "_3fcdec0577",
        "bdbr_shop_" + "x" * 24 + "_3fcdec0577",
    ),
]


@pytest.mark.parametrize(("branch", "key", "database", "role"), GOLDEN)
def test_names_are_stable(branch: str, key: str, database: str, role: str) -> None:
    assert naming.branch_key(branch) == key
    assert naming.pg_database("shop", branch) == database
    assert naming.pg_role("shop", branch) == role


def test_snapshot_names_are_stable() -> None:
    assert (
        naming.pg_snapshot_database("shop", "prod", 3) == "bdbs_shop_prod_v3_78d1f012af"
    )


def test_snapshot_names_validated() -> None:
    assert naming.snapshot_key("prod-2024") == "prod-2024"
    for bad in ["", "Prod", "a/b", "x" * 41, "-x", "a@1"]:
        with pytest.raises(ValueError):
            naming.snapshot_key(bad)
    snap = naming.pg_snapshot_database("shop" * 10, "s" * 40, 123456)
    assert len(snap) <= naming.PG_MAX_IDENT


def test_docker_snapshot_images_follow_dockers_grammar() -> None:
    # Docker: lowercase path components joined by one of . _ __ -+ (none at either
    # end); a tag of word characters. Snapshot names may end in "_" or hold "___".
    component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    grammar = rf"{component}(?:/{component})*:[\w][\w.-]{{0,127}}"
    refs = set()
    for project, snap in [
        ("shop", "prod"),
        ("Shop.Web", "a_"),
        ("shop", "a___b"),
        ("x" * 63, "s" * 40),
        ("ünï", "0"),
    ]:
        ref = naming.docker_snapshot_image(project, snap, 12)
        assert re.fullmatch(grammar, ref) and len(ref) <= 255, ref
        assert ref.startswith("branchdb-snap/") and ref.endswith(":v12")
        refs.add(ref)
    assert len(refs) == 5
    assert naming.docker_snapshot_image("shop", "a_", 1) != (
        naming.docker_snapshot_image("shop", "a-", 1)
    )
    assert naming.docker_snapshot_image("shop", "prod", 3) == (
        naming.docker_snapshot_image("shop", "prod", 3)
    )
