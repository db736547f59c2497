"""What a live PostgreSQL database looks like: its schema, and samples for the detector.

Both only read (the catalogs, and ``SELECT … LIMIT n`` of each table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize.detect import SAMPLE, by_column, sampled_columns
from branchdb.daemon.sanitize.schema import Column, ForeignKey, Schema, Table, table_key

if TYPE_CHECKING:
    import psycopg


_PG_KINDS = {
    "int2": "int", "int4": "int", "int8": "int",
    "numeric": "numeric", "float4": "numeric", "float8": "numeric", "money": "other",
    "date": "date", "timestamp": "timestamp", "timestamptz": "timestamp",
    "inet": "inet", "cidr": "other", "uuid": "uuid", "bytea": "bytes",
    "json": "json", "jsonb": "json",
}  # fmt: skip


def pg_schema(conn: psycopg.Connection[Any]) -> Schema:
    """Introspect every ordinary and partitioned table outside the system schemas."""
    tables: dict[str, Table] = {}
    rows = conn.execute(
        """SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  t.typname, t.typcategory, a.attnotnull,
                  CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4
                       THEN a.atttypmod - 4 END,
                  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                          AND i.indisunique AND i.indnkeyatts = 1
                          AND i.indkey[0] = a.attnum AND i.indpred IS NULL),
                  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                          AND i.indisprimary AND a.attnum = ANY (i.indkey)),
                  greatest(c.reltuples, 0)::bigint
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_type t ON t.oid = a.atttypid
           WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
             AND a.attnum > 0 AND NOT a.attisdropped
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg\\_%'
           ORDER BY n.nspname, c.relname, a.attnum"""
    ).fetchall()
    for nsp, rel, col, typ, typname, cat, notnull, maxlen, uniq, inpk, est in rows:
        key = table_key(nsp, rel, "public")
        t = tables.setdefault(key, Table(key, nsp, rel, rows=int(est)))
        kind = _PG_KINDS.get(typname) or ("text" if cat == "S" else "other")
        t.columns[col] = Column(col, typ, kind, maxlen, notnull, uniq)
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


def sample_pg(
    conn: psycopg.Connection[Any], schema: Schema, n: int = SAMPLE
) -> dict[str, dict[str, list[str]]]:
    """Up to *n* values of each text-like column, for :func:`detect.detect`."""
    from psycopg import sql

    out: dict[str, dict[str, list[str]]] = {}
    for t in schema.tables.values():
        cols = sampled_columns(t)
        if not cols:
            continue
        stmt = sql.SQL("SELECT {} FROM {} LIMIT {}").format(
            sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(c.name)) for c in cols
            ),
            sql.Identifier(t.schema, t.name),
            sql.Literal(n),
        )
        out[t.key] = by_column(cols, conn.execute(stmt).fetchall())
    return out
