"""The SQL pieces of the PostgreSQL verifier (:mod:`verify`).

The forms a generated value can take (:func:`could_be`), a column's text, the words
of the original names (:func:`fill_words`) and the cheap test of free text worth
splitting into them (:func:`prefilter`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.leaks import FAKE_WORDS, MIN_WORD
from branchdb.daemon.sanitize.rules import ColumnRule
from branchdb.daemon.sanitize.schema import Column, Table
from branchdb.daemon.sanitize.values import jsonpath

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    #: (text of a name column, its origin as a literal, a relation holding originals)
    NamePiece = tuple[sql.Composable, sql.Composable, sql.Composable]

#: Originals shorter than this are ambiguous (not searched).
MIN_LEN = 4
#: What separates the words of a lower-cased name (a PostgreSQL regex).
WORD_SPLIT = "[^[:alpha:]'-]+"
#: WORD_SPLIT for a lower-cased name that is all ASCII, where [:alpha:] is [a-z]
#: (about a fifth cheaper than the class, on the verifier's costliest statement).
ASCII_WORD_SPLIT = "[^a-z'-]+"
#: Up to this many name words, free text is prefiltered with one regex alternation
#: of them (a substring test, cheaper than splitting every value into words).
PREFILTER_WORDS = 256
#: Characters special in a regex (a name word holding one cannot join an alternation).
REGEX_SPECIAL = re.compile(r"[\\^$.|?*+()\[\]{}]")


def long_enough(v: sql.Composable) -> sql.Composable:
    """``length(v) >= MIN_LEN`` without counting the characters of long values (no
    server encoding spends more than 4 bytes on a character)."""
    from psycopg import sql

    return sql.SQL("(octet_length({v}) >= {b} OR length({v}) >= {n})").format(
        v=v, b=sql.Literal(4 * MIN_LEN), n=sql.Literal(MIN_LEN)
    )


def pg_text(ident: sql.Composable, col: Column) -> sql.Composable:
    """The column as text; an address without its /32 (``inet::text`` adds it)."""
    from psycopg import sql

    return sql.SQL("host({})" if col.kind == "inet" else "{}::text").format(ident)


def could_be(
    rule: ColumnRule, col: Column, v: sql.Composable | None = None
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


def texts(
    v: sql.Composable,
    j: int,
    relation: sql.Composable,
    lateral: sql.Composable | None = None,
) -> sql.Composed:
    """The text values *v* of *relation* (as ``_t``), tagged with place *j*; with
    *lateral* (a subquery of ``v`` over ``_t``, :func:`expand`), the texts it
    yields for each row instead."""
    from psycopg import sql

    if lateral is not None:
        return sql.SQL(
            "SELECT _x.v AS v, {} AS j FROM {} AS _t CROSS JOIN LATERAL {} AS _x(v)"
        ).format(sql.Literal(j), relation, lateral)
    return sql.SQL("SELECT {} AS v, {} AS j FROM {} AS _t").format(
        v, sql.Literal(j), relation
    )


def name_pieces(
    sources: list[tuple[Table, Column, ColumnRule]],
    pieces: dict[str, list[sql.Composable]],
) -> list[NamePiece]:
    """(text, origin literal, relation) of every original masked as a name, one per
    piece of the relations holding that table's originals."""
    from psycopg import sql

    return [
        (pg_text(sql.Identifier(c.name), c), sql.Literal(f"{t.key}.{c.name}"), p)
        for t, c, r in sources
        if r.strategy == "name"
        for p in pieces[t.key]
    ]


def fill_words(
    conn: psycopg.Connection[Any], table: sql.Composable, named: list[NamePiece]
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


def prefilter(
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


#: A PL/pgSQL helper (a session's pg_temp): bytes as UTF-8 text, NULL when they
#: are not UTF-8 (convert_from raises instead).
UTF8_FUNCTION = """CREATE OR REPLACE FUNCTION pg_temp.bdb_utf8(b bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN RETURN convert_from(b, 'UTF8'); EXCEPTION WHEN others THEN RETURN NULL; END $$"""

_XML_TEXT = (
    "replace(replace(replace(replace(replace(btrim({}), '&lt;', '<'), '&gt;', '>'),"
    " '&quot;', '\"'), '&apos;', ''''), '&amp;', '&')"
)


def json_texts(doc: sql.Composable, keys: bool = True) -> sql.Composed:
    """Every key and scalar (as text) of the jsonb *doc*, as a subquery of ``v``
    (without *keys*: its strings only)."""
    from psycopg import sql

    if not keys:
        return sql.SQL(
            "(SELECT _bdb_j #>> '{{}}' AS v FROM jsonb_path_query({}, "
            "'strict $.** ? (@.type() == \"string\")') AS _bdb_q(_bdb_j))"
        ).format(doc)
    return sql.SQL(
        "(SELECT coalesce(_bdb_jk, _bdb_j #>> '{{}}') AS v "
        "FROM jsonb_path_query({}, 'strict $.**') AS _bdb_q(_bdb_j) "
        "LEFT JOIN LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(_bdb_j) = "
        "'object' THEN _bdb_j END) AS _bdb_kq(_bdb_jk) ON true "
        "WHERE jsonb_typeof(_bdb_j) NOT IN ('array', 'null') "
        "AND (jsonb_typeof(_bdb_j) <> 'object' OR _bdb_jk IS NOT NULL))"
    ).format(doc)


def expand(v: sql.Composable, col: Column, keys: bool = True) -> sql.Composed:
    """The texts inside the structured value *v* of *col*, as a subquery of one
    column ``v`` (for ``CROSS JOIN LATERAL … AS _x(v)``): JSON keys and scalars
    (json, jsonb, hstore and composites through ``to_jsonb``), array elements,
    bytes decoded as UTF-8 (``pg_temp.bdb_utf8``: :data:`UTF8_FUNCTION`), XML text
    nodes and attribute values. Without *keys* (the originals of a masked
    column), JSON keys and non-string scalars are left out."""
    from psycopg import sql

    if col.kind == "bytes":
        return sql.SQL("(SELECT pg_temp.bdb_utf8({}) AS v)").format(v)
    if col.kind == "array" and col.elem == "bytes":
        return sql.SQL(
            "(SELECT pg_temp.bdb_utf8(_bdb_u.e) AS v FROM unnest({}) AS _bdb_u(e))"
        ).format(v)
    if col.kind == "array" and col.elem == "xml":
        return sql.SQL(
            "(SELECT _bdb_u.e::text AS v FROM unnest({}) AS _bdb_u(e))"
        ).format(v)
    if col.kind == "xml":
        x = sql.SQL("_bdb_x.t")
        return sql.SQL(
            "(SELECT {t} AS v FROM regexp_split_to_table(({v})::text, '<[^>]*>') "
            "AS _bdb_x(t) WHERE _bdb_x.t ~ '\\S' UNION ALL SELECT {a} "
            "FROM regexp_matches(({v})::text, '=\\s*\"([^\"]*)\"', 'g') AS _bdb_m(m))"
        ).format(
            t=sql.SQL(_XML_TEXT).format(x),
            a=sql.SQL(_XML_TEXT).format(sql.SQL("_bdb_m.m[1]")),
            v=v,
        )
    if col.kind == "json":
        return json_texts(sql.SQL("({})::jsonb").format(v), keys)
    return json_texts(sql.SQL("to_jsonb({})").format(v), keys)


def at_paths(v: sql.Composable, col: Column, rule: ColumnRule) -> sql.Composed:
    """The scalars (as text) at and under the paths of the ``json`` *rule* in *v*
    (each element's, for an array of JSON), as a subquery of ``v``."""
    from psycopg import sql

    docs = (
        sql.SQL("SELECT _bdb_u.e::jsonb AS d FROM unnest({}) AS _bdb_u(e)").format(v)
        if col.kind == "array"
        else sql.SQL("SELECT ({})::jsonb AS d").format(v)
    )
    paths = sql.Literal(
        [
            f"lax {jsonpath(segs)}.**"
            for segs, _p, r in rule.paths
            if r.strategy != "keep"
        ]
    )
    return sql.SQL(
        "(SELECT _bdb_j #>> '{{}}' AS v FROM ({}) AS _bdb_d, unnest({}::text[]) AS "
        "_bdb_p(p), jsonb_path_query(_bdb_d.d, _bdb_p.p::jsonpath) AS _bdb_q(_bdb_j) "
        "WHERE jsonb_typeof(_bdb_j) = 'string')"
    ).format(docs, paths)
