"""What a SQLite file looks like: its schema, and samples for the detector.

Both only read (``PRAGMA`` listings, and ``SELECT … LIMIT n`` of each table).
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

from branchdb.daemon.sanitize.detect import (
    MAX_VALUE,
    SAMPLE,
    SECONDS,
    Samples,
    by_column,
    sampled_columns,
)
from branchdb.daemon.sanitize.schema import Column, ForeignKey, Schema, Table, q


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


def sqlite_schema(db: sqlite3.Connection) -> Schema:
    """Introspect every table of the ``main`` database (foreign keys included)."""
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


def sample_sqlite(
    db: sqlite3.Connection,
    schema: Schema,
    n: int = SAMPLE,
    seconds: float = SECONDS,
) -> Samples:
    """Up to *n* values of each column that can carry text (BLOBs included), for
    :func:`detect.detect`; a table read taking over *seconds* is given up and
    listed in ``timed_out``."""
    out = Samples(rows=n, seconds=seconds)
    factory = db.text_factory
    # Text that is not UTF-8 is still judged (its readable parts), never an error.
    db.text_factory = lambda b: b.decode("utf-8", "replace")
    try:
        for t in schema.tables.values():
            cols = sampled_columns(t)
            if not cols:
                continue
            listing = ", ".join(
                f"CASE WHEN length(CAST({q(c.name)} AS BLOB)) <= {MAX_VALUE} "
                f"THEN {q(c.name)} END"
                for c in cols
            )
            deadline = time.monotonic() + seconds

            def late(end: float = deadline) -> int:
                return int(time.monotonic() > end)

            db.set_progress_handler(late, 10_000)
            try:
                rows = db.execute(
                    f"SELECT {listing} FROM main.{q(t.name)} LIMIT {int(n)}"
                ).fetchall()
            except sqlite3.OperationalError as e:
                if "interrupted" not in str(e):
                    raise
                out.timed_out.append(t.key)
                continue
            finally:
                db.set_progress_handler(None, 0)
            out.values[t.key] = by_column(cols, rows)
    finally:
        db.text_factory = factory
    return out
