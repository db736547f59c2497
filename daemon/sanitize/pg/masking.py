"""Rules → PostgreSQL expressions: the masked value of a column, per strategy.

:func:`column_expr` is what :mod:`stream_sql` selects into the published table in place
of the original. Every fake is ``sha256(salt || value::text)`` sliced exactly as
:mod:`fakes` does, so PostgreSQL and SQLite produce the same fake for the same text. The
digest stays ``bytea``: the 7-hex-digit slices are read with ``get_byte`` and only the
hex a fake shows is encoded (parsing hex through ``bit(28)`` costs more than the hash
itself). An array is masked element by element (``unnest … WITH ORDINALITY`` back into
an ``ARRAY``), a JSON document by path: one pass over each level that a path goes
through (``jsonb_each`` / ``jsonb_array_elements`` re-aggregated), the value at the
path replaced by the fake of its text (``#>> '{}'``), exactly as the SQLite side's
Python (:func:`values.mask_json`) does it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize import fakes, values
from branchdb.daemon.sanitize.plan import ELEMENT_WISE
from branchdb.daemon.sanitize.rules import ColumnRule
from branchdb.daemon.sanitize.schema import Column
from branchdb.daemon.sanitize.structured import element

if TYPE_CHECKING:
    from psycopg import sql


def _s(text: str) -> sql.SQL:
    from psycopg import sql

    return sql.SQL(text)


def digest(salt: str, value: sql.Composable) -> sql.Composable:
    """Hex text of the salted digest (the order of ``shuffle``)."""
    from psycopg import sql

    return sql.SQL("encode({}, 'hex')").format(digest_bytes(salt, value))


def digest_bytes(
    salt: str, value: sql.Composable, *, utf8: bool = False
) -> sql.Composable:
    """``sha256(salt || value::text)`` as bytea: what every fake is sliced from.

    *utf8*: the database encoding is UTF8, so the text's own bytes (``textsend``)
    are its UTF-8 bytes, without ``convert_to``'s validating pass over them.
    """
    from psycopg import sql

    if utf8:
        return sql.SQL("sha256(textsend({} || ({})::text))").format(
            sql.Literal(salt), value
        )
    return sql.SQL("sha256(convert_to({} || ({})::text, 'UTF8'))").format(
        sql.Literal(salt), value
    )


def _hex(d: sql.Composable, n: int) -> sql.Composable:
    """The first *n* hex digits of digest *d* (``h[:n]``)."""
    full = _s("encode(substring({} from 1 for {}), 'hex')").format(
        d, _s(str(min((n + 1) // 2, 32)))
    )
    if n % 2 == 0 or n >= 64:
        return full
    return _s("left({}, {})").format(full, _s(str(n)))


def _int(d: sql.Composable, at: int) -> sql.Composable:
    """int(h[at:at+7], 16) of the hex digest h, read from the bytes of *d*."""
    b = [_s("get_byte({}, {})").format(d, _s(str(at // 2 + i))) for i in range(4)]
    if at % 2 == 0:
        return _s("(({} << 20) | ({} << 12) | ({} << 4) | ({} >> 4))").format(*b)
    return _s("((({} & 15) << 24) | ({} << 16) | ({} << 8) | {})").format(*b)


def _pick(words: list[str], h: sql.Composable, at: int) -> sql.Composable:
    from psycopg import sql

    arr = sql.SQL("(ARRAY[{}])").format(sql.SQL(", ").join(map(sql.Literal, words)))
    return sql.SQL("{}[1 + {} % {}]").format(arr, _int(h, at), sql.Literal(len(words)))


def _cut(expr: sql.Composable, col: Column) -> sql.Composable:
    return (
        _s("left({}, {})").format(expr, _s(str(col.max_len))) if col.max_len else expr
    )


def _fake(rule: ColumnRule, col: Column, h: sql.Composable) -> sql.Composable:
    from psycopg import sql

    s = rule.strategy
    if s == "email":
        k = fakes.email_hex(col.max_len)
        if k < 8:
            return _hex(h, col.max_len or fakes.HASH_HEX)
        return sql.SQL("{} || {}").format(_hex(h, k), sql.Literal(fakes.EMAIL_DOMAIN))
    if s == "name":
        first = _pick(fakes.FIRST_NAMES, h, 0)
        last = _pick(fakes.LAST_NAMES, h, 7)
        parts = {"first": first, "last": last}
        out = parts.get(rule.part) or sql.SQL("{} || ' ' || {}").format(first, last)
        return _cut(out, col)
    if s == "phone":
        out = sql.SQL("{} || to_char({} % 10000000, 'FM000\"-\"0000')").format(
            sql.Literal(fakes.PHONE_PREFIX), _int(h, 0)
        )
        return _cut(out, col)
    street = sql.SQL("(1 + {} % 9999)::text || ' ' || {} || ' ' || {}").format(
        _int(h, 0), _pick(fakes.STREETS, h, 7), _pick(fakes.SUFFIXES, h, 14)
    )
    city = _pick(fakes.CITIES, h, 21)
    zipcode = sql.SQL("to_char({} % 100000, 'FM00000')").format(_int(h, 28))
    parts = {"street": street, "city": city, "zip": zipcode}
    full = sql.SQL("{} || ', ' || {} || ' ' || {}").format(street, city, zipcode)
    return _cut(parts.get(rule.part) or full, col)


def _hash(
    col: Column, v: sql.Composable, h: sql.Composable, salt: str
) -> sql.Composable:
    from psycopg import sql

    typ = sql.SQL(col.type)
    if col.kind == "text":
        return _hex(h, min(fakes.HASH_HEX, col.max_len or 64))
    if col.kind == "int":
        big = sql.SQL("('x' || {})::bit(60)::bigint").format(_hex(h, 15))
        mod = {"smallint": 32767, "integer": 2147483647}.get(col.type)
        return (
            sql.SQL("({} % {})::{}").format(big, sql.Literal(mod), typ) if mod else big
        )
    if col.kind == "numeric":
        m = re.fullmatch(r"numeric\((\d+),(\d+)\)", col.type)
        limit = 10 ** (int(m.group(1)) - int(m.group(2))) if m else 1 << 28
        return sql.SQL("({} % {})::{}").format(_int(h, 0), sql.Literal(limit), typ)
    if col.kind == "uuid":
        return sql.SQL("{}::uuid").format(_hex(h, 32))
    if col.kind == "inet":
        return sql.SQL("'10.0.0.0'::inet + ({} >> 4)").format(_int(h, 0))
    return sql.SQL("sha256(convert_to({}, 'UTF8') || {})").format(sql.Literal(salt), v)


#: Strategies whose expression reads the salted digest of the value (some twice).
DIGESTED = frozenset({"hash", "email", "name", "phone", "address", "noise"})


def column_expr(
    rule: ColumnRule,
    col: Column,
    salt: str,
    h: sql.Composable | None = None,
    v: sql.Composable | None = None,
) -> sql.Composable:
    """The SQL expression that replaces *col* (NULL stays NULL except for fixed).

    *h*, if given, names a column already holding ``digest_bytes(salt, col)``;
    *v*, if given, is the value to mask (default: the column itself). An array is
    masked element by element (:func:`_each`), JSON by path (:func:`_json`).
    """
    from psycopg import sql

    v = sql.Identifier(col.name) if v is None else v
    s = rule.strategy
    if col.kind == "array" and s in ELEMENT_WISE:
        return _each(rule, col, salt, v)
    if s == "json":
        return _json(rule, col, salt, v)
    h = digest_bytes(salt, v) if h is None else h
    if s == "null":
        return sql.SQL("NULL")
    if s == "fixed":
        return sql.SQL("{}::{}").format(sql.Literal(rule.value), sql.SQL(col.type))
    if s == "sql":
        return sql.SQL(rule.expr)
    if s == "hash":
        return _hash(col, v, h, salt)
    if s == "noise":
        u = sql.SQL("(2.0 * {} / 268435456 - 1)").format(_int(h, 0))
        if rule.days is not None:
            shift = sql.SQL("({} % {} - {})").format(
                _int(h, 0), sql.Literal(2 * rule.days + 1), sql.Literal(rule.days)
            )
            return sql.SQL("({} + {} * interval '1 day')::{}").format(
                v, shift, sql.SQL(col.type)
            )
        out = sql.SQL("{} * (1 + {} * {})").format(v, sql.Literal(rule.range), u)
        if col.kind == "int":
            out = sql.SQL("round({})").format(out)
        return sql.SQL("({})::{}").format(out, sql.SQL(col.type))
    return _fake(rule, col, h)


def _each(
    rule: ColumnRule, col: Column, salt: str, v: sql.Composable
) -> sql.Composable:
    """Each element of array *v* masked as a value of the element's type (NULL
    elements stay NULL; a multi-dimensional array comes back flat)."""
    from psycopg import sql

    inner = column_expr(rule, element(col), salt, v=sql.SQL("_bdb_e.e"))
    return sql.SQL(
        "(CASE WHEN {v} IS NOT NULL THEN ARRAY(SELECT {i} FROM unnest({v}) "
        "WITH ORDINALITY AS _bdb_e(e, n) ORDER BY _bdb_e.n) END)::{t}"
    ).format(v=v, i=inner, t=sql.SQL(col.type))


#: A JSON value's text, as a text column would hold it (``#>>``: strings unquoted).
_TEXT = "({} #>> '{{}}')"
_PLAIN = Column("", "text", "text", None, False, False)


def _json(
    rule: ColumnRule, col: Column, salt: str, v: sql.Composable
) -> sql.Composable:
    """JSON *v* with the value at each of the rule's paths masked by that path's
    rule, every other key and element kept (a json column comes back through
    jsonb: key order and spacing normalized)."""
    from psycopg import sql

    tree: dict[Any, Any] = {}
    for segments, _path, leaf in rule.paths:
        node = tree
        for seg in segments:
            node = node.setdefault(seg, {})
        node[None] = leaf  # a rule at this node (it wins over deeper ones)
    doc = sql.SQL("({})::jsonb").format(v)
    return sql.SQL("(CASE WHEN {} IS NOT NULL THEN {} END)::{}").format(
        v, _node(doc, tree, salt, 0), sql.SQL(col.type)
    )


def _node(
    x: sql.Composable, tree: dict[Any, Any], salt: str, depth: int
) -> sql.Composable:
    from psycopg import sql

    if None in tree:
        leaf: ColumnRule = tree[None]
        return _leaf(x, leaf, salt)
    keys = {k: t for k, t in tree.items() if isinstance(k, str) and k != values.STAR}
    items = {k: t for k, t in tree.items() if k == values.STAR or isinstance(k, int)}
    k, e, n = (sql.Identifier(f"_bdb_{c}{depth}") for c in "ken")
    cases: list[sql.Composable] = []
    if keys:
        whens = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(
                sql.Literal(values.STAR if key == f'"{values.STAR}"' else key),
                _node(e, sub, salt, depth + 1),
            )
            for key, sub in keys.items()
        )
        cases.append(sql.SQL(
            "WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg({k}, CASE {k} {w} "
            "ELSE {e} END), '{{}}'::jsonb) FROM jsonb_each({x}) AS _bdb_o({k}, {e}))"
        ).format(k=k, e=e, w=whens, x=x))  # fmt: skip
    if items:
        whens = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(
                sql.SQL("true") if i == values.STAR
                else sql.SQL("{} = {}").format(n, sql.Literal(int(i) + 1)),
                _node(e, sub, salt, depth + 1),
            )
            for i, sub in sorted(items.items(), key=lambda p: p[0] == values.STAR)
        )  # fmt: skip
        cases.append(sql.SQL(
            "WHEN 'array' THEN (SELECT coalesce(jsonb_agg(CASE {w} ELSE {e} END "
            "ORDER BY {n}), '[]'::jsonb) FROM jsonb_array_elements({x}) "
            "WITH ORDINALITY AS _bdb_a({e}, {n}))"
        ).format(w=whens, e=e, n=n, x=x))  # fmt: skip
    return sql.SQL("CASE jsonb_typeof({}) {} ELSE {} END").format(
        x, sql.SQL(" ").join(cases), x
    )


def _leaf(x: sql.Composable, leaf: ColumnRule, salt: str) -> sql.Composable:
    """The JSON value *x* replaced by *leaf*'s fake of its text (null stays null)."""
    from psycopg import sql

    s = leaf.strategy
    if s == "keep":
        return x
    if s == "null":
        out: sql.Composable = sql.SQL("'null'::jsonb")
    elif s == "fixed":
        out = sql.SQL("{}::jsonb").format(sql.Literal(json.dumps(leaf.value)))
    else:
        text = sql.SQL(_TEXT).format(x)
        out = sql.SQL("to_jsonb({})").format(column_expr(leaf, _PLAIN, salt, v=text))
    return sql.SQL("CASE WHEN jsonb_typeof({}) = 'null' THEN {} ELSE {} END").format(
        x, x, out
    )
