"""Prove that no original value of a masked column survives anywhere in the snapshot.

Before masking, :func:`capture_pg`/:func:`capture_sqlite` copy the distinct original
values of every replaced text column (see ``rules.REPLACING``) into a TEMP table of the
staging connection — never into the database file, and gone when the connection
closes. After masking, :func:`verify_pg`/:func:`verify_sqlite` search every text-like
column of every table for them, set-based, three ways per column: whole values (a
hash join on the value), email addresses inside free text (each extracted address
joined to the lower-cased originals), and the words of masked *names* inside free
text (each word joined to the words of the original names, fake-list words excepted).
A hit raises :class:`LeakFound` naming where the original came from and where it was
found — never the value itself.

Originals shorter than ``min_len`` or matching their own strategy's output shape (a
real "Avery Ashford" may also be a generated one) are counted as ``ambiguous`` and not
searched.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import BranchdbError
from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.rules import REPLACING, ColumnRule, Rules
from branchdb.daemon.sanitize.schema import Column, Schema, Table, q

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

TEMP = "_bdb_originals"
WORDS = "_bdb_words"
WORD_SPLIT = "[^[:alpha:]'-]+"  # PostgreSQL ARE; SQLite uses _WORD_SPLIT
MIN_WORD = 4
FAKE_WORDS = sorted(
    w.lower()
    for w in (*fakes.FIRST_NAMES, *fakes.LAST_NAMES, *fakes.STREETS, *fakes.CITIES)
)
EMAIL_TOKEN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
MAX_REPORTED = 20
_RE_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}]")
#: Strategies whose output is generated from the digest alone (never from the text
#: of the original), so that a column they mask holds no free text to search inside.
GENERATED = frozenset({"null", "hash", "email", "name", "phone", "address"})
#: Up to this many name words, free text is prefiltered with one regex alternation
#: of them (a substring test, cheaper than splitting every value into words).
PREFILTER_WORDS = 256


class LeakFound(BranchdbError):
    """An original value of a masked column is still in the snapshot."""

    http_status = 422

    def __init__(self, leaks: list[tuple[str, str, str]]) -> None:
        self.leaks = leaks  # (origin table.column, found in table.column, how)
        lines = "\n".join(f"  original {o} found in {w} ({h})" for o, w, h in leaks)
        super().__init__(
            f"sanitizing leaked {len(leaks)} original value location(s); the snapshot "
            f"was not published:\n{lines}\nMask or drop those columns too (a copy "
            "of a masked column needs the same rule)"
        )


@dataclass
class VerifyReport:
    originals: int = 0
    ambiguous: int = 0
    columns_searched: int = 0
    seconds: float = 0.0
    #: "table.column" keys whose every value was replaced by a GENERATED fake: only
    #: their whole values are searched (they hold no free text of an original).
    generated: set[str] = field(default_factory=set)


def _sources(schema: Schema, rules: Rules) -> list[tuple[Table, Column, ColumnRule]]:
    out = []
    for key, trule in rules.tables.items():
        table = schema.tables.get(key)
        if table is None:
            continue
        for r in trule.columns.values():
            col = table.columns.get(r.column)
            if (
                r.strategy in REPLACING
                and col is not None
                and col.kind in ("text", "inet", "json")
            ):
                out.append((table, col, r))
    return out  # fmt: skip


def _named(schema: Schema, rules: Rules) -> list[str]:
    """Origins whose words are searched in free text (masked person names)."""
    return [
        f"{t.key}.{c.name}"
        for t, c, r in _sources(schema, rules)
        if r.strategy == "name"
    ]


def _shape(rule: ColumnRule) -> str | None:
    return fakes.shape(rule.strategy, rule.part)


# ------------------------------------------------------------------ PostgreSQL
def _pg_text(ident: sql.Composable, col: Column) -> sql.Composable:
    """The column as text; an address without its /32 (``inet::text`` adds it)."""
    from psycopg import sql

    return sql.SQL("host({})" if col.kind == "inet" else "{}::text").format(ident)


def capture_pg(
    conn: psycopg.Connection[Any],
    schema: Schema,
    rules: Rules,
    min_len: int = 4,
    read_from: dict[str, sql.Composable] | None = None,
) -> VerifyReport:
    """Copy the originals of masked columns into a TEMP table (before masking).

    They are read from each table itself, or from ``read_from[table key]`` (a
    relation holding the table's unmasked rows) where given.
    """
    from psycopg import sql

    # Hash aggregates, hash joins and sorts of a few million originals stay in
    # memory; the TEMP tables get local buffers (allocated only as they fill).
    conn.execute("SET work_mem = '256MB'")
    conn.execute("SET temp_buffers = '256MB'")
    conn.execute(
        f"CREATE TEMP TABLE {TEMP} (v text NOT NULL, lv text, origin text NOT NULL)"
    )
    report = VerifyReport()
    for key, trule in rules.tables.items():
        report.generated.update(
            f"{key}.{r.column}"
            for r in trule.columns.values()
            if r.strategy in GENERATED
        )
    for table, col, r in _sources(schema, rules):
        origin = f"{table.key}.{col.name}"
        v = _pg_text(sql.Identifier(col.name), col)
        skip: list[sql.Composable] = [sql.SQL("false")]
        if r.strategy == "fixed":
            skip.append(sql.SQL("v = {}").format(sql.Literal(str(r.value))))
        if shape := _shape(r):
            skip.append(sql.SQL("v ~ {}").format(sql.Literal(shape)))
        # One pass: distinct originals, the ambiguous ones counted and left out.
        row = conn.execute(
            sql.SQL(
                "WITH d AS (SELECT DISTINCT {v} AS v FROM {t} "
                "WHERE {v} IS NOT NULL AND length({v}) >= {n}), "
                "s AS (SELECT v, ({skip}) AS amb FROM d), "
                "i AS (INSERT INTO {tmp} (v, lv, origin) SELECT v, "
                "CASE WHEN v LIKE '%@%' THEN lower(v) END, {o} FROM s "
                "WHERE NOT amb RETURNING 1) "
                "SELECT (SELECT count(*) FROM s WHERE amb), (SELECT count(*) FROM i)"
            ).format(
                tmp=sql.Identifier(TEMP), v=v, o=sql.Literal(origin),
                t=(read_from or {}).get(table.key)
                or sql.Identifier(table.schema, table.name),
                n=sql.Literal(min_len),
                skip=sql.SQL(" OR ").join(skip),
            )
        ).fetchone()  # fmt: skip
        report.ambiguous += int(row[0]) if row else 0
    conn.execute(f"CREATE TEMP TABLE {WORDS} (w text NOT NULL, origin text NOT NULL)")
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT DISTINCT x, o.origin FROM {} AS o, "
            "regexp_split_to_table(lower(o.v), {}) AS x WHERE o.origin = ANY({}) "
            "AND length(x) >= {} AND x <> ALL({})"
        ).format(
            sql.Identifier(WORDS), sql.Identifier(TEMP), sql.Literal(WORD_SPLIT),
            sql.Literal(_named(schema, rules)), sql.Literal(MIN_WORD),
            sql.Literal(FAKE_WORDS),
        )
    )  # fmt: skip
    conn.execute(f"CREATE INDEX ON {WORDS} (w)")
    conn.execute(f"CREATE INDEX ON {TEMP} (v)")
    conn.execute(f"CREATE INDEX ON {TEMP} (lv) WHERE lv IS NOT NULL")
    conn.execute(f"ANALYZE {TEMP}")
    conn.execute(f"ANALYZE {WORDS}")
    row = conn.execute(f"SELECT count(*) FROM {TEMP}").fetchone()
    report.originals = int(row[0]) if row else 0
    return report


def verify_pg(
    conn: psycopg.Connection[Any], schema: Schema, report: VerifyReport
) -> VerifyReport:
    """Search every text-like column for captured originals; raise LeakFound."""
    from psycopg import sql

    started = time.monotonic()
    leaks: list[tuple[str, str, str]] = []
    tmp = sql.Identifier(TEMP)
    has_emails = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {TEMP} WHERE lv IS NOT NULL)"
    ).fetchone()
    row = conn.execute(
        f"SELECT count(*), array_agg(DISTINCT w ORDER BY w) FROM {WORDS}"
    ).fetchone()
    n_words, words = (int(row[0]), list(row[1] or [])) if row else (0, [])
    # A value can hold a name word only if it has the word as a substring: with few
    # words, one regex test skips splitting the values that cannot (every word is
    # letters, apostrophes and hyphens, none special in a regex).
    prefilter = None
    if 0 < n_words <= PREFILTER_WORDS and not any(_RE_SPECIAL.search(w) for w in words):
        prefilter = sql.Literal("(" + "|".join(words) + ")")
    for table, col in schema.text_columns():
        where = f"{table.key}.{col.name}"
        t = sql.Identifier(table.schema, table.name)
        v = _pg_text(sql.Identifier("_t", col.name), col)
        checks = [
            ("whole value", sql.SQL(
                "SELECT o.origin FROM {} AS _t JOIN {} AS o ON o.v = {} LIMIT 1"
            ).format(t, tmp, v)),
        ]  # fmt: skip
        # A column replaced by a generated fake holds no free text: its whole values
        # are searched (above), not the words or addresses inside them.
        free_text = where not in report.generated and col.kind != "inet"
        if free_text and has_emails and has_emails[0]:
            checks.append(("email in text", sql.SQL(
                "SELECT o.origin FROM {} AS _t CROSS JOIN LATERAL "
                "regexp_matches({}, {}, 'g') AS m(a) "
                "JOIN {} AS o ON o.lv = lower(m.a[1]) WHERE {} LIKE '%@%' LIMIT 1"
            ).format(t, v, sql.Literal(f"({EMAIL_TOKEN})"), tmp, v)))  # fmt: skip
        if free_text and n_words:
            checks.append(("name in text", sql.SQL(
                "SELECT o.origin FROM {} AS _t CROSS JOIN LATERAL "
                "regexp_split_to_table(lower({}), {}) AS m(w) "
                "JOIN {} AS o ON o.w = m.w WHERE {} LIMIT 1"
            ).format(
                t, v, sql.Literal(WORD_SPLIT), sql.Identifier(WORDS),
                sql.SQL("lower({}) ~ {}").format(v, prefilter)
                if prefilter is not None
                else sql.SQL("true"),
            )))  # fmt: skip
        for how, stmt in checks:
            row = conn.execute(stmt).fetchone()
            if row:
                leaks.append((str(row[0]), where, how))
        report.columns_searched += 1
    report.seconds = time.monotonic() - started
    if leaks:
        raise LeakFound(leaks[:MAX_REPORTED])
    return report


# ---------------------------------------------------------------------- SQLite
def _emails(text: object) -> str:
    return json.dumps(
        [] if text is None else [m.lower() for m in re.findall(EMAIL_TOKEN, str(text))]
    )


_WORD_SPLIT = re.compile(r"[^\w'-]+|[\d_]+")


def _words(text: object) -> str:
    if text is None:
        return "[]"
    return json.dumps(sorted({w for w in _WORD_SPLIT.split(str(text).lower()) if w}))


def _matches(pattern: str, value: object) -> int:
    return int(value is not None and re.fullmatch(pattern, str(value)) is not None)


def capture_sqlite(
    db: sqlite3.Connection, schema: Schema, rules: Rules, min_len: int = 4
) -> VerifyReport:
    db.create_function("bdb_emails", 1, _emails, deterministic=True)
    db.create_function("bdb_matches", 2, _matches, deterministic=True)
    db.create_function("bdb_words", 1, _words, deterministic=True)
    db.execute(
        f"CREATE TEMP TABLE {TEMP} (v TEXT NOT NULL, lv TEXT, origin TEXT NOT NULL)"
    )
    report = VerifyReport()
    for table, col, r in _sources(schema, rules):
        origin, v = f"{table.key}.{col.name}", f"CAST({q(col.name)} AS TEXT)"
        db.execute(
            f"INSERT INTO temp.{TEMP} (v, origin) SELECT DISTINCT {v}, ? "
            f"FROM main.{q(table.name)} WHERE {v} IS NOT NULL AND length({v}) >= ?",
            (origin, min_len),
        )
        fixed = str(r.value) if r.strategy == "fixed" else None
        cur = db.execute(
            f"DELETE FROM temp.{TEMP} WHERE origin = ? "
            "AND (v IS ? OR bdb_matches(?, v))",
            (origin, fixed, _shape(r) or "(?!)"),
        )
        report.ambiguous += max(cur.rowcount, 0)
    db.execute(f"UPDATE temp.{TEMP} SET lv = lower(v) WHERE v LIKE '%@%'")
    db.execute(f"CREATE TEMP TABLE {WORDS} (w TEXT NOT NULL, origin TEXT NOT NULL)")
    named = _named(schema, rules)
    db.execute(
        f"INSERT INTO temp.{WORDS} SELECT DISTINCT m.value, o.origin "
        f"FROM temp.{TEMP} AS o, json_each(bdb_words(o.v)) AS m "
        f"WHERE o.origin IN (SELECT value FROM json_each(?)) "
        f"AND length(m.value) >= ? AND m.value NOT IN (SELECT value FROM json_each(?))",
        (json.dumps(named), MIN_WORD, json.dumps(FAKE_WORDS)),
    )
    db.execute(f"CREATE INDEX temp.{WORDS}_w ON {WORDS} (w)")
    db.execute(f"CREATE INDEX temp.{TEMP}_v ON {TEMP} (v)")
    db.execute(f"CREATE INDEX temp.{TEMP}_lv ON {TEMP} (lv)")
    report.originals = int(
        db.execute(f"SELECT count(*) FROM temp.{TEMP}").fetchone()[0]
    )
    return report


def verify_sqlite(
    db: sqlite3.Connection, schema: Schema, report: VerifyReport
) -> VerifyReport:
    started = time.monotonic()
    leaks: list[tuple[str, str, str]] = []
    for table, col in schema.text_columns():
        t, v = f"main.{q(table.name)}", f"CAST(_t.{q(col.name)} AS TEXT)"
        checks = [
            ("whole value",
             f"SELECT o.origin FROM {t} AS _t "
             f"JOIN temp.{TEMP} AS o ON o.v = {v} LIMIT 1"),
            ("email in text",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_emails({v})) AS m "
             f"JOIN temp.{TEMP} AS o ON o.lv = m.value WHERE {v} LIKE '%@%' LIMIT 1"),
            ("name in text",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_words({v})) AS m "
             f"JOIN temp.{WORDS} AS o ON o.w = m.value LIMIT 1"),
        ]  # fmt: skip
        for how, stmt in checks:
            row = db.execute(stmt).fetchone()
            if row:
                leaks.append((str(row[0]), f"{table.key}.{col.name}", how))
        report.columns_searched += 1
    report.seconds = time.monotonic() - started
    if leaks:
        raise LeakFound(leaks[:MAX_REPORTED])
    return report
