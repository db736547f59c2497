"""daemon/review/pg_schema on real PostgreSQL 15, beyond tables: enums, views,
functions, triggers, sequences, check and unique constraints, a type change. The
SQL turns one schema into the other; sequence positions (data) are never compared."""

from __future__ import annotations

import psycopg
import pytest
from pgcluster import Cluster

from branchdb.daemon.review import pg_schema

pytestmark = pytest.mark.postgres

BASE = """
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE people (id serial PRIMARY KEY, name text, score int CHECK (score >= 0));
CREATE VIEW named AS SELECT id, name FROM people WHERE name IS NOT NULL;
CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT upper(t) $$;
INSERT INTO people (name, score) SELECT 'p' || g, g FROM generate_series(1, 50) g;
"""
HEAD = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE people (id serial PRIMARY KEY, name text UNIQUE, score bigint
  CHECK (score >= 1), feeling mood);
CREATE VIEW named AS SELECT id, name, feeling FROM people WHERE name IS NOT NULL;
CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT upper(t) || '!' $$;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER people_touch BEFORE UPDATE ON people FOR EACH ROW EXECUTE FUNCTION touch();
CREATE SEQUENCE tickets;
"""


def _db(cluster: Cluster, name: str, script: str) -> str:
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(cluster.url(name), autocommit=True) as c:
        c.execute(script)
    return cluster.url(name)


def _changes(a: str, b: str) -> tuple[set[tuple[str, str, str]], str]:
    with psycopg.connect(a) as ca, psycopg.connect(b) as cb:
        ia, ib = pg_schema.inspect(ca), pg_schema.inspect(cb)
        found = {(c.kind, c.change, c.name) for c in pg_schema.changes(ia, ib)}
        return found, pg_schema.sql(ia, ib)


def test_objects_beyond_tables(pg_cluster: Cluster) -> None:
    base = _db(pg_cluster, "rv_base", BASE)
    head = _db(pg_cluster, "rv_head", HEAD)
    found, sql = _changes(base, head)
    assert ("enum", "changed", "public.mood") in found
    assert ("column", "changed", "public.people.score") in found
    assert ("column", "added", "public.people.feeling") in found
    assert ("unique", "added", "public.people.people_name_key") in found
    assert ("check", "changed", "public.people.people_score_check") in found
    assert ("view", "changed", "public.named") in found
    assert ("function", "changed", "public.shout(t text)") in found
    assert ("function", "added", "public.touch()") in found
    assert ("trigger", "added", "public.people.people_touch") in found
    assert ("sequence", "added", "public.tickets") in found
    # 50 rows moved base's people_id_seq; the head's never moved: not a change.
    assert not any(k == "sequence" and n.endswith("people_id_seq") for k, _, n in found)
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.encode())
    after, rest = _changes(base, head)
    assert after == set() and rest == ""
