"""The verifier of the streaming build (:mod:`stream`): originals read in place.

The SQLite verifier (:mod:`sqlite.verify`) copies the originals into TEMP tables
before an in-place UPDATE destroys them. The streaming build still has them,
untouched, in its raw tables while it checks the masked copy, so this verifier reads
them there — nothing is copied, sorted or indexed — in few set-based statements over
the whole snapshot (the searches :mod:`leaks` describes):

- **whole values**: every text-like value of every column of every table (one
  ``UNION ALL``) hash-joined to every original of every masked column — except that a
  column filled by a generator (``email``, ``name``, ``phone``, ``address``, text
  ``hash``, ``null``) can only hold values of that generator's form (a fixed prefix or
  suffix, a length, one of a finite list), so its values are joined only to the
  originals of that form (:func:`verify_sql.could_be`), and only when a scan of the raw
  tables counted some (usually none); the same scan gives the originals' shortest and
  longest length in bytes, and values outside that range are not probed (both
  narrowings only when no column uses a nondeterministic collation, under which equal
  texts may differ in bytes);
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
only. A leak raises :class:`leaks.LeakFound` naming where the original came from and
where it was found, never the value.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.leaks import (
    EMAIL_TOKEN,
    MAX_REPORTED,
    WORDS,
    LeakFound,
    VerifyReport,
    generated_columns,
    original_sources,
)
from branchdb.daemon.sanitize.pg import stream_sql
from branchdb.daemon.sanitize.pg.background import pooled
from branchdb.daemon.sanitize.pg.verify_sql import (
    UTF8_FUNCTION,
    WORD_SPLIT,
    at_paths,
    could_be,
    expand,
    fill_words,
    long_enough,
    name_pieces,
    pg_text,
    prefilter,
    texts,
)
from branchdb.daemon.sanitize.plan import ELEMENT_WISE
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import Schema

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


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
    # Structured columns: the texts inside (a subquery of v over the raw row).
    inside: dict[str, list[tuple[int, sql.Composable]]] = {}
    for k, (table, col, r) in enumerate(sources):
        ident = sql.Identifier(col.name)
        if r.strategy == "json":  # the values at its paths, not the document
            inside.setdefault(table.key, []).append((k, at_paths(ident, col, r)))
        elif not col.structured:
            by_table.setdefault(table.key, []).append((k, pg_text(ident, col)))
        else:
            x = expand(ident, col, False)
            if col.kind != "array" or r.strategy not in ELEMENT_WISE:
                # Masked whole: a lone word inside (a label, an enum value) is no
                # evidence of a copy; texts with a digit, space or @ are searched.
                x = sql.SQL(
                    "(SELECT v FROM {} AS _w WHERE v !~ '^[[:alpha:]]+$')"
                ).format(x)
            inside.setdefault(table.key, []).append((k, x))
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
            v=v, k=sql.Literal(k), raw=raws[key], ok=long_enough(v)
        )
        for key, cols in by_table.items()
        for k, v in cols
    ]
    parts += [
        sql.SQL(
            "SELECT _x.v AS v, {k} AS k FROM {raw} CROSS JOIN LATERAL {x} AS _x(v) "
            "WHERE {ok}"
        ).format(k=sql.Literal(k), raw=raws[key], x=x, ok=long_enough(sql.SQL("_x.v")))
        for key, cols in inside.items()
        for k, x in cols
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
    free_of: list[tuple[sql.Composable, sql.Composable, int, Any]] = []
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
        part = texts(v, len(places), ident)
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
            free_of.append((ident, v, len(places) - 1, None))
        report.columns_searched += 1

    for table, col in schema.structured_columns():
        ident = sql.Identifier(table.schema, table.name)
        x = expand(sql.Identifier("_t", col.name), col)
        j = len(places)
        places.append(f"{table.key}.{col.name}")
        values.append(texts(sql.SQL("_x.v"), j, ident, x))
        free_of.append((ident, sql.SQL("_x.v"), j, x))
        report.columns_searched += 1
    if any(
        c.kind == "bytes" or c.elem == "bytes" for _t, c in schema.structured_columns()
    ):
        for c in (conn, other):
            if c is not None:
                c.execute(UTF8_FUNCTION)

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
        ok = [long_enough(v) for _k, v in cols]
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

    def measure_inside(
        cols: list[tuple[int, sql.Composable]], relation: sql.Composable
    ) -> sql.Composed:
        """measure_sql for the texts inside structured columns of *relation*."""
        ok = long_enough(sql.SQL("_x.v"))
        return sql.SQL(
            "SELECT count(*), min(octet_length(o.v)), max(octet_length(o.v)), "
            "count(*) FILTER (WHERE {f}) FROM ({u}) AS o"
        ).format(
            f=any_form(sql.SQL("o.v")),
            u=sql.SQL(" UNION ALL ").join(
                sql.SQL(
                    "SELECT _x.v AS v FROM {} CROSS JOIN LATERAL {} AS _x(v) WHERE {}"
                ).format(relation, x, ok)
                for _k, x in cols
            ),
        )

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
                     texts(v, j, ident, x) for ident, v, j, x in free_of),
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
    pieces = pieces or {key: [raws[key]] for key in (*by_table, *inside)}
    # First, on the raw tables only (while *settled* may still be working on the
    # masked ones): the originals measured and the original names split into
    # words, piece by piece, by whichever connection is free.
    named = name_pieces(sources, pieces) if free_of else []
    if named:
        conn.execute(sql.SQL(
            "CREATE {} TABLE {} (w text COLLATE \"C\", origin text)"
        ).format(sql.SQL("UNLOGGED" if scratch else "TEMP"), words_table))  # fmt: skip
    first = [
        functools.partial(measure, measure_sql(cols, piece))
        for key, cols in by_table.items()
        for piece in pieces[key]
    ] + [
        functools.partial(measure, measure_inside(cols, piece))
        for key, cols in inside.items()
        for piece in pieces[key]
    ]
    fills: list[Callable[[Any], Any]] = [
        functools.partial(fill_words, table=words_table, named=[one]) for one in named
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
    pre = prefilter(conn, words_table) if named else None
    # Then the masked tables: whole values, emails, and name words in free text
    # (the most expensive check: in pieces of each table's pages).
    if settled is not None:
        settled()
    checks: list[Callable[[Any], list[tuple[str, str, str]]]] = []
    if pre is not None:
        for relation, v, j, x in free_of:
            for piece in stream_sql.page_ranges(conn, relation, 8 if other else 1):
                checks.append(functools.partial(by_name, texts(v, j, piece, x), pre))
    checks.append(functools.partial(by_value, measured))
    if email_check is not None:
        checks.append(by_email)
    leaks = [leak for out in pooled(conns, checks) for leak in out]
    report.seconds = time.monotonic() - started
    if leaks:
        raise LeakFound(leaks[:MAX_REPORTED])
    return report
