"""SQLite/libsql schema: read from ``sqlite_schema`` and ``pragma_*``, diffed, and
the SQL that turns one schema into the other.

Compared: tables, their columns (declared type, NOT NULL, default, primary-key
position, generated/hidden), their primary-key and UNIQUE constraints
(``pragma_index_list`` origins ``pk``/``u``), foreign keys
(``pragma_foreign_key_list``; SQLite's are unnamed, so one is named by its
columns), CHECK constraints (read from the table's SQL text, the only place
SQLite keeps them: :mod:`.sqlite_checks`), indexes, views and triggers (their
SQL, whitespace normalised). Only the schema is read: never a row.

The SQL (:func:`sql`) adds a nullable or defaulted column with ``ALTER TABLE …
ADD COLUMN``; every other table change uses SQLite's documented rebuild
(https://www.sqlite.org/lang_altertable.html#otheralter): create the new table
under a temporary name, copy the common columns, drop the old, rename, recreate
its indexes and triggers, with foreign keys off and checked at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from branchdb.daemon.core.dbsession import Executor
from branchdb.daemon.review.model import Change
from branchdb.daemon.review.sqlite_checks import checks as read_checks


@dataclass
class Table:
    name: str
    sql: str
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # "pk"/"unique (a, b)" → text
    fks: dict[str, str] = field(default_factory=dict)  # "(a) -> t(b)" → text
    checks: dict[str, str] = field(default_factory=dict)  # sqlite_checks.checks


@dataclass
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)
    indexes: dict[str, tuple[str, str]] = field(default_factory=dict)  # → (table, sql)
    views: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, tuple[str, str]] = field(default_factory=dict)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _norm(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def read(db: Executor) -> Schema:
    """The schema of the SQLite database behind *db* (read-only queries)."""
    s = Schema()
    rows = db.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema "
        "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    )
    for kind, name, table, text in rows:
        if kind == "table":
            s.tables[name] = _table(db, name, str(text or ""))
        elif kind == "index" and text:  # NULL sql: a constraint's own index
            s.indexes[name] = (table, _norm(text))
        elif kind == "view":
            s.views[name] = _norm(text)
        elif kind == "trigger":
            s.triggers[name] = (table, _norm(text))
    return s


def _table(db: Executor, name: str, text: str) -> Table:
    t = Table(name, text, checks=read_checks(text))
    pk: list[tuple[int, str]] = []
    for cid, col, typ, notnull, dflt, pkpos, hidden in db.execute(
        'SELECT cid, name, type, "notnull", dflt_value, pk, hidden '
        "FROM pragma_table_xinfo(?) ORDER BY cid",
        [name],
    ):
        t.columns[col] = {
            "cid": cid,
            "type": typ or "",
            "notnull": bool(notnull),
            "default": dflt,
            "hidden": int(hidden),
        }
        if pkpos:
            pk.append((int(pkpos), col))
    if pk:
        t.keys["primary key"] = f"PRIMARY KEY ({', '.join(c for _, c in sorted(pk))})"
    for (idx,) in db.execute(
        "SELECT name FROM pragma_index_list(?) WHERE origin = 'u'", [name]
    ):
        rows = db.execute("SELECT name FROM pragma_index_info(?) ORDER BY seqno", [idx])
        cols = ", ".join(str(r[0]) for r in rows)
        t.keys[f"unique ({cols})"] = f"UNIQUE ({cols})"
    groups: dict[int, list[Any]] = {}
    for row in db.execute(
        'SELECT id, seq, "table", "from", "to", on_update, on_delete '
        "FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        [name],
    ):
        groups.setdefault(int(row[0]), []).append(row)
    for rows in groups.values():
        ref = rows[0][2]
        src = ", ".join(str(r[3]) for r in rows)
        dst = ", ".join(str(r[4]) for r in rows if r[4] is not None)
        key = f"({src}) -> {ref}({dst})"
        t.fks[key] = (
            f"FOREIGN KEY ({src}) REFERENCES {ref}({dst}) "
            f"ON UPDATE {rows[0][5]} ON DELETE {rows[0][6]}"
        )
    return t


def column_text(c: dict[str, Any]) -> str:
    text = c["type"] or "(no type)"
    if c["hidden"] in (2, 3):
        text += " GENERATED " + ("STORED" if c["hidden"] == 3 else "VIRTUAL")
    elif c["default"] is not None:
        text += f" DEFAULT {c['default']}"
    return text + (" NOT NULL" if c["notnull"] else " NULL")


def _side(kind: str, name: str, a: str | None, b: str | None) -> list[Change]:
    if a == b:
        return []
    change = "added" if a is None else "removed" if b is None else "changed"
    return [Change(kind, change, name, a, b)]


def _table_text(t: Table) -> str:
    return "(" + ", ".join(f"{c} {column_text(v)}" for c, v in t.columns.items()) + ")"


def changes(base: Schema, head: Schema) -> list[Change]:
    """The structured changes from *base* to *head*."""
    out: list[Change] = []
    for name in sorted(set(base.tables) | set(head.tables)):
        ta, tb = base.tables.get(name), head.tables.get(name)
        if ta is None or tb is None:
            out += _side(
                "table",
                name,
                None if ta is None else _table_text(ta),
                None if tb is None else _table_text(tb),
            )
            continue
        for col in sorted(set(ta.columns) | set(tb.columns)):
            ca, cb = ta.columns.get(col), tb.columns.get(col)
            out += _side(
                "column",
                f"{name}.{col}",
                None if ca is None else column_text(ca),
                None if cb is None else column_text(cb),
            )
        for key in sorted(set(ta.keys) | set(tb.keys)):
            kind = "primary key" if key == "primary key" else "unique"
            out += _side(kind, f"{name} {key}", ta.keys.get(key), tb.keys.get(key))
        for key in sorted(set(ta.fks) | set(tb.fks)):
            out += _side(
                "foreign key", f"{name} {key}", ta.fks.get(key), tb.fks.get(key)
            )
        for key in sorted(set(ta.checks) | set(tb.checks)):
            out += _side(
                "check", f"{name} {key}", ta.checks.get(key), tb.checks.get(key)
            )
    for name in sorted(set(base.indexes) | set(head.indexes)):
        ia, ib = base.indexes.get(name), head.indexes.get(name)
        out += _side("index", name, ia and ia[1], ib and ib[1])
    for name in sorted(set(base.views) | set(head.views)):
        out += _side("view", name, base.views.get(name), head.views.get(name))
    for name in sorted(set(base.triggers) | set(head.triggers)):
        ra, rb = base.triggers.get(name), head.triggers.get(name)
        out += _side("trigger", name, ra and ra[1], rb and rb[1])
    return out


_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|[^\s(]+)",
    re.IGNORECASE,
)


def _renamed(table_sql: str, new: str) -> str:
    m = _CREATE_TABLE.match(table_sql)
    if m is None:
        raise ValueError(f"cannot read the table name in: {table_sql[:80]}")
    return table_sql[: m.start(1)] + _q(new) + table_sql[m.end(1) :]


def _addable(c: dict[str, Any]) -> bool:
    """True if ``ALTER TABLE ADD COLUMN`` can add a column like *c*."""
    return c["hidden"] == 0 and (not c["notnull"] or c["default"] is not None)


def sql(base: Schema, head: Schema) -> str:
    """Statements turning *base* into *head* (one script; "" when equal)."""
    out: list[str] = []
    rebuilt: set[str] = set()
    drops: list[str] = []
    for name, (_, text) in base.triggers.items():
        if head.triggers.get(name, (None, None))[1] != text:
            drops.append(f"DROP TRIGGER {_q(name)};")
    for name, text in base.views.items():
        if head.views.get(name) != text:
            drops.append(f"DROP VIEW {_q(name)};")
    for name, (_, text) in base.indexes.items():
        if head.indexes.get(name, (None, None))[1] != text:
            drops.append(f"DROP INDEX {_q(name)};")
    out += drops
    for name in sorted(set(base.tables) - set(head.tables)):
        out.append(f"DROP TABLE {_q(name)};")
    for name in sorted(set(head.tables) - set(base.tables)):
        out.append(head.tables[name].sql.rstrip(";") + ";")
    for name in sorted(set(base.tables) & set(head.tables)):
        ta, tb = base.tables[name], head.tables[name]
        if (ta.columns, ta.keys, ta.fks, ta.checks) == (
            tb.columns,
            tb.keys,
            tb.fks,
            tb.checks,
        ):
            continue
        added = [c for c in tb.columns if c not in ta.columns]
        same = all(
            ta.columns[c] == {**tb.columns[c], "cid": ta.columns[c]["cid"]}
            for c in ta.columns
            if c in tb.columns
        )
        if (
            same
            and set(ta.columns) <= set(tb.columns)
            and ta.keys == tb.keys
            and ta.fks == tb.fks
            and ta.checks == tb.checks
            and all(_addable(tb.columns[c]) for c in added)
        ):
            for c in added:
                col = tb.columns[c]
                text = f"ALTER TABLE {_q(name)} ADD COLUMN {_q(c)} {col['type']}"
                if col["notnull"]:
                    text += " NOT NULL"
                if col["default"] is not None:
                    text += f" DEFAULT {col['default']}"
                out.append(text + ";")
            continue
        rebuilt.add(name)
        tmp = f"_branchdb_new_{name}"
        common = ", ".join(
            _q(c)
            for c in tb.columns
            if c in ta.columns and tb.columns[c]["hidden"] == 0
        )
        out += [
            _renamed(tb.sql, tmp).rstrip(";") + ";",
            f"INSERT INTO {_q(tmp)} ({common}) SELECT {common} FROM {_q(name)};",
            f"DROP TABLE {_q(name)};",
            f"ALTER TABLE {_q(tmp)} RENAME TO {_q(name)};",
        ]
    for name, (table, text) in head.indexes.items():
        if base.indexes.get(name, (None, None))[1] != text or table in rebuilt:
            out.append(text + ";")
    for name, text in head.views.items():
        if base.views.get(name) != text:
            out.append(text + ";")
    for name, (table, text) in head.triggers.items():
        if base.triggers.get(name, (None, None))[1] != text or table in rebuilt:
            out.append(text + ";")
    if not out:
        return ""
    if rebuilt:
        # SQLite's documented procedure: foreign keys off while tables are swapped.
        out = [
            "PRAGMA foreign_keys = OFF;",
            "BEGIN;",
            *out,
            "PRAGMA foreign_key_check;",
            "COMMIT;",
            "PRAGMA foreign_keys = ON;",
        ]
    return "\n".join(out) + "\n"
