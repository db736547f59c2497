"""What a live PostgreSQL database looks like: its schema, and samples for the detector.

Both only read (the catalogs, and ``SELECT … LIMIT n`` of each table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize.detect import (
    MAX_VALUE,
    SAMPLE,
    SECONDS,
    Samples,
    by_column,
    sampled_columns,
)
from branchdb.daemon.sanitize.schema import Column, ForeignKey, Schema, Table, table_key

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


_PG_KINDS = {
    "int2": "int", "int4": "int", "int8": "int",
    "numeric": "numeric", "float4": "numeric", "float8": "numeric", "money": "other",
    "date": "date", "timestamp": "timestamp", "timestamptz": "timestamp",
    "inet": "inet", "cidr": "other", "uuid": "uuid", "bytea": "bytes",
    "json": "json", "jsonb": "json", "xml": "xml", "hstore": "hstore",
}  # fmt: skip


def _types(conn: psycopg.Connection[Any]) -> dict[int, tuple[Any, ...]]:
    """oid → (typname, typcategory, typtype, typelem, typbasetype, typtypmod,
    attributes of a composite, format_type) of every type."""
    return {
        int(r[0]): tuple(r[1:])
        for r in conn.execute(
            """SELECT t.oid, t.typname, t.typcategory, t.typtype, t.typelem,
                      t.typbasetype, t.typtypmod,
                      (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = t.typrelid
                       AND a.attnum > 0 AND NOT a.attisdropped),
                      format_type(t.oid, NULL)
               FROM pg_type t"""
        ).fetchall()
    }


def _kind(
    types: dict[int, tuple[Any, ...]], oid: int, typmod: int
) -> tuple[str, int | None, str, str, int]:
    """(kind, max length, element kind, element type, fields) of type *oid*;
    a domain as its base type (whose modifier it carries)."""
    name, cat, typtype, elem, base, dmod, nattrs, _fmt = types[oid]
    while typtype == "d":
        typmod = dmod if typmod < 0 else typmod
        oid = int(base)
        name, cat, typtype, elem, base, dmod, nattrs, _fmt = types[oid]
    maxlen = typmod - 4 if typmod > 4 and name in ("varchar", "bpchar") else None
    if cat == "A" and elem:
        ekind, emax, _e, _t, _f = _kind(types, int(elem), typmod)
        etype = types[int(elem)][7] if ekind != "other" else ""
        return "array", emax, ekind, etype, 0
    if typtype == "c":
        return "composite", None, "", "", int(nattrs)
    kind = _PG_KINDS.get(name) or ("text" if cat == "S" else "other")
    return kind, maxlen, "", "", 0


def pg_schema(conn: psycopg.Connection[Any]) -> Schema:
    """Introspect every ordinary and partitioned table outside the system schemas."""
    tables: dict[str, Table] = {}
    types = _types(conn)
    rows = conn.execute(
        """SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.atttypid, a.atttypmod, a.attnotnull,
                  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                          AND i.indisunique AND i.indnkeyatts = 1
                          AND i.indkey[0] = a.attnum AND i.indpred IS NULL),
                  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                          AND i.indisprimary AND a.attnum = ANY (i.indkey)),
                  greatest(c.reltuples, 0)::bigint
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
             AND a.attnum > 0 AND NOT a.attisdropped
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg\\_%'
           ORDER BY n.nspname, c.relname, a.attnum"""
    ).fetchall()
    for nsp, rel, col, typ, oid, typmod, notnull, uniq, inpk, est in rows:
        key = table_key(nsp, rel, "public")
        t = tables.setdefault(key, Table(key, nsp, rel, rows=int(est)))
        kind, maxlen, elem, etype, fields = _kind(types, int(oid), int(typmod))
        t.columns[col] = Column(
            col, typ, kind, maxlen, notnull, uniq, elem, etype, fields
        )
        if inpk:
            t.pk.append(col)
    fks = [
        ForeignKey(name, table_key(cn, cr, "public"), tuple(cc),
                   table_key(pn, pr, "public"), tuple(pc), definition)
        for name, cn, cr, pn, pr, cc, pc, definition in conn.execute(
            """SELECT con.conname, cn.nspname, cc.relname, pn.nspname, pc.relname,
                  ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY
                        k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid
                        AND a.attnum = k.n ORDER BY k.i),
                  ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY
                        k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid
                        AND a.attnum = k.n ORDER BY k.i),
                  pg_get_constraintdef(con.oid)
               FROM pg_constraint con
               JOIN pg_class cc ON cc.oid = con.conrelid
               JOIN pg_namespace cn ON cn.oid = cc.relnamespace
               JOIN pg_class pc ON pc.oid = con.confrelid
               JOIN pg_namespace pn ON pn.oid = pc.relnamespace
               WHERE con.contype = 'f' AND con.conparentid = 0
               ORDER BY cn.nspname, cc.relname, con.conname"""
        ).fetchall()
    ]  # fmt: skip
    return Schema(tables, fks)


def _sampled(c: Column) -> sql.Composable:
    """What is read of column *c*: its text (cut), bytes (cut), or JSON text (whole,
    when small enough) of JSON, arrays and composites."""
    from psycopg import sql

    ident = sql.Identifier(c.name)
    small = sql.SQL("pg_column_size({}) <= {}").format(ident, sql.Literal(MAX_VALUE))
    if c.kind == "bytes":
        return sql.SQL("substring({} from 1 for 8192)").format(ident)
    if c.kind in ("array", "composite"):
        return sql.SQL("CASE WHEN {} THEN to_jsonb({})::text END").format(small, ident)
    if c.kind in ("json", "hstore", "xml"):
        return sql.SQL("CASE WHEN {} THEN {}::text END").format(small, ident)
    return sql.SQL("left({}::text, 8192)").format(ident)


def sample_pg(
    conn: psycopg.Connection[Any],
    schema: Schema,
    n: int = SAMPLE,
    seconds: float = SECONDS,
) -> Samples:
    """Up to *n* rows of each column that can carry text, for :func:`detect.detect`.

    Each table's read may take *seconds* (waiting for a lock included); one that
    takes longer is listed in ``timed_out`` (its columns are flagged). Each runs
    in a savepoint, so a timeout leaves the caller's transaction usable.
    """
    import psycopg
    from psycopg import sql

    out = Samples(rows=n, seconds=seconds)
    ms = sql.Literal(f"{int(seconds * 1000)}ms")
    # SET LOCAL outlives a released savepoint: the caller's own values come back.
    before = conn.execute(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
    ).fetchone()
    for t in schema.tables.values():
        cols = sampled_columns(t)
        if not cols:
            continue
        stmt = sql.SQL("SELECT {} FROM {} LIMIT {}").format(
            sql.SQL(", ").join(_sampled(c) for c in cols),
            sql.Identifier(t.schema, t.name),
            sql.Literal(n),
        )
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(ms))
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(ms))
                rows = conn.execute(stmt).fetchall()
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
            out.timed_out.append(t.key)
            continue
        out.values[t.key] = by_column(cols, rows)
    if before and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true)",
            before,
        )
    return out
