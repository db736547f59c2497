"""The postgres backend and PgSession against a real, throwaway PostgreSQL 15 cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgcluster import Cluster

from branchdb.daemon.backends.pg_admin import marker, tmp_prefix
from branchdb.daemon.backends.pg_session import PgSession, translate_placeholders
from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import BackendError, DatabaseError, Refused
from branchdb.daemon.core.models import SnapshotRecord

pytestmark = pytest.mark.postgres


def make_backend(url: str, project: str = "shop") -> PostgresBackend:
    raw = {"project": {"name": project}, "database": {"backend": "postgres"}}
    raw["database"]["server"] = url
    return PostgresBackend(from_mapping(raw, Path("/tmp"), None))


@pytest.fixture
def backend(pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> PostgresBackend:
    monkeypatch.delenv("BRANCHDB_PG_URL", raising=False)
    return make_backend(pg_cluster.admin_url)


def admin(
    cluster: Cluster, db: str = "postgres"
) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(cluster.url(db), autocommit=True)


def databases(cluster: Cluster) -> set[str]:
    with admin(cluster) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database")}


def up(b: PostgresBackend, branch: str, snap: SnapshotRecord | None = None) -> dict:
    db = naming.pg_database(b.project, branch)
    return b.create(db, branch=branch, snapshot=snap, info={})


@pytest.fixture
def source_db(pg_cluster: Cluster) -> Iterator[str]:
    """A production-like database owned by some app role, with rows."""
    with admin(pg_cluster) as c:
        c.execute("DROP DATABASE IF EXISTS prod WITH (FORCE)")
        c.execute("DROP ROLE IF EXISTS app")
        c.execute("CREATE ROLE app LOGIN PASSWORD 'apppw'")
        c.execute("CREATE DATABASE prod OWNER app")
    with psycopg.connect(pg_cluster.url("prod", "app", "apppw"), autocommit=True) as c:
        c.execute("CREATE TABLE users (id serial PRIMARY KEY, email text)")
        c.execute(
            "INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1,50) g"
        )
        c.execute("CREATE SCHEMA billing")
        c.execute("CREATE TABLE billing.invoices (id int)")
    yield pg_cluster.url("prod", "app", "apppw")
    with admin(pg_cluster) as c:
        c.execute("DROP DATABASE IF EXISTS prod WITH (FORCE)")
        c.execute("DROP ROLE IF EXISTS app")


# ------------------------------------------------------------------ PgSession
def test_translate_placeholders() -> None:
    assert translate_placeholders("SELECT ?, '?', \"a?\" , 5 % 2") == (
        "SELECT %s, '?', \"a?\" , 5 %% 2"
    )


def test_session_basics(backend: PostgresBackend) -> None:
    info = up(backend, "session")
    with PgSession(info["url"]) as s:
        assert s.dialect == "postgres"
        s.execute("CREATE TABLE t (a int, b text)")
        s.execute("INSERT INTO t VALUES (?, ?)", [1, "50% off?"])
        # params=None: sent as written, '?' and '%' untouched; scripts allowed.
        s.execute(
            "INSERT INTO t VALUES (2, 'what? 100%'); INSERT INTO t VALUES (3, 'x')"
        )
        assert s.execute("SELECT b FROM t WHERE a = ?", [1]) == [("50% off?",)]
        assert s.execute("SELECT count(*) FROM t") == [(3,)]
        with pytest.raises(RuntimeError), s.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (4, 'rolled back')")
            raise RuntimeError
        with (
            pytest.raises(DatabaseError, match="does not exist"),
            s.transaction() as tx,
        ):
            tx.execute("DELETE FROM t")
            tx.execute("SELECT * FROM nope")
        assert s.execute("SELECT count(*) FROM t") == [(3,)]
        # Outside a transaction (autocommit): statements that refuse a tx block run.
        s.execute("CREATE INDEX CONCURRENTLY t_a ON t (a)")
        s.execute("VACUUM t")
    backend.drop(naming.pg_database("shop", "session"), info)


def test_migration_lock_excludes_a_second_session(backend: PostgresBackend) -> None:
    info = up(backend, "locks")
    first, second = PgSession(info["url"]), PgSession(info["url"], lock_timeout=0.3)
    got: list[float] = []
    try:
        with first.migration_lock():
            with (
                pytest.raises(Refused, match="another migration"),
                second.migration_lock(),
            ):
                pass

            def waiter() -> None:
                third = PgSession(info["url"])
                with third.migration_lock():
                    got.append(time.monotonic())
                third.close()

            t = threading.Thread(target=waiter)
            t.start()
            time.sleep(0.5)
            released = time.monotonic()
        t.join(10)
        assert got and got[0] >= released
        with second.migration_lock():  # released: free again
            pass
    finally:
        first.close()
        second.close()
        backend.drop(naming.pg_database("shop", "locks"), info)


# ------------------------------------------------------------------ databases
def test_fresh_create_url_and_isolation(
    backend: PostgresBackend, pg_cluster: Cluster
) -> None:
    a, b = up(backend, "feature/a"), up(backend, "feature/b")
    assert a["strategy"] == "fresh" and a["url"].startswith("postgresql://bdbr_shop_")
    with psycopg.connect(a["url"], autocommit=True) as c:
        c.execute("CREATE TABLE x (id int)")  # the role owns its database
        assert c.execute("SELECT current_user").fetchone() == (a["role"],)
    db_a, db_b = a["database"], b["database"]
    assert set(backend.list_owned()) >= {db_a, db_b}
    # Role A cannot open B's database (and B's role cannot open A's).
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(pg_cluster.url(db_b, a["role"], a["password"]))
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(pg_cluster.url(db_a, b["role"], b["password"]))
    # A wrong password is really checked (scram on TCP).
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        psycopg.connect(pg_cluster.url(db_a, a["role"], "wrong"))
    with pytest.raises(Refused, match="already exists"):
        backend.create(db_a, branch="feature/a", snapshot=None, info={})
    backend.drop(db_a, a)
    backend.drop(db_b, b)
    backend.drop(db_b, b)  # idempotent
    assert not backend.exists(db_a) and db_b not in databases(pg_cluster)
    with admin(pg_cluster) as c:
        roles = {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}
    assert a["role"] not in roles and b["role"] not in roles


@pytest.mark.parametrize(
    "branch",
    ['it\'s "quoted"', "ünïcødé/分支", "x" * 250, '"; DROP DATABASE postgres; --'],
)
def test_hostile_branch_names(backend: PostgresBackend, branch: str) -> None:
    db = naming.pg_database("shop", branch)
    info = backend.create(db, branch=branch, snapshot=None, info={})
    assert len(db.encode()) <= 63 and len(info["role"].encode()) <= 63
    with psycopg.connect(info["url"]) as c:
        assert c.execute("SELECT current_database()").fetchone() == (db,)
    assert db in backend.list_owned()
    backend.drop(db, info)
    assert not backend.exists(db)


def test_foreign_databases_are_never_touched(
    backend: PostgresBackend, pg_cluster: Cluster
) -> None:
    name = naming.pg_database("shop", "foreign")
    with admin(pg_cluster) as c:
        c.execute(f'CREATE DATABASE "{name}"')
        c.execute("CREATE DATABASE bdb_looks_like_ours")
        c.execute(
            'COMMENT ON DATABASE bdb_looks_like_ours IS \'branchdb:{"project": "other", "kind": "branch"}\''
        )
    try:
        assert name not in backend.list_owned()
        assert "bdb_looks_like_ours" not in backend.list_owned()
        # A delete never reports success for a database it left in place.
        for db in (name, "bdb_looks_like_ours"):
            with pytest.raises(Refused, match="not a branch database"):
                backend.drop(db, {})
        assert {name, "bdb_looks_like_ours"} <= databases(pg_cluster)
        with pytest.raises(Refused):
            backend.create(name, branch="foreign", snapshot=None, info={})
    finally:
        with admin(pg_cluster) as c:
            c.execute(f'DROP DATABASE "{name}"')
            c.execute("DROP DATABASE bdb_looks_like_ours")


def test_interrupted_create_leaves_nothing(
    backend: PostgresBackend, pg_cluster: Cluster
) -> None:
    db = naming.pg_database("shop", "crashy")
    stale = tmp_prefix(db) + "deadbeef"
    unmarked = tmp_prefix(db) + "cafecafe"  # died between CREATE and COMMENT
    with admin(pg_cluster) as c:
        c.execute(f'CREATE DATABASE "{stale}"')
        c.execute(f'CREATE DATABASE "{unmarked}"')
        mark = marker("shop", "tmp", final=db).replace("'", "''")
        c.execute(f"COMMENT ON DATABASE \"{stale}\" IS '{mark}'")
    assert db not in backend.list_owned()  # a half-made database is never listed
    info = backend.create(db, branch="crashy", snapshot=None, info={})
    left = {d for d in databases(pg_cluster) if d.startswith(tmp_prefix(db))}
    assert left == set()
    backend.drop(db, info)


def test_connection_failures_are_clear(pg_cluster: Cluster) -> None:
    b = make_backend(
        f"postgresql://postgres:s3cret@127.0.0.1:{_closed_port()}/postgres"
    )
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:\d+ .*refused") as e:
        b.list_owned()
    assert "s3cret" not in str(e.value)
    with admin(pg_cluster) as c:
        c.execute("DROP ROLE IF EXISTS weak")
        c.execute("CREATE ROLE weak LOGIN PASSWORD 'weakpw' CREATEDB")
    weak = make_backend(pg_cluster.url("postgres", "weak", "weakpw"))
    with pytest.raises(BackendError, match="lacks CREATEROLE") as e:
        weak.list_owned()
    assert "weakpw" not in str(e.value)
    wrong = make_backend(pg_cluster.url("postgres", "weak", "nope-pw"))
    with pytest.raises(BackendError, match="wrong password") as e:
        wrong.list_owned()
    assert "nope-pw" not in str(e.value)


def _closed_port() -> int:
    from pgcluster import free_port

    return free_port()


# ------------------------------------------------------------------ snapshots
def test_snapshot_clone_reset_and_isolation(
    backend: PostgresBackend, pg_cluster: Cluster, source_db: str
) -> None:
    # A live session holding a transaction (and a row lock) on the source.
    live = psycopg.connect(source_db)
    live.execute("SELECT * FROM users WHERE id = 1 FOR UPDATE")
    with admin(pg_cluster, "prod") as c:
        before = c.execute(
            "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        ).fetchone()
    snap = backend.snapshot_create("prod", 1, source_db)
    live.rollback()
    live.close()
    with admin(pg_cluster, "prod") as c:
        after = c.execute(
            "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables"
        ).fetchone()
    assert before == after  # nothing written to the source
    assert snap.location == naming.pg_snapshot_database("shop", "prod", 1)
    assert snap.size_bytes > 0 and "apppw" not in snap.source
    with pytest.raises(Refused, match="already exists"):
        backend.snapshot_create("prod", 1, source_db)

    info = up(backend, "feature/clone", snap)
    assert info["strategy"] in ("WAL_LOG", "FILE_COPY")
    with psycopg.connect(info["url"], autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM users").fetchone() == (50,)
        # The branch role owns the cloned objects and schema public (not the
        # database: the admin does), so it can migrate them.
        c.execute("ALTER TABLE users ADD COLUMN name text")
        c.execute("ALTER TABLE billing.invoices ADD COLUMN total int")
        c.execute("DROP SCHEMA billing CASCADE")
        c.execute("CREATE TABLE coupons (id int)")
        owners = c.execute(
            "SELECT d.datdba::regrole::text, n.nspowner::regrole::text "
            "FROM pg_database d, pg_namespace n "
            "WHERE d.datname = current_database() AND n.nspname = 'public'"
        ).fetchone()
        assert owners == ("postgres", info["role"])
    # Nobody connects to the snapshot: not the branch role, not even the admin.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_cluster.url(snap.location, info["role"], info["password"]))
    with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
        psycopg.connect(pg_cluster.url(snap.location))
    # The snapshot also refuses CONNECT to PUBLIC, should it ever be unsealed.
    with admin(pg_cluster) as c:
        acl = c.execute(
            "SELECT datacl::text FROM pg_database WHERE datname = %s", [snap.location]
        ).fetchone()
    assert acl is not None and "=c" not in acl[0].split(",")[0]

    # reset: drop and re-create with the same info keeps the URL valid.
    db = info["database"]
    backend.drop(db, info)  # drops the role too; create re-makes it from info
    again = backend.create(db, branch="feature/clone", snapshot=snap, info=info)
    assert again["url"] == info["url"]
    with psycopg.connect(again["url"]) as c:
        assert c.execute("SELECT count(*) FROM users").fetchone() == (50,)
        cols = c.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'users' AND column_name = 'name'"
        ).fetchone()
        assert cols == (0,)
    backend.drop(db, again)
    backend.snapshot_drop(snap)
    assert snap.location not in databases(pg_cluster)


def test_clone_refuses_unsealed_snapshot(
    backend: PostgresBackend, pg_cluster: Cluster
) -> None:
    with admin(pg_cluster) as c:
        c.execute("CREATE DATABASE not_sealed")
    snap = SnapshotRecord("shop", "x", 1, "postgres", "not_sealed", 0.0, "test")
    try:
        with pytest.raises(Refused, match="not sealed"):
            up(backend, "from-unsealed", snap)
        assert naming.pg_database("shop", "from-unsealed") not in databases(pg_cluster)
    finally:
        with admin(pg_cluster) as c:
            c.execute("DROP DATABASE not_sealed")
            c.execute(
                f'DROP ROLE IF EXISTS "{naming.pg_role("shop", "from-unsealed")}"'
            )


def test_non_superuser_admin_with_createdb_createrole(
    pg_cluster: Cluster, source_db: str
) -> None:
    with admin(pg_cluster) as c:
        c.execute("DROP ROLE IF EXISTS bdb_admin")
        c.execute("CREATE ROLE bdb_admin LOGIN PASSWORD 'adminpw' CREATEDB CREATEROLE")
    b = make_backend(pg_cluster.url("postgres", "bdb_admin", "adminpw"), "team")
    snap = b.snapshot_create("prod", 1, source_db)
    fresh = up(b, "fresh")
    clone = up(b, "clone", snap)
    with psycopg.connect(clone["url"], autocommit=True) as c:
        c.execute("ALTER TABLE users ADD COLUMN name text")
    assert set(b.list_owned()) == {fresh["database"], clone["database"]}
    assert b.size_bytes(clone["database"]) > 0
    b.drop(fresh["database"], fresh)
    b.drop(clone["database"], clone)
    b.snapshot_drop(snap)
    assert b.list_owned() == []
    with admin(pg_cluster) as c:
        left = c.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'bdb%%_team_%%'"
        ).fetchall()
        assert left == []
        c.execute("DROP ROLE bdb_admin")
