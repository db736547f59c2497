"""Rules → set-based SQLite, executed in one transaction on the staging file.

SQLite has no sha256: :func:`register` adds deterministic Python functions to the
connection (``create_function(..., deterministic=True)``); SQLite calls them once per
row *inside* one UPDATE per table, exactly like a built-in. They compute the same
digests and fakes as PostgreSQL (see :mod:`fakes`).

Foreign keys are not enforced while masking (``PRAGMA foreign_keys`` is off outside
the transaction); rows orphaned by ``where``/``truncate`` are deleted, and
``PRAGMA foreign_key_check`` must come back empty before the transaction commits.
Triggers are dropped for the duration and re-created, so none copies an original.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time

from branchdb.daemon.sanitize import fakes, values
from branchdb.daemon.sanitize.plan import (
    ApplyReport,
    Progress,
    masked,
    no_progress,
    prune,
    resolve,
)
from branchdb.daemon.sanitize.rules import ColumnRule, Rules, RulesError, TableRule
from branchdb.daemon.sanitize.schema import Column, ForeignKey, Schema, Table, q


def _digest(salt: str, v: object) -> str | None:
    return fakes.digest(salt, v)


def _int(salt: str, v: object, at: int) -> int | None:
    h = fakes.digest(salt, v)
    return None if h is None else int(h[at : at + 7], 16)


def _bigint(salt: str, v: object, mod: int) -> int | None:
    h = fakes.digest(salt, v)
    if h is None:
        return None
    n = int(h[:15], 16)
    return n % mod if mod else n


def _bytes(salt: str, v: object) -> bytes | None:
    import hashlib

    if v is None:
        return None
    raw = v if isinstance(v, bytes) else str(v).encode()
    return hashlib.sha256(salt.encode() + raw).digest()


def _fake(strategy: str, part: str, max_len: int, salt: str, v: object) -> str | None:
    h = fakes.digest(salt, v)
    return None if h is None else fakes.fake(strategy, h, part, max_len or None)


def _json(spec: str, salt: str, v: object) -> str | None:
    """JSON text *v* with the values at the paths of *spec* masked (see
    :func:`values.mask_json`); text that is not JSON is an error (the rule fails)."""
    if v is None:
        return None
    text = v.decode() if isinstance(v, bytes) else str(v)
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(
            "a value is not JSON: strategy 'json' cannot read it"
        ) from None

    def fake(strategy: str, part: str, leaf: str, value: object) -> object:
        if strategy == "null":
            return None
        if strategy == "fixed":
            return value
        return fakes.fake(strategy, fakes.digest(salt, leaf) or "", part, None)

    paths = [(tuple(p), s, part, value) for p, s, part, value in json.loads(spec)]
    return json.dumps(values.mask_json(doc, paths, fake), ensure_ascii=False)


def register(db: sqlite3.Connection) -> None:
    """Add the bdb_* functions the compiled SQL calls (idempotent)."""
    for name, n, fn in (
        ("bdb_digest", 2, _digest),
        ("bdb_int", 3, _int),
        ("bdb_bigint", 3, _bigint),
        ("bdb_sha256", 2, _bytes),
        ("bdb_fake", 5, _fake),
        ("bdb_json", 3, _json),
    ):
        db.create_function(name, n, fn, deterministic=True)


def lit(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def column_expr(rule: ColumnRule, col: Column, salt: str) -> str:
    v, s, salt_sql = q(col.name), rule.strategy, lit(salt)
    if s == "null":
        return "NULL"
    if s == "fixed":
        return lit(rule.value)
    if s == "sql":
        return rule.expr
    if s == "json":
        spec = json.dumps(
            [[list(p), r.strategy, r.part, r.value] for p, _path, r in rule.paths]
        )
        return f"bdb_json({lit(spec)}, {salt_sql}, {v})"
    if s == "hash":
        if col.kind == "text":
            n = min(fakes.HASH_HEX, col.max_len or fakes.HASH_HEX)
            return f"substr(bdb_digest({salt_sql}, {v}), 1, {n})"
        if col.kind == "int":
            return f"bdb_bigint({salt_sql}, {v}, 0)"
        if col.kind == "numeric":
            m = re.search(r"\((\d+)\s*,\s*(\d+)\)", col.type)
            limit = 10 ** (int(m.group(1)) - int(m.group(2))) if m else 1 << 28
            return f"bdb_int({salt_sql}, {v}, 0) % {limit}"
        return f"bdb_sha256({salt_sql}, {v})"
    if s == "noise":
        if rule.days is not None:
            fn = "date" if col.kind == "date" else "datetime"
            shift = f"bdb_int({salt_sql}, {v}, 0) % {2 * rule.days + 1} - {rule.days}"
            return f"{fn}({v}, printf('%+d days', {shift}))"
        u = f"(2.0 * bdb_int({salt_sql}, {v}, 0) / 268435456 - 1)"
        out = f"{v} * (1 + {rule.range!r} * {u})"
        return f"CAST(round({out}) AS INTEGER)" if col.kind == "int" else out
    return f"bdb_fake({lit(s)}, {lit(rule.part)}, {col.max_len or 0}, {salt_sql}, {v})"


def update_statement(trule: TableRule, table: Table, rules: Rules) -> str | None:
    """ONE UPDATE for every masked column of *table*, or None if nothing is masked."""
    cols = masked(trule)
    if not cols:
        return None
    t = f"main.{q(table.name)}"
    sets, joins = [], []
    for i, r in enumerate(cols):
        col = table.columns[r.column]
        if r.strategy != "shuffle":
            sets.append(f"{q(col.name)} = {column_expr(r, col, rules.salt_for(r))}")
            continue
        # Row k (rowid order) takes the k-th value in salted-hash order.
        c, salt = q(col.name), lit(rules.salt_for(r))
        joins.append(
            f"JOIN (SELECT {c} AS v, row_number() OVER (ORDER BY "
            f"bdb_digest({salt}, coalesce({c}, '')), {c}) AS rn FROM {t}) AS _bdb_p{i} "
            f"ON _bdb_p{i}.rn = _bdb_r.rn"
        )
        sets.append(f"{c} = _bdb_p{i}.v")
    stmt = f"UPDATE {t} SET {', '.join(sets)}"
    if joins:
        stmt += (
            f" FROM (SELECT rowid AS id, row_number() OVER (ORDER BY rowid) AS rn "
            f"FROM {t}) AS _bdb_r {' '.join(joins)} "
            f"WHERE {q(table.name)}.rowid = _bdb_r.id"
        )
    return stmt


def _run(db: sqlite3.Connection, stmt: str, what: str) -> int:
    try:
        return max(db.execute(stmt).rowcount, 0)
    except sqlite3.Error as e:
        raise RulesError(f"{what}: {e}") from None


def _delete_orphans(db: sqlite3.Connection, fk: ForeignKey) -> int:
    if not fk.parent_cols:
        return 0  # references a table that does not exist: nothing to check against
    c = [f"_c.{q(x)}" for x in fk.child_cols]
    p = [f"_p.{q(x)}" for x in fk.parent_cols]
    stmt = (
        f"DELETE FROM main.{q(fk.child)} AS _c WHERE "
        + " AND ".join(f"{x} IS NOT NULL" for x in c)
        + f" AND NOT EXISTS (SELECT 1 FROM main.{q(fk.parent)} AS _p WHERE "
        + " AND ".join(f"{a} = {b}" for a, b in zip(c, p, strict=True))
        + ")"
    )
    return _run(db, stmt, f"delete rows of {fk.child} orphaned by its foreign key")


def apply(
    db: sqlite3.Connection,
    schema: Schema,
    rules: Rules,
    progress: Progress = no_progress,
) -> ApplyReport:
    """Apply *rules* to the staging file behind *db* (opened with isolation_level=None).

    One transaction: on any error nothing is changed and RulesError is raised.
    """
    pairs = resolve(schema, rules)
    register(db)
    report = ApplyReport()
    db.execute("PRAGMA foreign_keys = OFF")
    # Freed pages are zeroed, so deleted or overwritten originals do not linger.
    db.execute("PRAGMA secure_delete = ON")
    triggers = db.execute(
        "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger'"
    ).fetchall()
    db.execute("BEGIN IMMEDIATE")
    try:
        for name, _ in triggers:
            db.execute(f"DROP TRIGGER main.{q(name)}")
        for trule, table in pairs:
            t = f"main.{q(table.name)}"
            if trule.truncate:
                n = _run(db, f"DELETE FROM {t}", f"truncate {table.key}")
                report.count(table.key, "truncated", n)
                progress(table.key, "truncated", n)
            elif trule.where:
                n = _run(
                    db,
                    f"DELETE FROM {t} WHERE NOT coalesce(({trule.where}), 0)",
                    f"{table.key}: where = {trule.where!r}",
                )
                report.count(table.key, "deleted by where", n)
                progress(table.key, "deleted by where", n)
        prune(schema.fks, lambda fk: _delete_orphans(db, fk), progress, report)
        for trule, table in pairs:
            stmt = update_statement(trule, table, rules)
            if stmt is None or trule.truncate:
                continue
            cols = ", ".join(r.column for r in masked(trule))
            n = _run(db, stmt, f"mask {table.key} ({cols})")
            report.count(table.key, "masked", n)
            report.rules_applied += len(masked(trule))
            progress(table.key, "masked", n)
        broken = db.execute("PRAGMA main.foreign_key_check").fetchall()
        if broken:
            tables = sorted({f"{r[0]} → {r[2]}" for r in broken})
            raise RulesError(
                f"foreign keys no longer hold after masking ({', '.join(tables)}): "
                "mask both sides of a key with the same strategy and salt_key"
            )
        for _, sql_text in triggers:
            db.execute(sql_text)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    report.seconds = time.monotonic() - report.started
    return report
