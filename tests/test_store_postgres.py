"""What only the PostgreSQL state store does: its own schema in a shared database,
upgrades that two replicas may start at once, and a clear error when unreachable."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from pgcluster import Cluster
from storesupport import fresh_database

from branchdb.daemon.core.errors import BackendError, ConfigError
from branchdb.daemon.store import schema
from branchdb.daemon.store.postgres_store import PostgresStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(pg_cluster: Cluster) -> Iterator[str]:
    with fresh_database(pg_cluster) as u:
        yield u


def _objects(url: str) -> set[tuple[str, str, str]]:
    """(schema, name, kind) of every relation outside the system schemas."""
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'"
        ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def test_lives_in_its_own_schema_and_leaves_the_operators_objects(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        # The operator's own tables, some with the very names branchdb uses.
        c.execute("CREATE TABLE public.branches (id int, note text)")
        c.execute("INSERT INTO public.branches VALUES (1, 'mine')")
        c.execute("CREATE SCHEMA app")
        c.execute("CREATE TABLE app.schema_version (v int)")
        c.execute("INSERT INTO app.schema_version VALUES (42)")
    before = _objects(url)
    store = PostgresStore(url)
    store.put_token("t", "n", "read", "00", 1.0)
    store.close()
    after = _objects(url)
    assert before <= after
    assert {o[0] for o in after - before} == {"branchdb"}
    assert ("branchdb", "branches", "r") in after
    with psycopg.connect(url) as c:
        assert c.execute("SELECT * FROM public.branches").fetchall() == [(1, "mine")]
        assert c.execute("SELECT * FROM app.schema_version").fetchall() == [(42,)]


def test_a_schema_holding_foreign_objects_is_refused(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE SCHEMA branchdb")
        c.execute("CREATE TABLE branchdb.invoices (id int)")
    with pytest.raises(ConfigError, match="not branchdb's; choose another"):
        PostgresStore(url)
    with psycopg.connect(url) as c:  # untouched
        names = c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'branchdb'"
        ).fetchall()
        assert names == [("invoices",)]


def test_an_empty_schema_made_by_the_operator_is_used(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute('CREATE SCHEMA "Team-State"')
    store = PostgresStore(url, "Team-State")
    store.put_token("t", "n", "read", "00", 1.0)
    store.close()
    with psycopg.connect(url) as c:
        row = c.execute('SELECT id FROM "Team-State".api_tokens').fetchone()
        assert row == ("t",)


def test_replicas_starting_at_once_upgrade_once(url: str) -> None:
    n = 6
    start = threading.Barrier(n)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            stores.append(PostgresStore(url))
        except BaseException as e:  # collected: the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == [] and len(stores) == n
    with psycopg.connect(url) as c:
        versions = c.execute(
            "SELECT version FROM branchdb.schema_version ORDER BY version"
        ).fetchall()
    assert [v[0] for v in versions] == list(range(1, schema.SCHEMA_VERSION + 1))


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    from pgcluster import free_port

    bad = f"postgresql://bdb:hunter2@127.0.0.1:{free_port()}/state"
    with pytest.raises(BackendError, match="cannot reach the state store") as e:
        PostgresStore(bad, connect_timeout=2)
    assert "hunter2" not in str(e.value)


def test_a_dropped_connection_is_replaced(url: str, pg_cluster: Cluster) -> None:
    store = PostgresStore(url)
    store.put_token("t", "n", "read", "00", 1.0)
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'branchdb-state'",
            (dbname,),
        )
    assert [t["id"] for t in store.list_tokens()] == ["t"]  # a read is retried
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'branchdb-state'",
            (dbname,),
        )
    with pytest.raises(psycopg.OperationalError):
        store.touch_token("t", 2.0)  # a write in a transaction is not replayed
    store.touch_token("t", 3.0)  # the next call reconnects
    assert store.list_tokens()[0]["last_used_at"] == 3.0
    store.close()
