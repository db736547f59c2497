"""What sanitizing needs to know about a live schema, for PostgreSQL and SQLite.

Tables are keyed as rules name them: ``users`` for PostgreSQL's ``public`` schema (and
SQLite's ``main``), ``schema.table`` otherwise. Each column gets a coarse *kind*
(text, int, numeric, date, timestamp, inet, uuid, bytes, json, other) that the
compilers use to keep the column's type after masking.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as declared / format_type()
    kind: str
    max_len: int | None
    not_null: bool
    unique: bool  # alone a primary key or unique index


@dataclass
class Table:
    key: str  # how rules name it
    schema: str
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    pk: list[str] = field(default_factory=list)
    rows: int = 0  # an estimate (PostgreSQL: reltuples), for progress only


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child: str  # table keys
    child_cols: tuple[str, ...]
    parent: str
    parent_cols: tuple[str, ...]
    definition: str = ""  # PostgreSQL: pg_get_constraintdef(), to re-create it


@dataclass
class Schema:
    tables: dict[str, Table]
    fks: list[ForeignKey]

    def text_columns(self) -> list[tuple[Table, Column]]:
        return [
            (t, c)
            for t in self.tables.values()
            for c in t.columns.values()
            if c.kind in ("text", "json", "inet")
        ]


def _key(schema: str, name: str, default: str) -> str:
    return name if schema == default else f"{schema}.{name}"


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
        key = _key(nsp, rel, "public")
        t = tables.setdefault(key, Table(key, nsp, rel, rows=int(est)))
        kind = _PG_KINDS.get(typname) or ("text" if cat == "S" else "other")
        t.columns[col] = Column(col, typ, kind, maxlen, notnull, uniq)
        if inpk:
            t.pk.append(col)
    fks = [
        ForeignKey(name, _key(cn, cr, "public"), tuple(cc), _key(pn, pr, "public"),
                   tuple(pc), definition)
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


def _sqlite_kind(declared: str) -> str:
    d = declared.upper()
    if "INT" in d:
        return "int"
    if any(s in d for s in ("CHAR", "CLOB", "TEXT")) or not d:
        return "text"
    if "BLOB" in d:
        return "bytes"
    if "DATETIME" in d or "TIMESTAMP" in d:
        return "timestamp"
    if "DATE" in d:
        return "date"
    if "JSON" in d:
        return "json"
    return "numeric"  # REAL, FLOAT, DOUBLE, NUMERIC, DECIMAL, BOOLEAN …


def q(name: str) -> str:
    """Quote an SQLite identifier (SQLite has no composition library)."""
    return '"' + name.replace('"', '""') + '"'


def sqlite_schema(db: sqlite3.Connection) -> Schema:
    tables: dict[str, Table] = {}
    names = [
        r[0]
        for r in db.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    fks: list[ForeignKey] = []
    for name in names:
        t = Table(name, "main", name)
        info = db.execute(f"PRAGMA main.table_info({q(name)})").fetchall()
        pk = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        single = set()
        for _, idx, unique, _origin, partial in db.execute(
            f"PRAGMA main.index_list({q(name)})"
        ).fetchall():
            cols = db.execute(f"PRAGMA main.index_info({q(idx)})").fetchall()
            if unique and not partial and len(cols) == 1:
                single.add(cols[0][2])
        if len(pk) == 1:
            single.add(pk[0])
        for _cid, col, declared, notnull, _dflt, _pk in info:
            m = re.search(r"CHAR\s*\(\s*(\d+)\s*\)", declared or "", re.I)
            t.columns[col] = Column(
                col,
                declared or "",
                _sqlite_kind(declared or ""),
                int(m.group(1)) if m else None,
                bool(notnull) or (col in pk and "INT" in (declared or "").upper()),
                col in single,
            )
        t.pk = pk
        t.rows = int(db.execute(f"SELECT count(*) FROM main.{q(name)}").fetchone()[0])
        tables[name] = t
        groups: dict[int, list[tuple[Any, ...]]] = {}
        for r in db.execute(f"PRAGMA main.foreign_key_list({q(name)})").fetchall():
            groups.setdefault(r[0], []).append(r)
        for fid, refs in sorted(groups.items()):
            refs.sort(key=lambda r: r[1])
            fks.append(
                ForeignKey(
                    f"{name}_fk{fid}",
                    name,
                    tuple(r[3] for r in refs),
                    refs[0][2],
                    tuple(r[4] for r in refs) if refs[0][4] else (),
                )
            )
    # A reference without column names points at the parent's primary key.
    fixed = [
        fk if fk.parent_cols or fk.parent not in tables
        else ForeignKey(fk.name, fk.child, fk.child_cols, fk.parent,
                        tuple(tables[fk.parent].pk))
        for fk in fks
    ]  # fmt: skip
    return Schema(tables, fixed)
