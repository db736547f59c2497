"""``branchdb diff``: schema diff and migration lint on real PostgreSQL 15 and SQLite.

A branch adds a column, an index (without CONCURRENTLY), a NOT NULL column and a
foreign key, and drops a column. The diff shows exactly those in text, JSON and
SQL; the SQL applied to main's database leaves no difference; the lint names each
risky statement with squawk's rule names (SQLite: the rebuild and the drop).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from pgcluster import Cluster
from support import git, run

PG_INIT = """\
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, legacy text);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);
"""
PG_FEATURE = """\
ALTER TABLE users ADD COLUMN nickname text;
CREATE INDEX users_email ON users (email);
ALTER TABLE users ADD COLUMN age integer NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);
ALTER TABLE users DROP COLUMN legacy;
"""
SQLITE_INIT = """\
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, legacy TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER);
"""
SQLITE_FEATURE = """\
ALTER TABLE users ADD COLUMN nickname TEXT;
CREATE INDEX users_email ON users (email);
ALTER TABLE users ADD COLUMN age INTEGER NOT NULL DEFAULT 0;
CREATE TABLE orders_new (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id));
INSERT INTO orders_new SELECT id, user_id FROM orders;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
ALTER TABLE users DROP COLUMN legacy;
"""


def _config(name: str, backend: str) -> str:
    extra = '[database]\nbackend = "postgres"\n' if backend == "postgres" else ""
    return (
        f'[project]\nname = "{name}"\n{extra}'
        '[migrations]\ndir = "db/migrations"\nformat = "sql"\n'
    )


def _branch(
    repo: Path,
    backend: str,
    env: dict[str, str],
    init: str | None = None,
    feature: str | None = None,
) -> None:
    """main with the init migration, then branch feature with the feature one
    (by default the module's, for *backend*)."""
    name = "p" + repo.parent.name[-10:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(_config(name, backend))
    mig = repo / "db" / "migrations"
    mig.mkdir(parents=True)
    pg = backend == "postgres"
    (mig / "0001_init.sql").write_text(init or (PG_INIT if pg else SQLITE_INIT))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    assert run(repo, "up", "-q", env=env).code == 0
    git(repo, "checkout", "-q", "-b", "feature")
    (mig / "0002_feature.sql").write_text(
        feature or (PG_FEATURE if pg else SQLITE_FEATURE)
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feature")
    r = run(repo, "up", "-q", env=env)
    assert r.code == 0, r.err


def _json(repo: Path, env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    r = run(repo, "diff", "--json", *args, env=env)
    assert r.code == 0, r.err
    return json.loads(r.out)  # type: ignore[no-any-return]


def _changes(review: dict) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
    return {(c["kind"], c["change"], c["name"]) for c in review["diff"]["changes"]}


@pytest.mark.postgres
def test_postgres_diff_sql_and_squawk(repo: Path, pg_cluster: Cluster) -> None:
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url}
    _branch(repo, "postgres", env)
    review = _json(repo, env)
    assert review["diff"]["dialect"] == "postgres"
    assert _changes(review) == {
        ("column", "added", "public.users.nickname"),
        ("column", "added", "public.users.age"),
        ("column", "removed", "public.users.legacy"),
        ("index", "added", "public.users_email"),
        ("foreign key", "added", "public.orders.orders_user_fk"),
    }
    by_name = {c["name"]: c for c in review["diff"]["changes"]}
    assert by_name["public.users.age"]["after"] == "integer NOT NULL"
    assert "REFERENCES users(id)" in by_name["public.orders.orders_user_fk"]["after"]
    # Text: one line per change, same facts.
    text = run(repo, "diff", env=env)
    assert text.code == 0, text.err
    assert "schema diff branch main -> branch feature (postgres): 5 changes" in text.out
    assert "+ column public.users.age: integer NOT NULL" in text.out
    assert "- column public.users.legacy: text NULL" in text.out
    assert (
        "+ index public.users_email: CREATE INDEX users_email ON public.users"
        in text.out
    )
    assert "+ column public.users.nickname: text NULL" in text.out
    assert (
        "+ foreign key public.orders.orders_user_fk: FOREIGN KEY (user_id) "
        "REFERENCES users(id)" in text.out
    )
    assert (
        len([ln for ln in text.out.splitlines() if ln[:2] in ("+ ", "- ", "~ ")]) == 5
    )
    # Lint: squawk's own rule names, on the lines of the file.
    found = {(f["rule"], f["line"]) for f in review["lint"]["findings"]}
    assert review["lint"]["linter"] == "squawk"
    assert review["lint"]["linted"] == ["0002_feature.sql"]
    assert ("require-concurrent-index-creation", 2) in found
    assert ("adding-required-field", 3) in found
    assert ("constraint-missing-not-valid", 4) in found
    assert ("adding-foreign-key-constraint", 4) in found
    assert ("ban-drop-column", 5) in found
    assert {f["path"] for f in review["lint"]["findings"]} == {
        "db/migrations/0002_feature.sql"
    }
    assert (
        "db/migrations/0002_feature.sql:2: require-concurrent-index-creation"
        in text.out
    )
    # Against a snapshot of main (sealed: read through a scratch clone, dropped).
    main_db = run(repo, "url", "main", env=env).out.strip()
    r = run(repo, "snapshot", "create", "base", "--source", main_db, env=env)
    assert r.code == 0, r.err
    snap = _json(repo, env, "--against", "base@1")
    assert snap["diff"]["base"] == "snapshot base@1"
    assert _changes(snap) == _changes(review)
    # --sql applied to main's database: no difference left.
    sql = run(repo, "diff", "--sql", env=env)
    assert sql.code == 0, sql.err
    assert {s.strip() for s in sql.out.split(";") if s.strip()} == {
        'alter table "public"."users" drop column "legacy"',
        'alter table "public"."users" add column "age" integer not null',
        'alter table "public"."users" add column "nickname" text',
        "CREATE INDEX users_email ON public.users USING btree (email)",
        'alter table "public"."orders" add constraint "orders_user_fk" FOREIGN KEY '
        '("user_id") REFERENCES "public"."users"("id") NOT VALID',
        'alter table "public"."orders" validate constraint "orders_user_fk"',
    }
    with psycopg.connect(main_db, autocommit=True) as c:
        c.execute(sql.out.encode())
    after = _json(repo, env)
    assert after["diff"]["changes"] == [] and after["diff"]["sql"] == ""
    # squawk's own ignore comments and the project's .squawk.toml are honoured.
    mig = repo / "db" / "migrations" / "0002_feature.sql"
    mig.write_text(
        PG_FEATURE.replace(
            "ALTER TABLE users DROP",
            "-- squawk-ignore ban-drop-column\nALTER TABLE users DROP",
        )
    )
    (repo / ".squawk.toml").write_text('excluded_rules = ["require-lock-timeout"]\n')
    rules = {f["rule"] for f in _json(repo, env)["lint"]["findings"]}
    assert "ban-drop-column" not in rules and "require-lock-timeout" not in rules
    assert "require-concurrent-index-creation" in rules
    # Nothing was dropped or left behind: only the two branch databases exist.
    with psycopg.connect(pg_cluster.admin_url) as c:
        names = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        roles = {r[0] for r in c.execute("SELECT rolname FROM pg_roles")}
    assert not [n for n in names | roles if "scratch" in n]


def test_sqlite_diff_sql_and_lint(repo: Path) -> None:
    _branch(repo, "libsql", {})
    review = _json(repo, {})
    assert review["diff"]["dialect"] == "sqlite"
    assert _changes(review) == {
        ("column", "added", "users.nickname"),
        ("column", "added", "users.age"),
        ("column", "removed", "users.legacy"),
        ("index", "added", "users_email"),
        ("foreign key", "added", "orders (user_id) -> users(id)"),
    }
    findings = {(f["rule"], f["line"]) for f in review["lint"]["findings"]}
    assert findings == {("sqlite-table-rebuild", 6), ("sqlite-drop-column", 8)}
    # From main's checkout, the branch's migrations are read from its commit.
    git(repo, "checkout", "-q", "main")
    other = _json(repo, {}, "feature")
    assert other["lint"] == review["lint"]
    git(repo, "checkout", "-q", "feature")
    text = run(repo, "diff")
    assert [ln for ln in text.out.splitlines() if ln[:2] in ("+ ", "- ", "~ ")] == [
        "+ column users.age: INTEGER DEFAULT 0 NOT NULL",
        "- column users.legacy: TEXT NULL",
        "+ column users.nickname: TEXT NULL",
        "+ foreign key orders (user_id) -> users(id): FOREIGN KEY (user_id) "
        "REFERENCES users(id) ON UPDATE NO ACTION ON DELETE NO ACTION",
        "+ index users_email: CREATE INDEX users_email ON users (email)",
    ]
    sql = run(repo, "diff", "--sql")
    assert sql.code == 0 and "RENAME TO" in sql.out
    main_db = run(repo, "url", "main").out.strip().removeprefix("file:")
    with sqlite3.connect(main_db) as c:
        c.executescript(sql.out)
    assert _json(repo, {})["diff"]["changes"] == []
    # The other way round: main against the branch is the reverse... now equal.
    r = run(repo, "diff", "main", "--against", "feature", "--json")
    assert r.code == 0 and json.loads(r.out)["diff"]["changes"] == []


def test_sqlite_ignore_comment_and_bad_input(repo: Path) -> None:
    _branch(repo, "libsql", {})
    mig = repo / "db" / "migrations" / "0002_feature.sql"
    mig.write_text(
        SQLITE_FEATURE.replace(
            "ALTER TABLE users DROP",
            "-- branchdb-ignore sqlite-drop-column\nALTER TABLE users DROP",
        )
    )
    rules = {f["rule"] for f in _json(repo, {})["lint"]["findings"]}
    assert rules == {"sqlite-table-rebuild"}
    r = run(repo, "diff", "--against", "nosuch")
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err
    r = run(repo, "diff", "--against", "main", "--drift")
    assert r.code == 2 and "Traceback" not in r.err


SQLITE_CHECKS_INIT = """\
CREATE TABLE items (
  id INTEGER PRIMARY KEY,
  price INTEGER CHECK (price > 0), -- a comment, with (parentheses
  note TEXT DEFAULT 'a, (b' NOT NULL,
  CONSTRAINT cheap CHECK (price < 1000)
);
"""
SQLITE_CHECKS_FEATURE = """\
CREATE TABLE items_new (
  id INTEGER PRIMARY KEY,
  price INTEGER CHECK (price >= 0),
  note TEXT DEFAULT 'a, (b' NOT NULL,
  "the note" TEXT CONSTRAINT "has note" CHECK ("the note" <> 'x)')
);
INSERT INTO items_new (id, price, note) SELECT id, price, note FROM items;
DROP TABLE items;
ALTER TABLE items_new RENAME TO items;
"""


def test_sqlite_check_constraints_are_compared(repo: Path) -> None:
    _branch(repo, "libsql", {}, SQLITE_CHECKS_INIT, SQLITE_CHECKS_FEATURE)
    review = _json(repo, {})
    assert review["diff"]["ignored"] == []
    assert _changes(review) == {
        ("column", "added", "items.the note"),
        ("check", "removed", "items price: (price > 0)"),
        ("check", "added", "items price: (price >= 0)"),
        ("check", "removed", "items CONSTRAINT cheap"),
        ("check", "added", "items CONSTRAINT has note"),
    }
    by_name = {c["name"]: c for c in review["diff"]["changes"]}
    assert by_name["items CONSTRAINT has note"]["after"] == (
        """CONSTRAINT has note CHECK ("the note" <> 'x)')"""
    )
    # A change of CHECKs alone rebuilds the table in the SQL, which makes main's
    # database equal to the branch's (and enforces the new checks).
    sql = run(repo, "diff", "--sql")
    assert sql.code == 0 and "RENAME TO" in sql.out, sql.out
    main_db = run(repo, "url", "main").out.strip().removeprefix("file:")
    with sqlite3.connect(main_db) as c:
        c.execute("INSERT INTO items (id, price, note) VALUES (1, 5, 'n')")
        c.commit()
        c.executescript(sql.out)
        c.execute("INSERT INTO items (id, price, note) VALUES (2, 0, 'n')")
        with pytest.raises(sqlite3.IntegrityError, match="has note"):
            c.execute(
                """INSERT INTO items (id, price, note, "the note") VALUES (3, 1, 'n', 'x)')"""
            )
    assert _json(repo, {})["diff"]["changes"] == []
