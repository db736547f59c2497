"""The verifier of the streaming path (:mod:`stream_pg`): originals read in place.

:mod:`verify` (SQLite) copies the originals into TEMP tables before an in-place UPDATE
destroys them. The streaming path still has them, untouched, in its raw tables while it
checks the masked copy, so this verifier reads them there — nothing is copied, sorted or
indexed — in few set-based statements over the whole snapshot:

- **whole values**: every text-like value of every column of every table (one
  ``UNION ALL``) hash-joined to every original of every masked column — except that
  a column filled by a generator (``email``, ``name``, ``phone``, ``address``, text
  ``hash``, ``null``) can only hold values of that generator's form (a fixed prefix
  or suffix, a length, one of a finite list), so its values are joined only to the
  originals of that form (:func:`could_be`), and only when a scan of the raw tables
  counted some (usually none); the same scan gives the originals' shortest and
  longest length in bytes, and values outside that range are not probed (both
  narrowings only when no column uses a nondeterministic collation, under which
  equal texts may differ in bytes);
- **emails in free text**: each address found in a column that is not replaced by a
  generated fake, joined to the lower-cased originals containing ``@``;
- **name words in free text**: each word of such a column joined to the words of the
  masked person names (fake-list words and words under four letters excepted).

The work is a list of jobs over pieces (page ranges) of the tables, run by
:func:`background.pooled` on one or two connections: first the raw tables only
(measures, name words) while the caller may still be freezing the masked tables,
then, once *settled*, the masked tables.

A match is a leak unless the original is *ambiguous* — shorter than four characters,
equal to its rule's fixed value, or shaped like its own strategy's output (a real
"Avery Ashford" may also be a generated one); the ambiguity test runs on matches
only. A leak raises :class:`verify.LeakFound` naming where the original came from and
where it was found, never the value.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize import fakes, stream_sql
from branchdb.daemon.sanitize.background import pooled
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import Schema
from branchdb.daemon.sanitize.verify import (
    EMAIL_TOKEN,
    FAKE_WORDS,
    MAX_REPORTED,
    MIN_WORD,
    PREFILTER_WORDS,
    REGEX_SPECIAL,
    WORD_SPLIT,
    WORDS,
    LeakFound,
    VerifyReport,
    generated_columns,
    original_sources,
    pg_text,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

MIN_LEN = 4
#: WORD_SPLIT for a lower-cased name that is all ASCII, where [:alpha:] is [a-z]
#: (about a fifth cheaper than the class, on the verifier's costliest statement).
ASCII_WORD_SPLIT = "[^a-z'-]+"


def _long_enough(v: sql.Composable) -> sql.Composable:
    """``length(v) >= MIN_LEN`` without counting the characters of long values (no
    server encoding spends more than 4 bytes on a character)."""
    from psycopg import sql

    return sql.SQL("(octet_length({v}) >= {b} OR length({v}) >= {n})").format(
        v=v, b=sql.Literal(4 * MIN_LEN), n=sql.Literal(MIN_LEN)
    )


def could_be(
    rule: Any, col: Any, v: sql.Composable | None = None
) -> sql.Composable | None:
    """A cheap test of *v* (``o.v``) true for every value *rule* can write in *col*.

    None when the rule's output has no such form (then the column's values are
    joined to every original). Pinned against :mod:`fakes` by the tests.
    """
    from psycopg import sql

    s, cut = rule.strategy, col.max_len
    v = sql.SQL("o.v") if v is None else v
    if s == "null":
        return sql.SQL("false")
    if col.kind == "inet" and s == "hash":
        return sql.SQL("left({}, 3) = '10.'").format(v)
    if col.kind != "text":
        return None

    def prefix(p: str) -> sql.Composable:
        p = p[:cut] if cut else p
        like = "".join("\\" + ch if ch in "%_\\" else ch for ch in p) + "%"
        return sql.SQL('{} COLLATE "C" LIKE {}').format(v, sql.Literal(like))

    def one_of(words: list[str]) -> sql.Composable:
        cuts = sorted({w[:cut] if cut else w for w in words})
        return sql.SQL("{} = ANY({})").format(v, sql.Literal(cuts))

    if s == "hash":
        return sql.SQL("length({}) = {}").format(
            v, sql.Literal(min(fakes.HASH_HEX, cut or 64))
        )
    if s == "email":
        if fakes.email_hex(cut) < 8:
            return sql.SQL("length({}) = {}").format(v, sql.Literal(cut or 32))
        return sql.SQL('{} COLLATE "C" LIKE {}').format(
            v, sql.Literal("%" + fakes.EMAIL_DOMAIN)
        )
    if s == "phone":
        return prefix(fakes.PHONE_PREFIX)
    if s == "name":
        first, last = fakes.FIRST_NAMES, fakes.LAST_NAMES
        full = [f"{a} {b}" for a in first for b in last]
        return one_of({"first": first, "last": last}.get(rule.part, full))
    if s == "address":
        if rule.part == "city":
            return one_of(fakes.CITIES)
        # street, zip and full addresses start with a digit
        return sql.SQL("ascii({}) BETWEEN 48 AND 57").format(v)
    return None


def verify(
    conn: psycopg.Connection[Any],
    schema: Schema,
    rules: Rules,
    raws: dict[str, sql.Composable],
    other: psycopg.Connection[Any] | None = None,
    settled: Callable[[], Any] | None = None,
    scratch: str | None = None,
    pieces: dict[str, list[sql.Composable]] | None = None,
) -> VerifyReport:
    """Search the masked tables for the originals held in *raws*; raise LeakFound.

    *raws* maps a table key to the relation holding that table's unmasked rows;
    *pieces*, optionally, to relations that together hold the same rows (page
    ranges), in which the raw-side work is split. With *other* (a second connection
    to the same database) and *scratch* (a schema for the words table both can
    see), the jobs — first on the raw tables (originals measured, names split into
    words), then on the masked ones (whole values, emails, name words in pieces of
    free text) — go to whichever connection is free. *settled* is called between
    the two (e.g. to wait for a VACUUM FREEZE running meanwhile elsewhere: a scan
    of fresh rows sets a hint bit on each).
    """
    from psycopg import sql

    started = time.monotonic()
    # Hash joins: a merge join would sort every value and every original first.
    for c in (conn, other):
        if c is not None:
            c.execute("SET work_mem = '1GB'")
            c.execute("SET enable_mergejoin = off")
            # The checks are already split over the connections, in pieces of page
            # ranges: a parallel plan would scan the whole table for each piece.
            c.execute("SET max_parallel_workers_per_gather = 0")
    report = VerifyReport(generated=generated_columns(rules))
    sources = [
        (t, c, r) for t, c, r in original_sources(schema, rules) if t.key in raws
    ]
    if not sources:
        return report
    ambiguous: list[sql.Composable] = []
    by_table: dict[str, list[tuple[int, sql.Composable]]] = {}
    for k, (table, col, r) in enumerate(sources):
        by_table.setdefault(table.key, []).append(
            (k, pg_text(sql.Identifier(col.name), col))
        )
        amb: list[sql.Composable] = [sql.SQL("false")]
        if r.strategy == "fixed":
            amb.append(sql.SQL("o.v = {}").format(sql.Literal(str(r.value))))
        if shape := fakes.shape(r.strategy, r.part):
            amb.append(sql.SQL("o.v ~ {}").format(sql.Literal(shape)))
        ambiguous.append(sql.SQL("WHEN {} THEN {}").format(
            sql.Literal(k), sql.SQL(" OR ").join(amb)
        ))  # fmt: skip
    # One scan per column (cheaper than a LATERAL VALUES per row).
    parts = [
        sql.SQL("SELECT {v} AS v, {k} AS k FROM {raw} WHERE {ok}").format(
            v=v, k=sql.Literal(k), raw=raws[key], ok=_long_enough(v)
        )
        for key, cols in by_table.items()
        for k, v in cols
    ]
    originals = sql.SQL(" UNION ALL ").join(parts)
    is_amb = sql.SQL("CASE o.k {} ELSE false END").format(sql.SQL(" ").join(ambiguous))

    def hits(join: sql.Composable) -> sql.Composed:
        # OFFSET 0 keeps the ambiguity test (regexes) above the join: it runs on
        # matches only, not on every original.
        return sql.SQL(
            "SELECT DISTINCT o.k, o.j FROM ({} OFFSET 0) AS o WHERE NOT {} LIMIT {}"
        ).format(join, is_amb, sql.Literal(MAX_REPORTED))

    # Rows carry numbers (k: origin, j: place searched), named again in Python:
    # narrow rows keep a few million originals in one in-memory hash table.
    names = [f"{t.key}.{c.name}" for t, c, _r in sources]
    values: list[sql.Composed] = []
    shaped: list[sql.Composed] = []
    forms: list[tuple[Any, Any]] = []
    # Free text (not replaced by a generator): (table, text of a column, place).
    free_of: list[tuple[sql.Composable, sql.Composable, int]] = []
    places: list[str] = []
    column_rules = {
        f"{key}.{r.column}": r for key, tr in rules.tables.items()
        for r in tr.columns.values()
    }  # fmt: skip
    # Lengths and forms narrow the join only under deterministic collations, where
    # equal texts are byte-equal.
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_collation c "
        "ON c.oid = a.attcollation WHERE NOT c.collisdeterministic)"
    ).fetchone()
    by_length = not (row and row[0])
    for table, col in schema.text_columns():
        where = f"{table.key}.{col.name}"
        v = pg_text(sql.Identifier("_t", col.name), col)
        ident = sql.Identifier(table.schema, table.name)
        part = _texts(v, len(places), ident)
        places.append(where)
        form = None
        if where in report.generated and by_length:
            form = could_be(column_rules[where], col)
        if form is None:
            values.append(part)
        else:
            shaped.append(part)
            forms.append((column_rules[where], col))
        if where not in report.generated and col.kind != "inet":
            free_of.append((ident, v, len(places) - 1))
        report.columns_searched += 1

    def any_form(v: sql.Composable) -> sql.Composable:
        """*v* has the form of some generated column's values."""
        tests: dict[str, sql.Composable] = {}
        for rule, col in forms:
            t = could_be(rule, col, v)
            assert t is not None
            tests.setdefault(t.as_string(conn), t)
        return sql.SQL(" OR ").join(tests.values()) if tests else sql.SQL("false")

    def measure_sql(
        cols: list[tuple[int, sql.Composable]], relation: sql.Composable
    ) -> sql.Composed:
        """One scan of *relation*: how many originals, their lengths in bytes, how
        many have the form of some generator (usually none: then no generated
        value is probed)."""
        ok = [_long_enough(v) for _k, v in cols]
        return sql.SQL(
            "SELECT {n}, least({lo}), greatest({hi}), "
            "count(*) FILTER (WHERE {f}) FROM {raw}"
        ).format(
            n=sql.SQL(" + ").join(
                sql.SQL("count(*) FILTER (WHERE {})").format(c) for c in ok
            ),
            lo=sql.SQL(", ").join(
                sql.SQL("min(octet_length({})) FILTER (WHERE {})").format(v, c)
                for (_k, v), c in zip(cols, ok, strict=True)
            ),
            hi=sql.SQL(", ").join(
                sql.SQL("max(octet_length({}))").format(v) for _k, v in cols
            ),
            f=sql.SQL(" OR ").join(
                sql.SQL("({} AND ({}))").format(c, any_form(v))
                for (_k, v), c in zip(cols, ok, strict=True)
            ),
            raw=relation,
        )  # fmt: skip

    def measure(stmt: sql.Composed, c: psycopg.Connection[Any]) -> tuple[Any, ...]:
        row = c.execute(stmt).fetchone()
        return tuple(row) if row else (0, None, None, 0)

    def whole(
        c: psycopg.Connection[Any], measured: tuple[Any, ...]
    ) -> list[tuple[int, int]]:
        """(origin, place) of each whole-value leak."""
        n, lo, hi, shaped_n = measured
        joins: list[sql.Composable] = []
        if values and n:
            fit: sql.Composable = sql.SQL("")
            if by_length:
                fit = sql.SQL(" WHERE octet_length(f.v) BETWEEN {} AND {}").format(
                    sql.Literal(lo), sql.Literal(hi)
                )
            joins.append(sql.SQL(
                "SELECT o.k, o.v, f.j FROM (SELECT * FROM ({}) AS f{}) AS f "
                "JOIN ({}) AS o ON o.v = f.v"
            ).format(sql.SQL(" UNION ALL ").join(values), fit, originals))  # fmt: skip
        if shaped and shaped_n:
            # Only originals of a generator's form can equal a generated value.
            joins.append(sql.SQL(
                "SELECT o.k, o.v, f.j FROM ({}) AS f JOIN (SELECT * FROM ({}) AS o "
                "WHERE {}) AS o ON o.v = f.v"
            ).format(sql.SQL(" UNION ALL ").join(shaped), originals,
                     any_form(sql.SQL("o.v"))))  # fmt: skip
        if not joins:
            return []
        stmt = hits(sql.SQL(" UNION ALL ").join(joins))
        return [(int(k), int(j)) for k, j in c.execute(stmt).fetchall()]

    email_check: sql.Composed | None = None
    words_table = sql.Identifier(*([scratch] if scratch else []), WORDS)
    if free_of:
        email_check = hits(sql.SQL(
            "SELECT o.k, o.v, f.j FROM (SELECT lower(m.a[1]) AS e, f0.j "
            "FROM ({t}) AS f0 CROSS JOIN LATERAL "
            "regexp_matches(f0.v, {re}, 'g') AS m(a) WHERE f0.v LIKE '%@%') AS f "
            "JOIN (SELECT lower(v) AS lv, * FROM ({o}) AS o0 "
            "WHERE v LIKE '%@%') AS o ON o.lv = f.e"
        ).format(t=sql.SQL(" UNION ALL ").join(
                     _texts(v, j, ident) for ident, v, j in free_of),
                 re=sql.Literal(f"({EMAIL_TOKEN})"), o=originals))  # fmt: skip

    def by_value(
        measured: tuple[Any, ...], c: psycopg.Connection[Any]
    ) -> list[tuple[str, str, str]]:
        return [(names[k], places[j], "whole value") for k, j in whole(c, measured)]

    def by_email(c: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
        assert email_check is not None
        return [
            (names[k], places[j], "email in text")
            for k, j in c.execute(email_check).fetchall()
        ]

    def by_name(
        texts: sql.Composable, pre: sql.Composable, c: psycopg.Connection[Any]
    ) -> list[tuple[str, str, str]]:
        stmt = sql.SQL(
            "SELECT DISTINCT o.origin, f.j FROM ({t}) AS f CROSS JOIN LATERAL "
            "regexp_split_to_table(lower(f.v), {sp}) AS m(w) JOIN {words} AS o "
            "ON o.w = m.w COLLATE \"C\" WHERE {pre} LIMIT {n}"
        ).format(t=texts, sp=sql.Literal(WORD_SPLIT), words=words_table, pre=pre,
                 n=sql.Literal(MAX_REPORTED))  # fmt: skip
        return [(str(o), places[j], "name in text") for o, j in c.execute(stmt)]

    conns = [conn] if other is None else [conn, other]
    pieces = pieces or {key: [raws[key]] for key in by_table}
    # First, on the raw tables only (while *settled* may still be working on the
    # masked ones): the originals measured and the original names split into
    # words, piece by piece, by whichever connection is free.
    named = _named(sources, pieces) if free_of else []
    if named:
        conn.execute(sql.SQL(
            "CREATE {} TABLE {} (w text COLLATE \"C\", origin text)"
        ).format(sql.SQL("UNLOGGED" if scratch else "TEMP"), words_table))  # fmt: skip
    first = [
        functools.partial(measure, measure_sql(cols, piece))
        for key, cols in by_table.items()
        for piece in pieces[key]
    ]
    fills: list[Callable[[Any], Any]] = [
        functools.partial(_fill_words, table=words_table, named=[one]) for one in named
    ]
    # (a TEMP words table is seen by its own connection only)
    measures = pooled(conns if scratch else [conn], [*fills, *first])[len(fills) :]
    n = sum(int(m[0] or 0) for m in measures)
    lows = [m[1] for m in measures if m[1] is not None]
    highs = [m[2] for m in measures if m[2] is not None]
    measured = (
        n, min(lows) if lows else None, max(highs) if highs else None,
        sum(int(m[3] or 0) for m in measures),
    )  # fmt: skip
    report.originals = n
    pre = _prefilter(conn, words_table) if named else None
    # Then the masked tables: whole values, emails, and name words in free text
    # (the most expensive check: in pieces of each table's pages).
    if settled is not None:
        settled()
    checks: list[Callable[[Any], list[tuple[str, str, str]]]] = []
    if pre is not None:
        for relation, v, j in free_of:
            for piece in stream_sql.page_ranges(conn, relation, 8 if other else 1):
                checks.append(functools.partial(by_name, _texts(v, j, piece), pre))
    checks.append(functools.partial(by_value, measured))
    if email_check is not None:
        checks.append(by_email)
    leaks = [leak for out in pooled(conns, checks) for leak in out]
    report.seconds = time.monotonic() - started
    if leaks:
        raise LeakFound(leaks[:MAX_REPORTED])
    return report


def _texts(v: sql.Composable, j: int, relation: sql.Composable) -> sql.Composed:
    """The text values *v* of *relation* (as ``_t``), tagged with place *j*."""
    from psycopg import sql

    return sql.SQL("SELECT {} AS v, {} AS j FROM {} AS _t").format(
        v, sql.Literal(j), relation
    )


def _named(sources: list[Any], pieces: dict[str, list[sql.Composable]]) -> list[Any]:
    """(text, origin literal, relation) of every original masked as a name, one per
    piece of the relations holding that table's originals."""
    from psycopg import sql

    return [
        (pg_text(sql.Identifier(c.name), c), sql.Literal(f"{t.key}.{c.name}"), p)
        for t, c, r in sources
        if r.strategy == "name"
        for p in pieces[t.key]
    ]


def _fill_words(
    conn: psycopg.Connection[Any], table: sql.Composable, named: list[Any]
) -> None:
    """Add the distinct words of the original names in *named* to *table*."""
    from psycopg import sql

    names = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT lower({}) AS v, {} AS origin FROM {} WHERE {} IS NOT NULL"
        ).format(v, o, r, v)
        for v, o, r in named
    )
    # Words of an ambiguous (fake-shaped) name are all fake-list words: excepted.
    conn.execute(
        sql.SQL(
            "INSERT INTO {w} SELECT x, origin FROM (SELECT DISTINCT x, origin "
            "FROM (SELECT regexp_split_to_table(o.v, CASE WHEN octet_length(o.v) "
            "= length(o.v) THEN {ascii} ELSE {sp} END) AS x, o.origin "
            "FROM ({n}) AS o) AS s WHERE length(x) >= {m}) AS d "
            "WHERE x <> ALL({fake})"
        ).format(
            w=table, n=names, sp=sql.Literal(WORD_SPLIT),
            ascii=sql.Literal(ASCII_WORD_SPLIT), m=sql.Literal(MIN_WORD),
            fake=sql.Literal(FAKE_WORDS),
        )
    )  # fmt: skip


def _prefilter(
    conn: psycopg.Connection[Any], table: sql.Composable
) -> sql.Composable | None:
    """The test of free text *f.v* worth splitting into words, or None (no words)."""
    from psycopg import sql

    row = conn.execute(sql.SQL(
        "SELECT count(DISTINCT w), (array_agg(DISTINCT w ORDER BY w))[1:{}] FROM {}"
    ).format(sql.Literal(PREFILTER_WORDS), table)).fetchone()  # fmt: skip
    n_words, words = (int(row[0]), list(row[1] or [])) if row else (0, [])
    if not n_words:
        return None
    conn.execute(sql.SQL("ANALYZE {}").format(table))
    if n_words <= PREFILTER_WORDS and not any(REGEX_SPECIAL.search(w) for w in words):
        # For ASCII text, ~* is the substring test of lower(); other text is split.
        return sql.SQL("(f.v ~* {} OR octet_length(f.v) <> length(f.v))").format(
            sql.Literal("(" + "|".join(words) + ")")
        )
    return sql.SQL("true")
