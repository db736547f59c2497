"""Rules → PostgreSQL expressions: the masked value of a column, per strategy.

:func:`column_expr` is what :mod:`stream_sql` selects into the published table in place
of the original. Every fake is ``sha256(salt || value::text)`` sliced exactly as
:mod:`fakes` does, so PostgreSQL and SQLite produce the same fake for the same text. The
digest stays ``bytea``: the 7-hex-digit slices are read with ``get_byte`` and only the
hex a fake shows is encoded (parsing hex through ``bit(28)`` costs more than the hash
itself).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.rules import ColumnRule
from branchdb.daemon.sanitize.schema import Column

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
    rule: ColumnRule, col: Column, salt: str, h: sql.Composable | None = None
) -> sql.Composable:
    """The SQL expression that replaces *col* (NULL stays NULL except for fixed).

    *h*, if given, names a column already holding ``digest_bytes(salt, col)``.
    """
    from psycopg import sql

    v = sql.Identifier(col.name)
    s = rule.strategy
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
