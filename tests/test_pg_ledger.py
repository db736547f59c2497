"""The hook's standard-library read of a PostgreSQL ledger fingerprint."""

from __future__ import annotations

import psycopg
import pytest
from pgcluster import Cluster

from branchdb.daemon.migrations import pg_ledger

pytestmark = pytest.mark.postgres


def test_supported_urls() -> None:
    assert pg_ledger.supported("postgresql://u:p@127.0.0.1:5432/db")
    assert pg_ledger.supported("postgres://u@h/db?sslmode=prefer")
    assert not pg_ledger.supported("postgresql://u:p@h/db?sslmode=require")
    assert not pg_ledger.supported("postgresql:///db?host=/var/run/postgresql")
    assert not pg_ledger.supported("file:/tmp/x.db")


def test_probe_agrees_with_psycopg_and_fails_closed(pg_cluster: Cluster) -> None:
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS probe_db")
        c.execute("DROP ROLE IF EXISTS probe_role")
        c.execute("CREATE ROLE probe_role LOGIN PASSWORD 'pa ss:w/rd'")
        c.execute("CREATE DATABASE probe_db OWNER probe_role")
    url = pg_cluster.url("probe_db", "probe_role", "pa%20ss%3Aw%2Frd")  # SCRAM
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE schema_migrations (version varchar(128) primary key)")
        c.execute("INSERT INTO schema_migrations VALUES ('1')")
        c.execute("CREATE TABLE users (id int)")
        [(expected,)] = c.execute(pg_ledger.fingerprint_query()).fetchall()
        first = pg_ledger.ledger_fingerprint(url)
        assert first == expected[:32]
        c.execute("INSERT INTO users VALUES (1)")  # app data: no change
        assert pg_ledger.ledger_fingerprint(url) == first
        c.execute("DELETE FROM schema_migrations")  # a rollback: a change
        assert pg_ledger.ledger_fingerprint(url) not in (None, first)
    assert pg_ledger.ledger_fingerprint(url.replace("pa%20ss", "wrong")) is None
    closed = "postgresql://probe_role:x@127.0.0.1:9/probe_db"
    assert pg_ledger.ledger_fingerprint(closed) is None
