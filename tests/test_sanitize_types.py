"""Personal data in every column type that can carry text (issue #19), end to end.

A source holds personal data in one column per type (arrays, json/jsonb, bytea or
BLOB, composite, hstore, xml, citext, domains), with no rule for them: ``snapshot
create`` refuses, naming each column. The rules ``snapshot check --write-rules``
suggests, used unchanged, then build the snapshot, and a branch cloned from it holds
none of the originals (searched with SQL in every column's text form).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgcluster import Cluster
from psycopg import sql
from support import run

from branchdb.daemon.sanitize import values
from branchdb.daemon.sanitize.rules import RulesError, parse_rules

EMAILS = [f"alt{i}@corp-mail.example.net" for i in range(1, 7)]
PHONES = ["+44 20 7946 0311", "+1 415 555 0182", "+33 1 44 55 66 77"]
# A surname-list name, and one only a column flagged as a name can teach.
LISTED = ["Siobhan Gallagher", "Thaddeus Okonkwo"]
UNLISTED = ["Quillon Brackenridge", "Ysolde Farthingale"]
ORIGINALS = [*EMAILS, *PHONES, *LISTED, *UNLISTED]

PG_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE entry_t AS (label text, addr text);
CREATE DOMAIN doc_t AS jsonb;
CREATE DOMAIN memo_t AS text;
CREATE DOMAIN tags_t AS varchar(40)[];
CREATE TABLE people (id int PRIMARY KEY, full_name text NOT NULL);
CREATE TABLE things (
    id int PRIMARY KEY,
    tags text[],
    aliases tags_t,
    blobs jsonb[],
    profile jsonb NOT NULL,
    settings json,
    attachment bytea,
    entry entry_t NOT NULL,
    extra hstore NOT NULL,
    page xml,
    handle citext NOT NULL,
    memo memo_t,
    remarks text,
    meta doc_t,
    keyed jsonb,
    ref varchar(40)
);
"""


def _pg_rows() -> list[tuple[Any, ...]]:
    rows = []
    for i in range(6):
        e, p = EMAILS[i], PHONES[i % 3]
        profile = {
            "backup_email": e,
            "plan": "pro" if i % 2 else "free",
            "contacts": [{"phone": p, "kind": "home"}, {"phone": p, "kind": "work"}],
            "visits": i,
        }
        rows.append((
            i, [e, "friends"], [p], [json.dumps({"owner": e, "n": i})],
            json.dumps(profile), json.dumps({"notify": {"mail": e}}),
            f"forward to {e}".encode(), f'("home","{e}")',
            f'"alt"=>"{e}", "lang"=>"en"', f'<c kind="x"><m>{e}</m></c>', e,
            f"Spoke with {UNLISTED[i % 2]} about the renewal",
            f"Call from {LISTED[i % 2]} today",
            json.dumps({"who": {"email": e}}), json.dumps({e: True}),
            f"ticket {e}",
        ))  # fmt: skip
    return rows


@pytest.fixture
def pg_source(pg_cluster: Cluster) -> str:
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS types_prod WITH (FORCE)")
        c.execute("CREATE DATABASE types_prod")
    url = pg_cluster.url("types_prod")
    with psycopg.connect(url) as c:
        c.execute(PG_SCHEMA)
        c.cursor().executemany(
            "INSERT INTO people VALUES (%s, %s)",
            list(enumerate([*UNLISTED, *UNLISTED])),
        )
        marks = sql.SQL(", ").join(sql.Placeholder() * 16)
        c.cursor().executemany(
            sql.SQL("INSERT INTO things VALUES ({})").format(marks), _pg_rows()
        )
    return url


PG_FLAGGED = {
    "tags", "aliases", "blobs", "profile", "settings", "attachment", "entry",
    "extra", "page", "handle", "memo", "remarks", "meta", "keyed", "ref",
}  # fmt: skip


def _pg_texts(url: str) -> str:
    """Every value of every column of every table, in its text form (bytea read
    as text), in one string."""
    out = []
    with psycopg.connect(url) as c:
        cols = c.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
        for table, col, typ in cols:
            v = sql.Identifier(col)
            text = (
                sql.SQL("encode({}, 'escape')").format(v)
                if typ == "bytea"
                else sql.SQL("{}::text").format(v)
            )
            got = c.execute(
                sql.SQL("SELECT string_agg({}, E'\\n') FROM {}").format(
                    text, sql.Identifier(table)
                )
            ).fetchone()
            out.append(str(got[0] if got else ""))
    return "\n".join(out)


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [o for o in ORIGINALS if o.lower() in low]


def test_pg_every_type_refused_then_masked_by_the_suggestions(
    repo: Path, pg_cluster: Cluster, pg_source: str
) -> None:
    (repo / "branchdb.toml").write_text(
        '[project]\nname = "typespg"\n[database]\nbackend = "postgres"\n'
    )
    env = {"BRANCHDB_PG_URL": pg_cluster.admin_url, "BRANCHDB_SANITIZE_SALT": "s19"}
    (repo / "none.toml").write_text('salt = "x"\n')
    r = run(repo, "snapshot", "create", "prod", "--source", pg_source,
            "--rules", "none.toml", env=env)  # fmt: skip
    assert r.code != 0 and "Traceback" not in r.err
    named = set(re.findall(r"^  things\.(\w+) ", r.err, re.M))
    assert named == PG_FLAGGED, r.err
    assert "people.full_name" in r.err

    r = run(repo, "snapshot", "check", "--source", pg_source, "--write-rules",
            "rules.toml", env=env)  # fmt: skip
    assert r.code == 0, r.err
    assert "sampled up to 200 rows per table" in r.err
    # the starter file, used unchanged
    rules = parse_rules((repo / "rules.toml").read_text(), env=env)
    profile = rules.tables["things"].columns["profile"]
    assert profile.strategy == "json"
    assert {p for _s, p, _r in profile.paths} == {
        "$.backup_email", "$.contacts[*].phone"
    }  # fmt: skip
    assert rules.tables["things"].columns["tags"].strategy == "email"
    # emails inside short free text: a regexp kept within the column's length
    assert rules.tables["things"].columns["ref"].expr.startswith("left(regexp_replace")

    r = run(repo, "snapshot", "create", "prod", "--source", pg_source,
            "--rules", "rules.toml", env=env)  # fmt: skip
    assert r.code == 0, r.err
    r = run(repo, "up", "preview", "--from", "prod", "--json", env=env)
    assert r.code == 0, r.err
    clone = json.loads(r.out)["url"]
    assert _leaks(_pg_texts(clone)) == []
    assert _leaks(_pg_texts(pg_source)) != []  # the search finds them where they are

    with psycopg.connect(clone) as c:
        docs = c.execute("SELECT id, profile FROM things ORDER BY id").fetchall()
    source = {r[0]: json.loads(r[4]) for r in _pg_rows()}
    for i, doc in docs:
        # valid JSON, other keys untouched, masked paths replaced by fakes
        assert doc["plan"] == source[i]["plan"] and doc["visits"] == i
        assert [c["kind"] for c in doc["contacts"]] == ["home", "work"]
        assert re.fullmatch(r"[0-9a-f]{16}@example\.com", doc["backup_email"])
        assert all(c["phone"].startswith("+1-555-") for c in doc["contacts"])


def test_pg_json_paths_and_arrays_keep_everything_else(
    pg_cluster: Cluster, pg_source: str
) -> None:
    """The same text masks alike in a text array, a JSON path and a text column
    (the fakes are deterministic), and a path that is absent changes nothing."""
    from branchdb.daemon.sanitize.pg import masking
    from branchdb.daemon.sanitize.schema import Column

    rules = parse_rules(
        'salt = "s"\n[tables.t.columns]\n'
        'd = { strategy = "json", paths = { "$.a[*].e" = "email", "$.gone" = "hash",'
        ' "$.n" = "null" } }\na = "email"\nt = "email"\n'
    )
    cols = rules.tables["t"].columns
    d = Column("d", "jsonb", "json", None, False, False)
    a = Column("a", "text[]", "array", None, False, False, "text", "text")
    t = Column("t", "text", "text", None, False, False)
    doc = {"a": [{"e": "x@y.org", "k": 1}, 7], "n": "drop", "z": {"e": "x@y.org"}}
    with psycopg.connect(pg_cluster.admin_url) as c:
        row = c.execute(
            sql.SQL("SELECT {}, {}, {} FROM (SELECT %s::jsonb AS d, "
                    "ARRAY['x@y.org', NULL] AS a, 'x@y.org'::text AS t) AS v").format(
                masking.column_expr(cols["d"], d, "s"),
                masking.column_expr(cols["a"], a, "s"),
                masking.column_expr(cols["t"], t, "s"),
            ),
            [json.dumps(doc)],
        ).fetchone()  # fmt: skip
    assert row is not None
    masked, arr, scalar = row
    assert masked["a"][0]["e"] == scalar == arr[0] and arr[1] is None
    assert masked["a"][0]["k"] == 1 and masked["a"][1] == 7
    assert masked["n"] is None and masked["z"] == {"e": "x@y.org"}
    # the SQLite side (Python) writes the same document
    from branchdb.daemon.sanitize.sqlite.masking import _json as sqlite_json

    spec = json.dumps([[list(p), r.strategy, r.part, r.value]
                       for p, _w, r in cols["d"].paths])  # fmt: skip
    assert json.loads(sqlite_json(spec, "s", json.dumps(doc)) or "") == masked


def test_rules_reject_bad_paths_and_types() -> None:
    with pytest.raises(RulesError, match=r"t.d: cannot read '\$.a\(' at"):
        parse_rules('salt = "s"\n[tables.t.columns]\nd = { strategy = "json", '
                    'paths = { "$.a(" = "email" } }\n')  # fmt: skip
    with pytest.raises(RulesError, match=r"cannot apply inside JSON"):
        parse_rules('salt = "s"\n[tables.t.columns]\nd = { strategy = "json", '
                    'paths = { "$.a" = "shuffle" } }\n')  # fmt: skip
    assert values.parse_path('$.a."b c"[*][2]') == ("a", "b c", "*", 2)
    assert values.render(("a", "b c", "*", 2)) == '$.a."b c"[*][2]'


SQLITE_SCHEMA = """
CREATE TABLE people (id INTEGER PRIMARY KEY, full_name TEXT NOT NULL);
CREATE TABLE things (id INTEGER PRIMARY KEY, profile JSON, doc TEXT,
                     attachment BLOB, mixed TEXT, memo TEXT, remarks TEXT);
"""


def test_sqlite_every_type_refused_then_masked_by_the_suggestions(
    repo: Path, tmp_path: Path
) -> None:
    prod = tmp_path / "prod.db"
    con = sqlite3.connect(prod)
    con.executescript(SQLITE_SCHEMA)
    con.executemany("INSERT INTO people VALUES (?, ?)", enumerate(UNLISTED * 2))
    for i in range(6):
        e, p = EMAILS[i], PHONES[i % 3]
        profile = {"backup_email": e, "plan": "pro", "contacts": [{"phone": p}]}
        con.execute(
            "INSERT INTO things VALUES (?, ?, ?, ?, ?, ?, ?)",
            (i, json.dumps(profile), json.dumps({"notify": {"mail": e}}),
             f"forward to {e}".encode(), f"reply {e}".encode(),
             f"Spoke with {UNLISTED[i % 2]} about it",
             f"Call from {LISTED[i % 2]} today"),
        )  # fmt: skip
    con.commit()
    con.close()
    (repo / "branchdb.toml").write_text('[project]\nname = "typeslite"\n')
    (repo / "none.toml").write_text('salt = "x"\n')
    r = run(repo, "snapshot", "create", "prod", "--source", str(prod),
            "--rules", "none.toml")  # fmt: skip
    assert r.code != 0 and "Traceback" not in r.err
    named = set(re.findall(r"^  things\.(\w+) ", r.err, re.M))
    assert named == {"profile", "doc", "attachment", "mixed", "memo", "remarks"}
    r = run(repo, "snapshot", "check", "--source", str(prod), "--write-rules",
            "rules.toml", env={"BRANCHDB_SANITIZE_SALT": "s"})  # fmt: skip
    assert r.code == 0, r.err
    rules = parse_rules(
        (repo / "rules.toml").read_text(), env={"BRANCHDB_SANITIZE_SALT": "s"}
    )
    assert rules.tables["things"].columns["profile"].strategy == "json"
    env = {"BRANCHDB_SANITIZE_SALT": "s19"}
    r = run(repo, "snapshot", "create", "prod", "--source", str(prod),
            "--rules", "rules.toml", env=env)  # fmt: skip
    assert r.code == 0, r.err
    r = run(repo, "up", "preview", "--from", "prod", "--json", env=env)
    assert r.code == 0, r.err
    clone = Path(json.loads(r.out)["url"].removeprefix("file:"))
    con = sqlite3.connect(clone)
    con.text_factory = bytes
    texts = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({table.decode()})")]
        for col in cols:
            for (v,) in con.execute(
                f'SELECT CAST("{col}" AS TEXT) FROM {table.decode()}'
            ):
                texts.append(v.decode(errors="replace") if v else "")
    docs = [json.loads(v) for (v,) in con.execute("SELECT profile FROM things")]
    con.close()
    assert _leaks("\n".join(texts)) == []
    assert all(d["plan"] == "pro" and len(d["contacts"]) == 1 for d in docs)
    assert all(d["backup_email"].endswith("@example.com") for d in docs)


def test_pg_verifier_finds_originals_inside_structured_values(
    pg_cluster: Cluster,
) -> None:
    """A masked email kept inside an array, a JSON document, bytes or a composite
    of another column is a leak, found in each of them; the snapshot is not built."""
    from branchdb.daemon.backends import pg_copy
    from branchdb.daemon.sanitize.leaks import LeakFound
    from branchdb.daemon.sanitize.pg import stream

    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        for db in ("leaky_src", "leaky_dst"):
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(db)))  # fmt: skip
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(pg_cluster.url("leaky_src")) as c:
        c.execute(
            "CREATE TYPE pair AS (label text, addr text);"
            "CREATE TABLE users (id int PRIMARY KEY, email text, tags text[],"
            " profile jsonb, contact bytea, entry pair, remarks text)"
        )
        for i, e in enumerate(EMAILS):
            c.execute(
                "INSERT INTO users VALUES (%s, %s, %s, %s, %s, ROW('home', %s), %s)",
                (i, e, ["x", e.upper()], json.dumps({"backup": {"mail": e}}),
                 e.encode(), e, "nothing to see"),
            )  # fmt: skip
    rules = parse_rules(
        'salt = "s"\n[tables.users.columns]\nemail = "email"\ntags = "keep"\n'
        'profile = "keep"\ncontact = "keep"\nentry = "keep"\nremarks = "keep"\n'
    )
    with pytest.raises(LeakFound) as e:
        stream.build(
            pg_copy.Client(pg_copy.find_bin(15), "postgres"),
            pg_cluster.url("leaky_src"), pg_cluster.admin_url, "leaky_dst", rules,
        )  # fmt: skip
    found = {m for m in re.findall(r"found in users\.(\w+)", str(e.value))}
    assert found == {"tags", "profile", "contact", "entry"}
    assert "@" not in str(e.value)
    # JSON masked by path: the originals at the path are searched elsewhere
    rules = parse_rules(
        'salt = "s"\n[tables.users.columns]\nemail = "keep"\ntags = "keep"\n'
        'profile = { strategy = "json", paths = { "$.backup.mail" = "email" } }\n'
        'contact = "null"\nentry = "null"\nremarks = "keep"\n'
    )
    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as c:
        c.execute("DROP DATABASE leaky_dst WITH (FORCE)")
        c.execute("CREATE DATABASE leaky_dst")
    with pytest.raises(
        LeakFound, match=r"original users.profile found in users.email \(whole value"
    ):
        stream.build(
            pg_copy.Client(pg_copy.find_bin(15), "postgres"),
            pg_cluster.url("leaky_src"), pg_cluster.admin_url, "leaky_dst", rules,
        )  # fmt: skip


def test_sqlite_verifier_finds_originals_inside_json_and_blobs(tmp_path: Path) -> None:
    from branchdb.daemon.sanitize.leaks import LeakFound
    from branchdb.daemon.sanitize.sqlite.pipeline import sanitize_sqlite

    db = tmp_path / "s.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (email TEXT, profile JSON, contact BLOB)")
    for e in EMAILS:
        con.execute("INSERT INTO users VALUES (?, ?, ?)",
                    (e, json.dumps({"backup": {"mail": e}}), e.encode()))  # fmt: skip
    con.commit()
    con.close()
    rules = parse_rules(
        'salt = "s"\n[tables.users.columns]\nemail = "email"\nprofile = "keep"\n'
        'contact = "keep"\n'
    )
    with pytest.raises(LeakFound) as e:
        sanitize_sqlite(db, rules)
    found = set(re.findall(r"found in users\.(\w+)", str(e.value)))
    assert found == {"profile", "contact"}


def test_sampling_is_bounded_in_time_and_a_locked_table_is_flagged(
    pg_cluster: Cluster, pg_source: str
) -> None:
    """A table whose sample waits past the bound (here: a lock held elsewhere) is
    reported, and its text columns are flagged (fail closed)."""
    from branchdb.daemon.sanitize import detect
    from branchdb.daemon.sanitize.pg.introspect import pg_schema, sample_pg

    with psycopg.connect(pg_source) as locker, psycopg.connect(pg_source) as c:
        locker.execute("LOCK TABLE things IN ACCESS EXCLUSIVE MODE")
        schema = pg_schema(c)
        c.execute("BEGIN")
        samples = sample_pg(c, schema, 50, seconds=0.3)
        # the caller's transaction is still usable, its own timeout back
        assert c.execute("SHOW statement_timeout").fetchone() == ("0",)
        locker.rollback()
    assert samples.timed_out == ["things"]
    assert "not sampled (over 0.3 s): things" in samples.limits()
    assert "sampled up to 50 rows per table" in samples.limits()
    flagged = {f.where: f for f in detect.detect(schema, samples, "postgres")}
    assert flagged["things.tags"].category == "unsampled"
    assert flagged["things.tags"].suggestion == {"strategy": "null"}
    assert "things.id" not in flagged  # an int carries no text


def test_names_in_free_text() -> None:
    from branchdb.daemon.sanitize import people

    assert people.names_someone("Call from Siobhan Gallagher today")
    assert people.names_someone("met Oluwaseun Adeyemi")  # a listed surname
    known = people.known_words(["Quillon Brackenridge"])
    assert not people.names_someone("spoke with Quillon Brackenridge")
    assert people.names_someone("spoke with Quillon Brackenridge", known)
    for text in ("Leave at the door", "May Update", "Central Park tour",
                 "Blue Widget 42", "Grace Period applies"):  # fmt: skip
        assert not people.names_someone(text), text


def test_suggestions_inside_json_by_path_key_and_value() -> None:
    """Paths are flagged by their values or their key's name (not when the key
    holds only booleans); emails as keys cannot be masked by path: whole value."""
    from branchdb.daemon.sanitize import structured
    from branchdb.daemon.sanitize.schema import Column

    col = Column("doc", "jsonb", "json", None, False, False)
    docs = [
        json.dumps({"phone_verified": True, "contact": {"phone": "x"}, "n": i,
                    "who": [{"email": f"p{i}@corp.test"}]})
        for i in range(5)
    ]  # fmt: skip
    flag = structured.analyse("events", col, docs, frozenset(), "postgres")
    assert flag is not None
    assert flag.suggestion == {"strategy": "json", "paths": {
        "$.contact.phone": "phone", "$.who[*].email": "email"}}  # fmt: skip
    keyed = [json.dumps({f"p{i}@corp.test": 1}) for i in range(5)]
    flag = structured.analyse("events", col, keyed, frozenset(), "postgres")
    assert flag is not None and flag.suggestion == {"strategy": "null"}
    assert structured.analyse("events", col, ['{"a": 1}'], frozenset(), "x") is None
