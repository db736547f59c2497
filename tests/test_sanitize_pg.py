"""The sanitize pipeline on a real PostgreSQL 15 cluster (tests/pgcluster.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sanitize_oracle as oracle
from pgcluster import Cluster
from psycopg import sql
from test_sanitize_data import (
    N_USERS,
    PG_NOTES,
    PG_NOTES_EMAILS_ONLY,
    SCHEMA,
    dataset,
    leaks,
    originals,
    rules_text,
)  # fmt: skip

from branchdb.daemon.backends import pg_copy
from branchdb.daemon.core.errors import BackendError
from branchdb.daemon.sanitize.check import check_postgres
from branchdb.daemon.sanitize.detect import UnreviewedColumns
from branchdb.daemon.sanitize.leaks import LeakFound
from branchdb.daemon.sanitize.pg import masking, stream, stream_sql, verify
from branchdb.daemon.sanitize.pg.introspect import pg_schema
from branchdb.daemon.sanitize.pg.verify_sql import could_be
from branchdb.daemon.sanitize.rules import ColumnRule, RulesError, parse_rules
from branchdb.daemon.sanitize.schema import Column

pytestmark = pytest.mark.postgres
Data = dict[str, list[tuple[Any, ...]]]


def admin(cluster: Cluster, db: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.url(db), autocommit=True)


@pytest.fixture(scope="module")
def source(pg_cluster: Cluster) -> Iterator[tuple[str, Data]]:
    name = f"src_{uuid.uuid4().hex[:8]}"
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    data = dataset()
    with admin(pg_cluster, name) as c:
        c.execute(SCHEMA.format(ip="inet").encode())
        for table, rows in data.items():
            marks = sql.SQL(", ").join(sql.Placeholder() * len(rows[0]))
            with c.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} VALUES ({})").format(
                        sql.Identifier(table), marks
                    ),
                    rows,
                )
        # an audit trigger would copy originals into audit_log if it fired
        c.execute("""
            CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO audit_log VALUES (-NEW.id, NULL, OLD.email); RETURN NEW; END $$;
            CREATE TRIGGER users_audit AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION audit();
        """)  # fmt: skip
    yield name, data


def stage(cluster: Cluster, src: str) -> str:
    name = f"stg_{uuid.uuid4().hex[:8]}"
    with admin(cluster) as c:
        c.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(src)
            )
        )
    return name


def fingerprint(cluster: Cluster, db: str) -> str:
    with admin(cluster, db) as c:
        tables = [
            r[0]
            for r in c.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        parts = [
            str(c.execute(sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t").format(sql.Identifier(t))).fetchone())
            for t in tables
        ]  # fmt: skip
    return "/".join(parts)


def cells(cluster: Cluster, db: str) -> list[object]:
    out: list[object] = []
    with admin(cluster, db) as c:
        for (t,) in c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall():
            for row in c.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t))):
                out += [
                    str(v).removesuffix("/32") if v is not None else None for v in row
                ]
    return out


@pytest.mark.parametrize("path", ["stream", "in-place"])
def test_pg_dump_copy_then_sanitize_leaves_no_original(
    pg_cluster: Cluster, source: Any, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every table copied and masked as two concurrent halves, however small
    monkeypatch.setattr(stream, "SPLIT_PAGES", 0)
    src, data = source
    before = fingerprint(pg_cluster, src)
    target = f"stg_{uuid.uuid4().hex[:8]}"
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    events: list[tuple[str, str, int]] = []
    rules = parse_rules(rules_text("postgres"))
    if path == "stream":
        # what the postgres backend runs before sealing a sanitized snapshot
        report = stream.build(
            pg_copy.Client(pg_copy.find_bin(15), "postgres"), pg_cluster.url(src),
            pg_cluster.admin_url, target, rules,
            progress=lambda *e: events.append(e),
        )  # fmt: skip
        with admin(pg_cluster, target) as c:
            # no raw table of originals is left behind
            assert c.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '\\_bdb%'"
            ).fetchone() == (0,)
    else:
        pg_copy.copy(
            pg_cluster.url(src), pg_cluster.url(target), "postgres",
            pg_copy.find_bin(15),
        )  # fmt: skip
        report = oracle.sanitize_postgres(
            pg_cluster.admin_url, target, rules, progress=lambda *e: events.append(e)
        )
    assert fingerprint(pg_cluster, src) == before  # the source is unchanged
    assert leaks(originals(data), cells(pg_cluster, target)) == []
    with admin(pg_cluster, target) as c:
        one = lambda q: c.execute(q).fetchone()  # noqa: E731
        kept = one("SELECT count(*) FROM users")[0]
        assert 0 < kept < N_USERS
        # joins on masked keys still match across tables
        assert (
            one(
                "SELECT count(*) FROM orders o JOIN users u ON u.email = o.customer_email"
            )[0]
            == 2 * kept
        )
        assert (
            one("SELECT count(*) FROM newsletter n JOIN users u USING (email)")[0] > 0
        )
        # where: no dangling rows two FK levels down; the constraints were re-validated
        assert one("SELECT count(*) FROM order_items")[0] == 2 * kept
        assert (
            one(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated"
            )[0]
            == 2
        )
        # constraints and types hold
        assert one(
            "SELECT count(DISTINCT email) = count(*), max(length(email)) <= 60 FROM users"
        ) == (True, True)
        assert one("SELECT bool_and(last_ip << '10.0.0.0/8') FROM users")[0] is True
        assert (
            one("SELECT count(*) FROM audit_log")[0] == 0
        )  # truncated; trigger did not fire
        assert (
            one("SELECT count(*) FROM orders WHERE notes = '(redacted)'")[0] == 2 * kept
        )
        # the audit trigger is back in place
        assert (
            one(
                "SELECT count(*) FROM pg_trigger WHERE tgname = 'users_audit' AND tgenabled = 'O'"
            )[0]
            == 1
        )
    assert report.applied.tables["order_items"]["orphans deleted"] > 0
    assert ("users", "masked", kept) in events
    assert report.verified.originals > 0
    assert "users.last_ip" in report.info()["flagged"]


def test_same_fakes_as_sqlite(pg_cluster: Cluster, source: Any) -> None:
    """Determinism across dialects: PostgreSQL SQL == the Python functions SQLite runs."""
    from branchdb.daemon.sanitize import fakes

    with admin(pg_cluster) as c:
        for strategy, part in (("email", "full"), ("name", "full"), ("name", "last"),
                               ("phone", "full"), ("address", "full"), ("address", "zip")):  # fmt: skip
            rule = parse_rules(f'salt = "s"\n[tables.t.columns]\nc = {{ strategy = "{strategy}", part = "{part}" }}'
                               if strategy in ("name", "address") else
                               f'salt = "s"\n[tables.t.columns]\nc = "{strategy}"').tables["t"].columns["c"]  # fmt: skip
            col = Column("c", "text", "text", None, False, False)
            expr = masking.column_expr(rule, col, "s")
            got = c.execute(
                sql.SQL("SELECT {} FROM (VALUES ('alice@example.org')) v(c)").format(
                    expr
                )
            ).fetchone()
            assert got is not None
            assert got[0] == fakes.fake(
                strategy, fakes.digest("s", "alice@example.org") or "", part, None
            )


def test_utf8_digest_reads_the_same_bytes(pg_cluster: Cluster) -> None:
    """In a UTF8 database the textsend digest (the streaming path's) is the
    convert_to digest, and Python's, for non-ASCII text too."""
    import hashlib

    text = "Zoë Łukasz 山田 ✓"
    with admin(pg_cluster) as c:
        row = c.execute(
            sql.SQL("SELECT current_setting('server_encoding'), {}, {}").format(
                masking.digest_bytes("s", sql.Literal(text), utf8=True),
                masking.digest_bytes("s", sql.Literal(text)),
            )
        ).fetchone()
    assert row is not None
    assert row[0] == "UTF8"
    assert (
        bytes(row[1]) == bytes(row[2]) == hashlib.sha256(("s" + text).encode()).digest()
    )


def test_missing_rule_blocks_and_changes_nothing(
    pg_cluster: Cluster, source: Any
) -> None:
    src, _ = source
    db = stage(pg_cluster, src)
    before = fingerprint(pg_cluster, db)
    with pytest.raises(UnreviewedColumns) as e:
        oracle.sanitize_postgres(
            pg_cluster.admin_url, db, parse_rules(rules_text("postgres", drop="city ="))
        )
    assert "users.city" in str(e.value)
    assert 'columns.city = { strategy = "address", part = "city" }' in str(e.value)
    assert fingerprint(pg_cluster, db) == before


def test_check_source_is_read_only(pg_cluster: Cluster, source: Any) -> None:
    src, _ = source
    with admin(pg_cluster, src) as c:
        findings, missing, limits = check_postgres(
            c, parse_rules(rules_text("postgres"))
        )
        assert c.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    assert missing == []
    flagged = {f.where for f in findings}
    assert {
        "users.last_ip",
        "orders.notes",
        "users.password_hash",
        "audit_log.actor_ip",
    } <= flagged
    assert limits.startswith("sampled up to 200 rows per table")
    # the notes name the customers: masked whole (a regexp of emails would leave
    # the names)
    notes = next(f for f in findings if f.where == "orders.notes")
    assert (notes.category, notes.suggestion) == ("person", {"strategy": "null"})


def test_verifier_catches_a_planted_leak(pg_cluster: Cluster, source: Any) -> None:
    src, data = source
    db = stage(pg_cluster, src)
    rules = parse_rules(rules_text("postgres"))
    with admin(pg_cluster, db) as c:
        schema = pg_schema(c)
        captured = oracle.capture_pg(c, schema, rules)
        oracle.apply(c, schema, rules)
        oracle.verify_pg(c, schema, captured)
        # a column nobody masked that copied an email, and a street in free text
        c.execute("ALTER TABLE order_items ADD COLUMN contact text")
        c.execute("UPDATE order_items SET contact = %s WHERE id = (SELECT min(id) FROM order_items)",
                  [f"ship to {data['users'][-1][1].upper()} please"])  # fmt: skip
        schema = pg_schema(c)
        with pytest.raises(LeakFound) as e:
            oracle.verify_pg(c, schema, captured)
    assert "original users.email found in order_items.contact (email in text)" in str(
        e.value
    )
    assert "@" not in str(e.value)  # the message never repeats the value
    # Redacting only the emails of a free-text column leaves the names in it.
    text = rules_text("postgres").replace(PG_NOTES, PG_NOTES_EMAILS_ONLY)
    with pytest.raises(
        LeakFound,
        match=r"users.(full|first|last)_name found in orders.notes \(name in text\)",
    ):
        oracle.sanitize_postgres(
            pg_cluster.admin_url, stage(pg_cluster, src), parse_rules(text)
        )


def test_deterministic_per_salt_and_fk_mismatch_fails(
    pg_cluster: Cluster, source: Any
) -> None:
    src, _ = source
    out = []
    for salt in ("a", "a", "b"):
        db = stage(pg_cluster, src)
        oracle.sanitize_postgres(
            pg_cluster.admin_url, db, parse_rules(rules_text("postgres", salt=salt))
        )
        with admin(pg_cluster, db) as c:
            out.append(
                c.execute(
                    "SELECT id, email, full_name, phone, last_ip FROM users ORDER BY id"
                ).fetchall()
            )
    assert out[0] == out[1] and out[0] != out[2]
    db = stage(pg_cluster, src)
    text = (
        rules_text("postgres") + '\n[tables.order_items.columns]\norder_id = "hash"\n'
    )
    with pytest.raises(
        RulesError, match=r"foreign key order_items_order_id_fkey .* no longer holds"
    ):
        oracle.sanitize_postgres(pg_cluster.admin_url, db, parse_rules(text))


def _stream(cluster: Cluster, src: str, text: str) -> tuple[str, Any]:
    """Run the streaming path into a new empty database; (database, report)."""
    target = f"stg_{uuid.uuid4().hex[:8]}"
    with admin(cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    report = stream.build(
        pg_copy.Client(pg_copy.find_bin(15), "postgres"), cluster.url(src),
        cluster.admin_url, target, parse_rules(text),
    )  # fmt: skip
    return target, report


def test_stream_verifier_catches_leaks(pg_cluster: Cluster, source: Any) -> None:
    src, _ = source
    # a copy of a masked column that its rule keeps: found as a whole value
    text = rules_text("postgres").replace(
        '[tables.newsletter.columns]\nemail = "email"',
        '[tables.newsletter.columns]\nemail = "keep"',
    )
    with pytest.raises(LeakFound) as e:
        _stream(pg_cluster, src, text)
    assert "original users.email found in newsletter.email (whole value)" in str(
        e.value
    )
    assert "@" not in str(e.value)
    # emails redacted from free text, the customers' names left in it
    text = rules_text("postgres").replace(PG_NOTES, PG_NOTES_EMAILS_ONLY)
    with pytest.raises(
        LeakFound,
        match=r"users.(full|first|last)_name found in orders.notes \(name in text\)",
    ):
        _stream(pg_cluster, src, text)
    # the notes kept as they are: emails inside free text
    text = rules_text("postgres").replace(f"notes = {PG_NOTES}", 'notes = "keep"')
    with pytest.raises(
        LeakFound, match=r"users.email found in orders.notes \(email in text\)"
    ):
        _stream(pg_cluster, src, text)


def test_stream_refuses_before_copying(pg_cluster: Cluster, source: Any) -> None:
    src, _ = source
    before = fingerprint(pg_cluster, src)
    with pytest.raises(UnreviewedColumns, match=r"users\.city"):
        _stream(pg_cluster, src, rules_text("postgres", drop="city ="))
    text = (
        rules_text("postgres") + '\n[tables.order_items.columns]\norder_id = "hash"\n'
    )
    with pytest.raises(
        RulesError, match=r"foreign key order_items_order_id_fkey .* no longer holds"
    ):
        _stream(pg_cluster, src, text)
    assert fingerprint(pg_cluster, src) == before


def test_stream_blames_the_rule_whose_statement_fails(
    pg_cluster: Cluster, source: Any
) -> None:
    """A where or an sql expression the server rejects is a RulesError naming the
    rule, in the server's words."""
    src, _ = source
    text = rules_text("postgres").replace(
        "where = \"created_at >= '2024-01-01'\"", 'where = "no_such_column > 0"'
    )
    with pytest.raises(
        RulesError, match=r'users: where = .*column "no_such_column" does not exist'
    ):
        _stream(pg_cluster, src, text)
    text = rules_text("postgres").replace(
        PG_NOTES, '{ strategy = "sql", expr = "no_such_function(notes)" }'
    )
    with pytest.raises(
        RulesError, match=r"mask orders: function no_such_function\(text\) does not"
    ):
        _stream(pg_cluster, src, text)


def test_stream_is_deterministic_and_matches_in_place(
    pg_cluster: Cluster, source: Any
) -> None:
    src, _ = source
    query = "SELECT id, email, full_name, phone, last_ip FROM users ORDER BY id"
    out = []
    for _ in range(2):
        db, _report = _stream(pg_cluster, src, rules_text("postgres"))
        with admin(pg_cluster, db) as c:
            out.append(c.execute(query).fetchall())
    db = stage(pg_cluster, src)
    oracle.sanitize_postgres(
        pg_cluster.admin_url, db, parse_rules(rules_text("postgres"))
    )
    with admin(pg_cluster, db) as c:
        out.append(c.execute(query).fetchall())
    assert out[0] == out[1] == out[2]


def test_failed_sanitized_snapshot_publishes_nothing(
    pg_cluster: Cluster, source: Any
) -> None:
    from pathlib import Path

    from branchdb.daemon.backends.postgres_backend import PostgresBackend
    from branchdb.daemon.config.project import from_mapping

    src, _ = source
    raw = {
        "project": {"name": "leaky"},
        "database": {"backend": "postgres", "server": pg_cluster.admin_url},
    }
    backend = PostgresBackend(from_mapping(raw, Path("/tmp"), None))

    def names() -> set[str]:
        with admin(pg_cluster) as c:
            return {r[0] for r in c.execute("SELECT datname FROM pg_database")}

    before = names()
    text = rules_text("postgres").replace(PG_NOTES, PG_NOTES_EMAILS_ONLY)
    with pytest.raises(LeakFound):
        backend.snapshot_create("prod", 1, pg_cluster.url(src), rules=parse_rules(text))
    assert names() == before  # no staging database, no snapshot
    snap = backend.snapshot_create(
        "prod", 1, pg_cluster.url(src), rules=parse_rules(rules_text("postgres"))
    )
    assert snap.info["sanitize"]["originals_verified"] > 0
    assert "users" in snap.info["sanitize"]["changes"]
    backend.snapshot_drop(snap)


def test_stream_where_reads_unmasked_rows_of_other_tables(
    pg_cluster: Cluster, source: Any
) -> None:
    """A where subquery sees the other tables as copied, before masking."""
    src, _ = source
    text = rules_text("postgres").replace(
        "[tables.newsletter.columns]",
        '[tables.newsletter]\nwhere = "email IN (SELECT email FROM users '
        "WHERE created_at >= '2024-01-01')\"\n[tables.newsletter.columns]",
    )
    db, report = _stream(pg_cluster, src, text)
    staged = stage(pg_cluster, src)
    oracle.sanitize_postgres(pg_cluster.admin_url, staged, parse_rules(text))
    counts = []
    for name in (db, staged):
        with admin(pg_cluster, name) as c:
            counts.append(c.execute("SELECT count(*) FROM newsletter").fetchone())
    assert counts[0] == counts[1] and counts[0][0] > 0
    assert report.applied.tables["newsletter"]["deleted by where"] > 0


def test_stream_keeps_sequences_and_leaves_matviews_empty(pg_cluster: Cluster) -> None:
    src = f"src_{uuid.uuid4().hex[:8]}"
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(src)))
    with admin(pg_cluster, src) as c:
        c.execute(
            "CREATE TABLE t (id serial PRIMARY KEY, email text);"
            "INSERT INTO t (email) SELECT 'person' || g || '@example.org' "
            "FROM generate_series(1, 40) g;"
            "CREATE MATERIALIZED VIEW mv AS SELECT email FROM t;"
            "CREATE SEQUENCE spare; SELECT setval('spare', 42, false);"
        )
    db, _ = _stream(
        pg_cluster, src, 'salt = "x"\n[tables.t]\ncolumns.email = "email"\n'
    )
    with admin(pg_cluster, db) as c:
        assert c.execute(
            "INSERT INTO t (email) VALUES ('x') RETURNING id"
        ).fetchone() == (41,)
        assert c.execute("SELECT nextval('spare')").fetchone() == (42,)
        # a materialized view would hold originals: it is created empty
        assert c.execute(
            "SELECT relispopulated FROM pg_class WHERE relname = 'mv'"
        ).fetchone() == (False,)


FORMS = [
    (s, p, n)
    for s, p in (
        ("email", "full"),
        ("name", "full"),
        ("name", "first"),
        ("name", "last"),
        ("phone", "full"),
        ("address", "full"),
        ("address", "street"),
        ("address", "city"),
        ("address", "zip"),
        ("hash", "full"),
    )
    for n in (None, 4, 9, 20, 30)
]


def test_generated_values_fit_the_verifiers_forms(pg_cluster: Cluster) -> None:
    """could_be holds for every fake (it narrows the verifier's whole-value join)."""
    values = sql.Literal([f"someone{i}@mail.test Ünï {i}" for i in range(400)])
    with admin(pg_cluster) as c:
        for strategy, part, n in FORMS:
            col = Column("c", "text", "text", n, False, False)
            rule = ColumnRule("t", "c", strategy, part=part)
            form = could_be(rule, col)
            assert form is not None
            row = c.execute(sql.SQL(
                "SELECT bool_and({}), count(*) FROM (SELECT {} AS v FROM "
                "unnest({}::text[]) AS u(c)) AS o"
            ).format(form, masking.column_expr(rule, col, "s"), values)).fetchone()  # fmt: skip
            assert row == (True, 400), (strategy, part, n)
            real = c.execute(
                sql.SQL("SELECT bool_or({}) FROM unnest({}::text[]) AS o(v)").format(
                    form, values
                )
            ).fetchone()
            assert real == (False,), (strategy, part, n)


def test_stream_verifier_finds_an_original_in_a_generated_column(
    pg_cluster: Cluster,
) -> None:
    """A generated column is searched for originals of its own form, whatever
    column they came from (an email original that reads like a fake name)."""
    db = f"gen_{uuid.uuid4().hex[:8]}"
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    rules = parse_rules(
        'salt = "s"\n[tables.t.columns]\nemail = "email"\nname = "name"\n'
    )
    with admin(pg_cluster, db) as c:
        c.execute("CREATE TABLE t (email text, name text)")
        schema = pg_schema(c)
        c.execute("CREATE SCHEMA r; CREATE TABLE r.t (email text, name text)")
        c.execute("INSERT INTO r.t VALUES ('Avery Ashford', 'Robin Real')")
        c.execute(
            "INSERT INTO t VALUES ('0123456789abcdef@example.com', 'Blake Carrow')"
        )
        raws = {"t": sql.Identifier("r", "t")}
        assert verify.verify(c, schema, rules, raws).originals == 2
        c.execute("UPDATE t SET name = 'Avery Ashford'")
        with pytest.raises(
            LeakFound, match=r"original t.email found in t.name \(whole value\)"
        ):
            verify.verify(c, schema, rules, raws)
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db)))


@pytest.mark.parametrize("pair", [False, True], ids=["one-connection", "two-halves"])
def test_stream_verifier_finds_name_words_in_any_case(
    pg_cluster: Cluster, pair: bool
) -> None:
    """A word of an original name inside free text is found whatever its case, in
    ASCII text (the ~* prefilter) and in non-ASCII text (always split), with the
    names split by one connection or in halves by two."""
    db = f"words_{uuid.uuid4().hex[:8]}"
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    rules = parse_rules('salt = "s"\n[tables.t.columns]\nname = "name"\n')
    names = [(f"Person{i} Family{i}",) for i in range(50)] + [
        ("Zoë Lindqvist",),
        ("Åsa Øberg",),
    ]
    try:
        with admin(pg_cluster, db) as c, admin(pg_cluster, db) as c2:
            c.execute("CREATE TABLE t (name text, note text)")
            schema = pg_schema(c)
            c.execute("CREATE SCHEMA r; CREATE TABLE r.t (name text, note text)")
            c.cursor().executemany("INSERT INTO r.t (name) VALUES (%s)", names)
            c.execute("INSERT INTO t VALUES ('Blake Carrow', 'nothing to see')")
            raws = {"t": sql.Identifier("r", "t")}
            kw: dict[str, Any] = {"other": c2, "scratch": "r"} if pair else {}

            def check() -> None:
                verify.verify(c, schema, rules, raws, **kw)
                c.execute("DROP TABLE IF EXISTS r._bdb_words")
                c.execute("DROP TABLE IF EXISTS pg_temp._bdb_words")

            check()
            for note in ("called LINDQVIST today", "ask øberg, please", "FAMILY7!"):
                c.execute("UPDATE t SET note = %s", [note])
                with pytest.raises(
                    LeakFound,
                    match=r"original t.name found in t.note \(name in text\)",
                ):
                    check()
                c.execute("DROP TABLE IF EXISTS r._bdb_words")
                c.execute("DROP TABLE IF EXISTS pg_temp._bdb_words")
    finally:
        with admin(pg_cluster) as c:
            c.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db)))


def test_stream_in_pieces_masks_every_row_and_finds_a_planted_name(
    pg_cluster: Cluster,
) -> None:
    """A table big enough to be copied in halves and masked and verified in pieces
    (each connection taking the next piece): every row is masked once, and a name
    planted in free text of the last page is still found."""
    src = f"pieces_{uuid.uuid4().hex[:8]}"
    with admin(pg_cluster) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(src)))
    rows = 20_000
    try:
        with admin(pg_cluster, src) as c:
            c.execute(
                "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE NOT NULL,"
                " full_name text NOT NULL, note text)"
            )
            c.execute(
                "INSERT INTO people SELECT g, 'p' || g || '@corp.test', "
                "'Given' || chr(97 + g %% 26) || ' Kin' || chr(97 + g %% 7) || 'wood', "
                "repeat('x', 60) FROM generate_series(1, %s) g",
                [rows],
            )
            pages = c.execute("SELECT pg_relation_size('people') / 8192").fetchone()
        assert pages is not None and pages[0] >= 4 * stream_sql.MIN_PIECE_PAGES
        text = (
            'salt = "s"\n[tables.people.columns]\nemail = "email"\n'
            'full_name = "name"\nnote = "keep"\n'
        )
        target, report = _stream(pg_cluster, src, text)
        with admin(pg_cluster, target) as c:
            got = c.execute(
                "SELECT count(*), count(DISTINCT email), "
                "count(*) FILTER (WHERE email LIKE '%@corp.test') FROM people"
            ).fetchone()
        assert got == (rows, rows, 0)
        assert report.verified.originals == 2 * rows
        with admin(pg_cluster, src) as c:
            c.execute(
                "UPDATE people SET note = 'met KINCWOOD at noon' WHERE id = %s",
                [rows],
            )
        with pytest.raises(
            LeakFound,
            match=r"original people.full_name found in people.note \(name in text\)",
        ):
            _stream(pg_cluster, src, text)
    finally:
        with admin(pg_cluster) as c:
            c.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(src))
            )


def test_psql_stream_copies_rows_and_names_the_failing_side(
    pg_cluster: Cluster,
) -> None:
    """pg_copy.Stream pipes COPY between two psql processes: the rows arrive (a
    non-ASCII text included), the count is returned, and a failure on either side
    is a BackendError that says which side and why."""
    dbs = [f"pipe_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin(pg_cluster) as c:
        for db in dbs:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    src, dst = (pg_cluster.url(db) for db in dbs)
    bindir = pg_copy.find_bin(15)
    try:
        with admin(pg_cluster, dbs[0]) as c:
            c.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
            c.execute(
                "INSERT INTO t SELECT g, 'Zoë ' || g FROM generate_series(1, 500) g"
            )
        with admin(pg_cluster, dbs[1]) as c:
            c.execute("CREATE TABLE t (id int PRIMARY KEY, s text)")
        out = "COPY t TO STDOUT (FORMAT binary)"
        into = "COPY t FROM STDIN (FORMAT binary)"
        job = pg_copy.Stream(bindir, src, [], out, dst, ["TRUNCATE t"], into, "copy")
        assert pg_copy.streams([job]) == [500]
        with admin(pg_cluster, dbs[1]) as c:
            assert c.execute(
                "SELECT count(*), max(s) FROM t WHERE s LIKE 'Zoë %'"
            ).fetchone() == (500, "Zoë 99")
        bad = pg_copy.Stream(
            bindir, src, [], "COPY nope TO STDOUT", dst, [], into, "copy of nope"
        )
        with pytest.raises(
            BackendError,
            match=r"copy of nope failed: reading the source .*\"nope\" does not exist",
        ):
            pg_copy.streams([bad])
        # the same rows again: the primary key refuses them, nothing is half-written
        dup = pg_copy.Stream(bindir, src, [], out, dst, [], into, "copy again")
        with pytest.raises(BackendError, match=r"writing the copy .*duplicate key"):
            pg_copy.streams([dup])
        with admin(pg_cluster, dbs[1]) as c:
            assert c.execute("SELECT count(*) FROM t").fetchone() == (500,)
    finally:
        with admin(pg_cluster) as c:
            for db in dbs:
                c.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db))
                )
