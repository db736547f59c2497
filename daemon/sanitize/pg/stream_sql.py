"""SQL of the streaming build (:mod:`stream`): mask while copying, prune, check.

Every statement reads the unmasked rows from a raw table and writes only masked rows
(or moves removed rows to a raw "removed" table the verifier still searches). A
statement whose failure is the rules' doing runs under :func:`blame_rules`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize.pg import masking
from branchdb.daemon.sanitize.rules import Rules, RulesError, TableRule
from branchdb.daemon.sanitize.schema import ForeignKey, Schema, Table

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


@contextlib.contextmanager
def blame_rules(describe: Callable[[Exception], str], what: str) -> Iterator[None]:
    """A statement failing inside is the rules' doing (a where, an expression, a key
    masked on one side): RulesError naming *what*, in the server's words."""
    import psycopg

    try:
        yield
    except psycopg.Error as e:
        raise RulesError(f"{what}: {describe(e)}") from None


def insert_masked(
    conn: psycopg.Connection[Any],
    trule: TableRule,
    table: Table,
    cols: list[str],
    raw: sql.Composable,
    rules: Rules,
    utf8: bool,
    describe: Callable[[Exception], str],
) -> int:
    """INSERT the masked rows of *raw* into *table*; rows written."""
    from psycopg import sql

    final = sql.Identifier(table.schema, table.name)
    names = sql.SQL(", ").join(map(sql.Identifier, cols))
    select = masked_select(trule, table, cols, raw, rules, utf8=utf8)
    stmt = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE {}").format(
        final, names, select
    )
    with conn.transaction(), blame_rules(describe, f"mask {table.key}"):
        return execute(conn, stmt)


def copy_sequences(src: psycopg.Connection[Any], dst: psycopg.Connection[Any]) -> None:
    """Set every sequence of the staging database as it is on the source.

    (``--exclude-table-data`` leaves the sequences' values out of the dump too.)
    """
    from psycopg import sql

    for (name,) in src.execute(
        "SELECT c.oid::regclass::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_%'"
    ).fetchall():
        # *name* is PostgreSQL's own quoting of the sequence (regclass output).
        row = src.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(name))
        ).fetchone()
        if row is not None:
            dst.execute("SELECT setval(%s::regclass, %s, %s)", (name, row[0], row[1]))


def copyable(src: psycopg.Connection[Any], table: Table) -> tuple[list[str], bool, int]:
    """(columns COPY can write — not generated —, is the table partitioned, how
    many pages it has)."""
    from psycopg import sql

    row = src.execute(
        sql.SQL(
            "SELECT c.relkind = 'p', c.relpages, "
            "ARRAY(SELECT a.attname FROM pg_attribute a "
            "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "AND a.attgenerated = '' ORDER BY a.attnum) "
            "FROM pg_class c WHERE c.oid = {}::regclass"
        ).format(
            sql.Literal(f"{sql.Identifier(table.schema, table.name).as_string(src)}")
        )
    ).fetchone()
    assert row is not None
    return list(row[2]), bool(row[0]), int(row[1])


def masked_select(
    trule: TableRule,
    table: Table,
    cols: list[str],
    raw: sql.Composable,
    rules: Rules,
    *,
    utf8: bool = False,
) -> sql.Composed:
    """SELECT of *cols* (in order) from *raw*, masked by *trule* (*utf8*: the
    database encoding is UTF8, see :func:`masking.digest_bytes`)."""
    from psycopg import sql

    where = sql.SQL("")  # rows removed by where were moved out of *raw* before
    exprs: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    digests: list[sql.Composable] = []
    for i, name in enumerate(cols):
        rule, col = trule.columns.get(name), table.columns[name]
        ident = sql.Identifier(name)
        if rule is None or rule.strategy == "keep":
            exprs.append(sql.SQL("_bdb_t.{}").format(ident))
        elif rule.strategy in masking.DIGESTED and col.kind != "array":
            # Each digest computed once per row, however often the fake reads it.
            h = sql.Identifier(f"_bdb_h{i}")
            digests.append(sql.SQL("{} AS {}").format(
                masking.digest_bytes(rules.salt_for(rule), ident, utf8=utf8), h
            ))  # fmt: skip
            exprs.append(masking.column_expr(rule, col, rules.salt_for(rule), h))
        elif rule.strategy != "shuffle":
            exprs.append(masking.column_expr(rule, col, rules.salt_for(rule)))
        else:
            # Row k (scan order) takes the k-th value in salted-hash order.
            alias = sql.Identifier(f"_bdb_p{i}")
            order = masking.digest(
                rules.salt_for(rule), sql.SQL("coalesce({}::text, '')").format(ident)
            )
            joins.append(sql.SQL(
                " JOIN (SELECT {c} AS _bdb_v, row_number() OVER (ORDER BY {o}, {c}) "
                "AS _bdb_rn FROM {raw} AS _bdb_t{w}) AS {a} "
                "ON {a}._bdb_rn = _bdb_t._bdb_rn"
            ).format(c=ident, o=order, raw=raw, w=where, a=alias))  # fmt: skip
            exprs.append(sql.SQL("{}._bdb_v").format(alias))
    body = sql.SQL(", ").join(exprs)
    extra = sql.SQL("").join(sql.SQL(", {}").format(d) for d in digests)
    # OFFSET 0: the digests are computed in the subquery, not re-inlined above.
    rows = sql.SQL("(SELECT *{}{} FROM {} AS _bdb_t{} OFFSET 0) AS _bdb_t").format(
        extra,
        sql.SQL(", row_number() OVER () AS _bdb_rn") if joins else sql.SQL(""),
        raw,
        where,
    )
    return sql.SQL("SELECT {} FROM {}{}").format(body, rows, sql.SQL("").join(joins))


def execute(conn: psycopg.Connection[Any], stmt: sql.Composed) -> int:
    """Run *stmt*; the rows it wrote (0 when the server counts none)."""
    return max(int(conn.execute(stmt).rowcount), 0)


def move(
    conn: psycopg.Connection[Any],
    raw: sql.Composable,
    removed: sql.Composable,
    cond: sql.Composable,
) -> int:
    """Move the rows of *raw* matching *cond* (about ``_c``) into *removed*."""
    from psycopg import sql

    return execute(conn, sql.SQL(
        "WITH _bdb_d AS (DELETE FROM {} AS _c WHERE {} RETURNING _c.*) "
        "INSERT INTO {} SELECT * FROM _bdb_d"
    ).format(raw, cond, removed))  # fmt: skip


def delete_orphans(
    conn: psycopg.Connection[Any],
    schema: Schema,
    fk: ForeignKey,
    raws: dict[str, sql.Composable],
    removed: dict[str, sql.Composable],
) -> int:
    """Remove the rows of fk's child whose parent row is gone (raw or final)."""
    from psycopg import sql

    child, parent = schema.tables[fk.child], schema.tables[fk.parent]
    c = [sql.SQL("_c.{}").format(sql.Identifier(x)) for x in fk.child_cols]
    p = [sql.SQL("_p.{}").format(sql.Identifier(x)) for x in fk.parent_cols]
    cond = sql.SQL("{} AND NOT EXISTS (SELECT 1 FROM {} AS _p WHERE {})").format(
        sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(x) for x in c),
        raws.get(fk.parent) or sql.Identifier(parent.schema, parent.name),
        sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(a, b) for a, b in zip(c, p, strict=True)
        ),
    )
    if fk.child in raws:
        return move(conn, raws[fk.child], removed[fk.child], cond)
    stmt = sql.SQL("DELETE FROM {} AS _c WHERE {}").format(
        sql.Identifier(child.schema, child.name), cond
    )
    return execute(conn, stmt)


def check_fks(conn: psycopg.Connection[Any], schema: Schema) -> None:
    """RulesError for the first foreign key the published tables break (a key masked
    differently on its two sides), before post-data would fail on it."""
    from psycopg import sql

    for fk in schema.fks:
        child, parent = schema.tables[fk.child], schema.tables[fk.parent]
        c = [sql.SQL("_c.{}").format(sql.Identifier(x)) for x in fk.child_cols]
        p = [sql.SQL("_p.{}").format(sql.Identifier(x)) for x in fk.parent_cols]
        row = conn.execute(sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} AS _c WHERE {} AND NOT EXISTS "
            "(SELECT 1 FROM {} AS _p WHERE {}))"
        ).format(
            sql.Identifier(child.schema, child.name),
            sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(x) for x in c),
            sql.Identifier(parent.schema, parent.name),
            sql.SQL(" AND ").join(
                sql.SQL("{} = {}").format(a, b) for a, b in zip(c, p, strict=True)
            ),
        )).fetchone()  # fmt: skip
        if row and row[0]:
            raise RulesError(
                f"foreign key {fk.name} ({fk.child} → {fk.parent}) no longer holds "
                "after masking: mask both sides with the same strategy and salt_key"
            )


#: A piece of a table split by :func:`page_ranges` has at least this many pages.
MIN_PIECE_PAGES = 16


def page_ranges(
    conn: psycopg.Connection[Any], table: sql.Composable, n: int
) -> list[sql.Composable]:
    """*table* as up to *n* subqueries over consecutive page ranges (whole if small).

    Many more pieces than connections: each connection takes the next piece when it
    is free (:func:`background.pooled`), so neither core idles at the end.
    """
    from psycopg import sql

    row = conn.execute(
        sql.SQL("SELECT pg_relation_size({}::regclass) / 8192").format(
            sql.Literal(table.as_string(conn))
        )
    ).fetchone()
    pages = int(row[0]) if row else 0
    conds = ctid_ranges(pages, n)
    if len(conds) < 2:
        return [table]
    return [sql.SQL("(SELECT * FROM {} WHERE {})").format(table, c) for c in conds]


def ctid_ranges(pages: int, n: int) -> list[sql.Composable]:
    """Conditions on ``ctid`` cutting *pages* pages into up to *n* consecutive
    ranges of at least MIN_PIECE_PAGES pages (one, ``true``, if too small)."""
    from psycopg import sql

    n = min(n, pages // MIN_PIECE_PAGES)
    if n < 2:
        return [sql.SQL("true")]
    cuts = [pages * i // n for i in range(1, n)]
    out: list[sql.Composable] = []
    for lo, hi in zip([None, *cuts], [*cuts, None], strict=True):
        out.append(sql.SQL(" AND ").join(
            sql.SQL("ctid {} {}::tid").format(sql.SQL(op), sql.Literal(f"({p},0)"))
            for op, p in ((">=", lo), ("<", hi))
            if p is not None
        ))  # fmt: skip
    return out
