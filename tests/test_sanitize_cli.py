"""Sanitized snapshots through the CLI on the libsql backend: fail closed, no leak,
joins still work, branches clone from it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pgcluster import Cluster
from support import run

PROD = """
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
                    full_name TEXT, phone TEXT, plan TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_email TEXT NOT NULL,
                     total INTEGER NOT NULL, note TEXT);
"""
PEOPLE = [
    ("ada.lovelace@example.org", "Ada Lovelace", "+44 20 7946 0018"),
    ("grace.hopper@example.net", "Grace Hopper", "+1 202 555 0143"),
    ("alan.turing@example.com", "Alan Turing", "+44 161 496 0777"),
    ("katherine.johnson@example.org", "Katherine Johnson", "+1 757 555 0199"),
    ("edsger.dijkstra@example.nl", "Edsger Dijkstra", "+31 20 555 0123"),
]
RULES = """
salt = "test-salt"
[tables.users]
columns.email = "email"
columns.full_name = "name"
columns.phone = "phone"
[tables.orders]
columns.customer_email = "email"
columns.note = { strategy = "null" }
"""


def make_prod(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(PROD)
    for i, (email, name, phone) in enumerate(PEOPLE * 4):
        if i < len(PEOPLE):
            con.execute(
                "INSERT INTO users (email, full_name, phone, plan) VALUES (?,?,?,?)",
                (email, name, phone, "pro" if i % 2 else "free"),
            )
        con.execute(
            "INSERT INTO orders (customer_email, total, note) VALUES (?,?,?)",
            (email, 100 + i, f"call {name} at {phone} or {email}"),
        )
    con.commit()
    con.close()


def test_sanitized_snapshot_end_to_end(repo: Path, tmp_path: Path) -> None:
    (repo / "branchdb.toml").write_text('[project]\nname = "shop"\n')
    prod = tmp_path / "prod.db"
    make_prod(prod)
    before = prod.read_bytes()

    # The detector reports what looks personal, with a rule to paste.
    r = run(repo, "snapshot", "check", "--source", str(prod), "--json")
    assert r.code == 0, r.err
    flagged = {f["column"] for f in json.loads(r.out)}
    assert {"users.email", "users.full_name", "users.phone"} <= flagged
    assert "orders.customer_email" in flagged

    # A rule missing: refused, listing the column and a suggestion; nothing published.
    partial = repo / "partial.toml"
    partial.write_text(RULES.replace('columns.phone = "phone"\n', ""))
    r = run(
        repo,
        "snapshot",
        "create",
        "prod",
        "--source",
        str(prod),
        "--rules",
        "partial.toml",
    )
    assert r.code != 0 and "users.phone" in r.err and "Traceback" not in r.err
    assert json.loads(run(repo, "snapshot", "ls", "--json").out) == []
    r = run(repo, "snapshot", "check", "--source", str(prod), "--rules", "partial.toml")
    assert r.code == 1 and "MISSING" in r.out

    (repo / "rules.toml").write_text(RULES)
    r = run(
        repo,
        "snapshot",
        "create",
        "prod",
        "--source",
        str(prod),
        "--rules",
        "rules.toml",
    )
    assert r.code == 0, r.err
    assert "sanitized 2 tables" in r.out and "verified absent" in r.out
    assert prod.read_bytes() == before  # the source is unchanged, byte for byte

    r = run(repo, "up", "preview", "--from", "prod", "--json")
    assert r.code == 0, r.err
    clone = Path(json.loads(r.out)["url"].removeprefix("file:"))
    raw = clone.read_bytes()
    for email, name, phone in PEOPLE:
        for value in (email, name, phone):
            assert value.encode() not in raw, value
    con = sqlite3.connect(clone)
    # Deterministic masking: the join on the masked email still matches every order.
    joined = con.execute(
        "SELECT count(*) FROM orders o JOIN users u ON u.email = o.customer_email"
    ).fetchone()[0]
    assert joined == 20
    assert con.execute("SELECT count(DISTINCT email) FROM users").fetchone()[0] == 5
    assert (
        con.execute("SELECT count(*) FROM orders WHERE note IS NOT NULL").fetchone()[0]
        == 0
    )
    con.close()


def test_sanitized_postgres_snapshot(repo: Path, pg_cluster: Cluster) -> None:
    import psycopg

    (repo / "branchdb.toml").write_text(
        '[project]\nname = "sanpg"\n[database]\nbackend = "postgres"\n'
    )
    (repo / "rules.toml").write_text(RULES)
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute("CREATE DATABASE sanpg_prod")
    prod = pg_cluster.url("sanpg_prod")
    with psycopg.connect(prod) as c:
        c.execute(PROD.replace("INTEGER PRIMARY KEY", "serial PRIMARY KEY"))
        for i, (email, name, phone) in enumerate(PEOPLE * 4):
            if i < len(PEOPLE):
                c.execute(
                    "INSERT INTO users (email, full_name, phone, plan) "
                    "VALUES (%s, %s, %s, 'free')",
                    (email, name, phone),
                )
            c.execute(
                "INSERT INTO orders (customer_email, total, note) VALUES (%s, %s, %s)",
                (email, 100 + i, f"call {name} at {email}"),
            )
    r = run(
        repo,
        "snapshot",
        "create",
        "prod",
        "--source",
        prod,
        "--rules",
        "rules.toml",
        env=env,
    )
    assert r.code == 0, r.err
    r = run(repo, "up", "preview", "--from", "prod", "--json", env=env)
    assert r.code == 0, r.err
    url = json.loads(r.out)["url"]
    with psycopg.connect(url) as c:
        cells = [
            str(v)
            for table in ("users", "orders")
            for row in c.execute(f"SELECT * FROM {table}").fetchall()
            for v in row
        ]
        joined = c.execute(
            "SELECT count(*) FROM orders o JOIN users u ON u.email = o.customer_email"
        ).fetchone()
    for email, name, phone in PEOPLE:
        assert not [x for x in cells if email in x or name in x or phone in x]
    assert joined == (20,)
    with psycopg.connect(prod) as c:  # the source is untouched
        assert c.execute("SELECT email FROM users ORDER BY id LIMIT 1").fetchone() == (
            PEOPLE[0][0],
        )


def test_refresh_from_definition_keeps_n_versions(repo: Path, tmp_path: Path) -> None:
    prod = tmp_path / "prod.db"
    make_prod(prod)
    (repo / "rules.toml").write_text(RULES)
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n'
        "[snapshots]\nkeep = 2\n"
        '[snapshots.prod]\nsource_env = "PROD_DB"\nrules = "rules.toml"\n'
        'schedule = "24h"\n'
    )
    env = {"PROD_DB": str(prod)}
    r = run(repo, "snapshot", "refresh", "prod")
    assert r.code != 0 and "$PROD_DB is not set" in r.err
    assert run(repo, "snapshot", "refresh", "prod", env=env).code == 0
    assert run(repo, "up", "pinned", "--from", "prod@1").code == 0  # in use: kept
    for _ in range(3):
        r = run(repo, "snapshot", "refresh", "prod", env=env)
        assert r.code == 0 and "sanitized" in r.out, r.err
    refs = [s["ref"] for s in json.loads(run(repo, "snapshot", "ls", "--json").out)]
    assert refs == ["prod@1", "prod@3", "prod@4"]  # newest 2, plus the one in use
    r = run(repo, "snapshot", "refresh", "nope")
    assert r.code == 1 and "[snapshots.nope]" in r.err


def test_daemon_schedules_refresh_and_gc(repo: Path) -> None:
    from branchdb.daemon.api import settings as daemon_config
    from branchdb.daemon.api.deps import Daemon
    from branchdb.daemon.api.scheduler import start_scheduler

    (repo / "branchdb.toml").write_text(
        '[project]\nname = "shop"\n[snapshots.prod]\nsource = "x.db"\nschedule = "6h"\n'
    )
    settings = daemon_config.load(cwd=repo)
    import asyncio

    async def jobs() -> list[tuple[str, float]]:
        scheduler = start_scheduler(Daemon(settings), 900)
        try:
            return sorted(
                (j.id, j.trigger.interval.total_seconds()) for j in scheduler.get_jobs()
            )
        finally:
            scheduler.shutdown(wait=False)

    assert asyncio.run(jobs()) == [("gc", 900.0), ("refresh:shop:prod", 21600.0)]
