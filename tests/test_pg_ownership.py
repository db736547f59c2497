"""Who owns a branch database on PostgreSQL (issue #12), on a real cluster.

The branch role's password is handed to developers and previews: connected with it,
the role must not be able to hide, rename or give away its database, nor reach
another branch's. Databases of the previous layout (owned by their branch role) are
still recognised, dropped and moved to the current one. The marker names the state
store that made a database, and a delete that dropped nothing never reports success
(engine, API, CLI).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest
from apisupport import auth, make_tokens, serve_in_thread, settings_for, setup_project
from pgcluster import Cluster
from psycopg import sql
from support import git, run
from test_gc import HOUR, Clock

from branchdb.daemon.api.app import create_app
from branchdb.daemon.backends.pg_admin import marker
from branchdb.daemon.backends.postgres_backend import PostgresBackend
from branchdb.daemon.config import project as config_mod
from branchdb.daemon.config.project import from_mapping
from branchdb.daemon.core import naming
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import Refused
from branchdb.daemon.gc.collector import collect

pytestmark = pytest.mark.postgres

STORE_A, STORE_B = "a" * 32, "b" * 32
Ident = sql.Identifier


def make(
    cluster: Cluster, project: str, store: str | None = STORE_A
) -> PostgresBackend:
    raw = {
        "project": {"name": project},
        "database": {"backend": "postgres", "server": cluster.admin_url},
    }
    return PostgresBackend(from_mapping(raw, Path("/tmp"), None), store_id=store)


def up(b: PostgresBackend, branch: str) -> dict:
    db = naming.pg_database(b.project, branch)
    return b.create(db, branch=branch, snapshot=None, info={})


def admin(cluster: Cluster, db: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(cluster.url(db), autocommit=True)


def as_role(info: dict) -> psycopg.Connection:
    """A session with the branch's own credentials, as a developer would open it."""
    return psycopg.connect(info["url"], autocommit=True)


def databases(cluster: Cluster) -> set[str]:
    with admin(cluster) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database")}


def roles(cluster: Cluster) -> set[str]:
    with admin(cluster) as c:
        return {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}


def facts(cluster: Cluster, db: str) -> tuple[str, dict, list[str], str]:
    """(owner, marker data, ACL entries, owner of schema public) of *db*."""
    with admin(cluster) as c:
        row = c.execute(
            "SELECT datdba::regrole::text, shobj_description(oid, 'pg_database'), "
            "coalesce(datacl::text[], '{}') FROM pg_database WHERE datname = %s",
            [db],
        ).fetchone()
    assert row is not None
    with admin(cluster, db) as c:
        public = c.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
    assert public is not None
    return row[0], json.loads(row[1].removeprefix("branchdb:")), row[2], public[0]


def legacy(cluster: Cluster, project: str, branch: str) -> dict:
    """A branch database exactly as the previous layout made it: owned by its
    branch role, CONNECT and TEMPORARY granted, a marker without a store."""
    db, role = naming.pg_database(project, branch), naming.pg_role(project, branch)
    with admin(cluster) as c:
        c.execute(
            sql.SQL("CREATE ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE LOGIN PASSWORD {}")
            .format(Ident(role), sql.Literal("legacy-pw"))
        )  # fmt: skip
        c.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                Ident(role), sql.Literal(marker(project, "role", branch=branch))
            )
        )
        c.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                Ident(db), Ident(role)
            )
        )
        c.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(Ident(db)))
        c.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                Ident(db), Ident(role)
            )
        )
        text = marker(project, "branch", branch=branch, role=role)
        c.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(Ident(db), sql.Literal(text))
        )
    url = cluster.url(db, role, "legacy-pw")
    return {"url": url, "role": role, "password": "legacy-pw", "database": db}


# ------------------------------------------------------------ the branch role
def test_branch_role_cannot_hide_rename_or_give_away_its_database(
    pg_cluster: Cluster,
) -> None:
    b = make(pg_cluster, "own1")
    mine, other = up(b, "mine"), up(b, "other")
    db, role = mine["database"], mine["role"]
    fmt = {"db": Ident(db), "role": Ident(role), "other": Ident(other["database"])}
    with as_role(mine) as c:
        for stmt in (
            "COMMENT ON DATABASE {db} IS ''",
            "ALTER DATABASE {db} IS_TEMPLATE true",
            "ALTER DATABASE {db} RENAME TO hidden",
            "ALTER DATABASE {db} OWNER TO {role}",
            "ALTER DATABASE {db} CONNECTION LIMIT 0",
            "ALTER DATABASE {db} SET default_transaction_read_only = on",
            "GRANT CONNECT ON DATABASE {other} TO {role}",
            "GRANT {other_role} TO {role}",
            "COMMENT ON ROLE {role} IS 'branchdb:{{}}'",
            "ALTER ROLE {role} CREATEDB CREATEROLE",
            "SET ROLE {other_role}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(sql.SQL(stmt).format(**fmt, other_role=Ident(other["role"])))
        # Without ownership a GRANT on its own database grants nothing (a warning).
        c.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(Ident(db)))
    owner, mark, acl, public = facts(pg_cluster, db)
    assert owner == "postgres" and public == role
    assert mark == {
        "project": "own1",
        "kind": "branch",
        "branch": "mine",
        "role": role,
        "store": STORE_A,
    }
    assert sorted(a.split("=")[0] for a in acl) == sorted(["postgres", role])
    # Its credentials open its own database only.
    for target in (other["database"], naming.pg_snapshot_database("own1", "x", 1)):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_cluster.url(target, role, mine["password"]))
    assert set(b.list_owned()) == {db, other["database"]}
    b.drop(db, mine)
    b.drop(other["database"], other)
    assert not {db, other["database"]} & databases(pg_cluster)
    assert not {role, other["role"]} & roles(pg_cluster)


def test_branch_role_still_migrates_what_it_was_given(pg_cluster: Cluster) -> None:
    b = make(pg_cluster, "own2")
    info = up(b, "work")
    session = b.connect(info["database"], info)
    try:
        for stmt in (
            "CREATE TABLE users (id serial PRIMARY KEY, email text)",
            "ALTER TABLE users ADD COLUMN name text",
            "CREATE INDEX CONCURRENTLY users_email ON users (email)",
            "CREATE SCHEMA drizzle",
            "CREATE TABLE drizzle.__drizzle_migrations (id serial, hash text)",
            'CREATE EXTENSION IF NOT EXISTS "pgcrypto"',  # trusted: CREATE suffices
            "CREATE TEMP TABLE scratch (x int)",
            "DROP SCHEMA public CASCADE",  # the reset scripts some tools run
            "CREATE SCHEMA public",
            "CREATE TABLE public.again (id int)",
            "VACUUM again",
        ):
            session.execute(stmt)
    finally:
        session.close()
    b.drop(info["database"], info)


# ------------------------------------------------------ the previous layout
def test_previous_layout_is_recognised_dropped_and_moved(pg_cluster: Cluster) -> None:
    b = make(pg_cluster, "own3")
    hidden, kept = (
        legacy(pg_cluster, "own3", "hidden"),
        legacy(pg_cluster, "own3", "kept"),
    )
    # As owner, the branch role erases its marker and makes its database a
    # template; the other shares its database with everyone.
    with as_role(hidden) as c:
        c.execute(
            sql.SQL("COMMENT ON DATABASE {} IS ''").format(Ident(hidden["database"]))
        )
        c.execute(
            sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(
                Ident(hidden["database"])
            )
        )
    with as_role(kept) as c:
        c.execute("CREATE TABLE before (id int)")
        c.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(
                Ident(kept["database"])
            )
        )
    assert b.list_owned() == sorted([hidden["database"], kept["database"]])
    assert b.list_owned(store=STORE_A) == []  # nobody's orphan: no store can prove it
    b.drop(hidden["database"], hidden)
    assert hidden["database"] not in databases(pg_cluster)
    assert hidden["role"] not in roles(pg_cluster)

    # Opening a migration session moves the database to the current layout.
    session = b.connect(kept["database"], kept)
    try:
        session.execute("ALTER TABLE before ADD COLUMN x int")
        session.execute("CREATE TABLE after (id int)")
    finally:
        session.close()
    owner, mark, acl, public = facts(pg_cluster, kept["database"])
    assert owner == "postgres" and public == kept["role"]
    assert mark["store"] == STORE_A and mark["branch"] == "kept"
    assert sorted(a.split("=")[0] for a in acl) == sorted(["postgres", kept["role"]])
    with as_role(kept) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(
                sql.SQL("COMMENT ON DATABASE {} IS ''").format(Ident(kept["database"]))
            )
        c.execute("DROP TABLE before, after")
    b.connect(kept["database"], kept).close()  # idempotent
    assert b.list_owned(store=STORE_A) == [kept["database"]]
    b.drop(kept["database"], kept)
    assert kept["database"] not in databases(pg_cluster)


def test_previous_layout_under_a_non_superuser_admin(pg_cluster: Cluster) -> None:
    with admin(pg_cluster) as c:
        c.execute("DROP ROLE IF EXISTS own_admin")
        c.execute("CREATE ROLE own_admin LOGIN PASSWORD 'ownpw' CREATEDB CREATEROLE")
    raw = {
        "project": {"name": "own8"},
        "database": {
            "backend": "postgres",
            "server": pg_cluster.url("postgres", "own_admin", "ownpw"),
        },
    }
    b = PostgresBackend(from_mapping(raw, Path("/tmp"), None), store_id=STORE_A)
    moved, dropped = (
        legacy(pg_cluster, "own8", "moved"),
        legacy(pg_cluster, "own8", "gone"),
    )
    assert b.list_owned() == sorted([moved["database"], dropped["database"]])
    b.connect(moved["database"], moved).close()
    owner, mark, _, public = facts(pg_cluster, moved["database"])
    assert (owner, public, mark["store"]) == ("own_admin", moved["role"], STORE_A)
    with as_role(moved) as c:
        c.execute("CREATE TABLE t (id int)")
    b.drop(dropped["database"], dropped)
    b.drop(moved["database"], moved)
    assert b.list_owned() == []
    with admin(pg_cluster) as c:
        c.execute("DROP ROLE own_admin")


# ------------------------------------------------------- the store's marker
def test_marker_names_the_store_and_scopes_orphans(pg_cluster: Cluster) -> None:
    a, b = make(pg_cluster, "own4", STORE_A), make(pg_cluster, "own4", STORE_B)
    x, y = up(a, "x"), up(b, "y")
    old = legacy(pg_cluster, "own4", "old")
    everything = sorted([x["database"], y["database"], old["database"]])
    assert a.list_owned() == b.list_owned() == everything
    assert a.list_owned(store=STORE_A) == [x["database"]]
    assert b.list_owned(store=STORE_B) == [y["database"]]
    assert set(a.activity()) == set(everything)
    with pytest.raises(Refused, match="another branchdb state store"):
        b.drop(x["database"], x)
    assert x["database"] in databases(pg_cluster)
    a.drop(x["database"], x)
    b.drop(y["database"], y)
    a.drop(old["database"], old)  # no store in its marker: whoever holds its record
    assert a.list_owned() == []


def _pg_repo(repo: Path, cluster: Cluster, name: str, clock: Clock) -> Engine:
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{name}"\n[database]\nbackend = "postgres"\n'
        f'server = "{cluster.admin_url}"\n[branches]\nttl = "1h"\ngrace = "1h"\n'
    )
    return Engine(config_mod.load(cwd=repo), clock=clock)


def test_gc_counts_as_orphans_only_what_its_store_made(
    repo: Path, pg_cluster: Cluster
) -> None:
    eng = _pg_repo(repo, pg_cluster, "own5", Clock())
    eng.up("main")
    mine = make(pg_cluster, "own5", eng.store.store_id)
    crashed = up(mine, "crashed")  # made by this store, never recorded
    theirs = up(make(pg_cluster, "own5", STORE_B), "theirs")
    older = legacy(pg_cluster, "own5", "older")
    plan = collect(eng, dry_run=True)
    assert [(c.reason, c.database) for c in plan.candidates] == [
        ("orphan", crashed["database"])
    ]
    assert plan.missing == ()
    assert {theirs["database"], older["database"]} <= databases(pg_cluster)
    make(pg_cluster, "own5", STORE_B).drop(theirs["database"], theirs)
    mine.drop(older["database"], older)
    mine.drop(crashed["database"], crashed)
    eng.down("main", force=True)


# ------------------------------------------- a delete that dropped nothing
def replace_behind_our_back(cluster: Cluster, db: str) -> None:
    """Someone drops the branch database and makes one of their own by that name."""
    with admin(cluster) as a:
        a.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(Ident(db)))
        a.execute(sql.SQL("CREATE DATABASE {}").format(Ident(db)))


def drop_by_hand(cluster: Cluster, db: str) -> None:
    with admin(cluster) as a:
        a.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(Ident(db)))


def test_gc_keeps_the_record_of_a_database_it_cannot_drop(
    repo: Path, pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    eng = _pg_repo(repo, pg_cluster, "own9", clock)
    git(repo, "branch", "stale")
    db = eng.up("stale").record.database
    replace_behind_our_back(pg_cluster, db)
    try:
        clock.now += 2 * HOUR
        assert [c.branch for c in collect(eng, dry_run=False).candidates] == ["stale"]
        clock.now += 2 * HOUR
        report = collect(eng, dry_run=False)
        assert report.deleted == () and eng.get("stale").database == db
        assert "gc kept" in caplog.text and "not a branch database" in caplog.text
    finally:
        drop_by_hand(pg_cluster, db)
    eng.down("stale")


def test_api_delete_answers_409_and_keeps_the_record(
    repo: Path, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANCHDB_PG_URL", raising=False)
    setup_project(repo)
    cfg = (repo / "branchdb.toml").read_text().replace('"shop"', '"own6"')
    (repo / "branchdb.toml").write_text(
        cfg + f'\n[database]\nbackend = "postgres"\nserver = "{pg_cluster.admin_url}"\n'
    )
    git(repo, "commit", "-qam", "postgres backend")
    settings = settings_for(repo)
    toks = make_tokens(settings)
    ci = auth(toks["ci"])
    path = "/v1/projects/own6/branches/feature/x"
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as c,
    ):
        r = c.put(path, headers=ci)
        assert r.status_code == 201, r.text
        db, role = r.json()["database"], naming.pg_role("own6", "feature/x")
        made = facts(pg_cluster, db)[1]
        # The database now says another state store made it.
        text = marker("own6", "branch", branch="feature/x", role=role, store=STORE_B)
        comment = sql.SQL("COMMENT ON DATABASE {} IS {}")
        with admin(pg_cluster) as a:
            a.execute(comment.format(Ident(db), sql.Literal(text)))
        r = c.delete(path, headers=ci)
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["type"] == "Refused"
        assert "another branchdb state store" in err["message"]
        assert c.get(path, headers=auth(toks["read"])).status_code == 200
        assert db in databases(pg_cluster)
        with admin(pg_cluster) as a:  # its own store's marker back: then it goes
            mine = marker(
                "own6",
                "branch",
                **{k: made[k] for k in made if k not in ("project", "kind")},
            )
            a.execute(comment.format(Ident(db), sql.Literal(mine)))
        assert c.delete(path, headers=ci).status_code == 200
        assert db not in databases(pg_cluster)


def test_cli_down_of_a_database_it_cannot_prove_is_its_own_fails(
    repo: Path, pg_cluster: Cluster
) -> None:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "own7"\n[database]\nbackend = "postgres"\n'
    )
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    git(repo, "checkout", "-q", "-b", "feature/y")
    r = run(repo, "up", "--json", env=env)
    assert r.code == 0, r.err
    db = json.loads(r.out)["database"]
    replace_behind_our_back(pg_cluster, db)
    try:
        r = run(repo, "down", "--yes", env=env)
        assert r.code == 1, r.out
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("branchdb: error: database ")
        assert "not a branch database" in lines[0]
        assert "feature/y" in run(repo, "ls", env=env).out  # the record is kept
    finally:
        drop_by_hand(pg_cluster, db)
    r = run(repo, "down", "--yes", env=env)  # gone now: the record goes too
    assert r.code == 0, r.err
