"""Rules → set-based PostgreSQL, executed by the server in one transaction.

Per table: ``TRUNCATE`` or ``DELETE … WHERE NOT (where)``, then ONE ``UPDATE`` setting
every masked column (a shuffled column joins a permutation of itself). Foreign keys
are dropped for the duration and re-created at the end, which re-validates them: rows
orphaned by ``where``/``truncate`` are deleted first (:func:`plan.prune`), and a key
masked differently on its two sides fails loudly instead of dangling. User triggers
are disabled around the UPDATE so that an audit trigger cannot copy the originals.

Every fake is ``sha256(salt || value::text)`` sliced exactly as :mod:`fakes` does, so
PostgreSQL and SQLite produce the same fake for the same text. The digest stays
``bytea``: the 7-hex-digit slices are read with ``get_byte`` and only the hex a fake
shows is encoded (parsing hex through ``bit(28)`` costs more than the hash itself).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.plan import (
    ApplyReport,
    Progress,
    masked,
    no_progress,
    prune,
    resolve,
)
from branchdb.daemon.sanitize.rules import ColumnRule, Rules, RulesError, TableRule
from branchdb.daemon.sanitize.schema import Column, ForeignKey, Schema, Table

if TYPE_CHECKING:
    import psycopg
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


def update_statement(
    trule: TableRule, table: Table, rules: Rules
) -> sql.Composed | None:
    """ONE UPDATE for every masked column of *table*, or None if nothing is masked."""
    from psycopg import sql

    cols = masked(trule)
    if not cols:
        return None
    target = sql.Identifier(table.schema, table.name)
    sets, joins = [], []
    for i, r in enumerate(cols):
        col = table.columns[r.column]
        ident = sql.Identifier(col.name)
        if r.strategy != "shuffle":
            sets.append(
                sql.SQL("{} = {}").format(ident, column_expr(r, col, rules.salt_for(r)))
            )
            continue
        # Row k (physical order) takes the k-th value in salted-hash order.
        alias = sql.Identifier(f"_bdb_p{i}")
        order = digest(
            rules.salt_for(r), sql.SQL("coalesce({}::text, '')").format(ident)
        )
        joins.append(
            sql.SQL(
                "JOIN (SELECT {c} AS v, row_number() OVER (ORDER BY {o}, {c}) AS rn "
                "FROM {t}) AS {a} ON {a}.rn = _bdb_r.rn"
            ).format(c=ident, o=order, t=target, a=alias)
        )
        sets.append(sql.SQL("{} = {}.v").format(ident, alias))
    stmt = sql.SQL("UPDATE {} AS _bdb_t SET {}").format(
        target, sql.SQL(", ").join(sets)
    )
    if joins:
        stmt = sql.SQL(
            "{} FROM (SELECT ctid AS id, row_number() OVER (ORDER BY ctid) AS rn "
            "FROM {}) AS _bdb_r {} WHERE _bdb_t.ctid = _bdb_r.id"
        ).format(stmt, target, sql.SQL(" ").join(joins))
    return stmt


def run_statement(conn: psycopg.Connection[Any], stmt: sql.Composed, what: str) -> int:
    """Execute *stmt*; the rows it wrote. A failure is the rules' doing (a where,
    an expression, a key masked on one side): RulesError naming *what*."""
    import psycopg

    from branchdb.daemon.backends.pg_session import describe_error

    try:
        cur = conn.execute(stmt)
    except psycopg.Error as e:
        raise RulesError(f"{what}: {describe_error(e)}") from None
    return max(int(cur.rowcount), 0)


def _delete_orphans(
    conn: psycopg.Connection[Any], schema: Schema, fk: ForeignKey
) -> int:
    from psycopg import sql

    child, parent = schema.tables[fk.child], schema.tables[fk.parent]
    c = [sql.SQL("_c.{}").format(sql.Identifier(x)) for x in fk.child_cols]
    p = [sql.SQL("_p.{}").format(sql.Identifier(x)) for x in fk.parent_cols]
    stmt = sql.SQL(
        "DELETE FROM {} AS _c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS _p WHERE {})"
    ).format(
        sql.Identifier(child.schema, child.name),
        sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(x) for x in c),
        sql.Identifier(parent.schema, parent.name),
        sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(a, b) for a, b in zip(c, p, strict=True)
        ),
    )
    return run_statement(conn, stmt, f"delete rows of {fk.child} orphaned by {fk.name}")


def apply(
    conn: psycopg.Connection[Any],
    schema: Schema,
    rules: Rules,
    progress: Progress = no_progress,
) -> ApplyReport:
    """Apply *rules* to the staging database behind *conn*, all in one transaction.

    Raises RulesError (nothing changed) when a rule cannot hold or a statement fails.
    """
    from psycopg import sql

    pairs = resolve(schema, rules)
    report = ApplyReport()
    with conn.transaction():
        for fk in schema.fks:
            child = schema.tables[fk.child]
            run_statement(
                conn,
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(child.schema, child.name), sql.Identifier(fk.name)
                ),
                f"drop foreign key {fk.name}",
            )
        for trule, table in pairs:
            ident = sql.Identifier(table.schema, table.name)
            if trule.truncate:
                run_statement(
                    conn, sql.SQL("TRUNCATE {}").format(ident), f"truncate {table.key}"
                )
                report.count(table.key, "truncated", table.rows)
                progress(table.key, "truncated", table.rows)
            elif trule.where:
                n = run_statement(
                    conn,
                    sql.SQL("DELETE FROM {} WHERE NOT coalesce(({}), false)").format(
                        ident, sql.SQL(trule.where)
                    ),
                    f"{table.key}: where = {trule.where!r}",
                )
                report.count(table.key, "deleted by where", n)
                progress(table.key, "deleted by where", n)
        prune(
            schema.fks, lambda fk: _delete_orphans(conn, schema, fk), progress, report
        )
        for trule, table in pairs:
            stmt = update_statement(trule, table, rules)
            if stmt is None or trule.truncate:
                continue
            ident = sql.Identifier(table.schema, table.name)
            run_statement(
                conn,
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(ident),
                "disable triggers",
            )
            n = run_statement(
                conn,
                stmt,
                f"mask {table.key} ({', '.join(r.column for r in masked(trule))})",
            )
            run_statement(
                conn,
                sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(ident),
                "enable triggers",
            )
            report.count(table.key, "masked", n)
            report.rules_applied += len(masked(trule))
            progress(table.key, "masked", n)
        for fk in schema.fks:
            child = schema.tables[fk.child]
            run_statement(
                conn,
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(child.schema, child.name),
                    sql.Identifier(fk.name),
                    sql.SQL(fk.definition),
                ),
                f"foreign key {fk.name} ({fk.child} → {fk.parent}) no longer holds "
                "after masking: mask both sides with the same strategy and salt_key",
            )
    report.seconds = time.monotonic() - report.started
    return report
