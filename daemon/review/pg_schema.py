"""PostgreSQL schema diff through ``results`` (the maintained successor of migra).

``results`` inspects the catalogs over a psycopg 3 connection
(:class:`results.schemainspect.PostgreSQL`) and generates the statements that turn
one schema into another, in dependency order (``add_all_changes_ordered``; foreign
keys are added ``NOT VALID`` and then validated). The structured changes are read
from its serialisable definitions (``as_definition().to_dict()``): plain dicts of
catalog facts, compared here per object. Privileges are left out (every branch has
its own role, so grants always differ), and so are sequence positions (data).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from branchdb.daemon.review.model import Change

if TYPE_CHECKING:
    import psycopg

#: results' categories → the kind shown; tables, constraints and indexes are
#: handled apart (columns; constraint types; indexes behind a constraint).
_CATEGORIES = {
    "schemas": "schema",
    "extensions": "extension",
    "enums": "enum",
    "types": "type",
    "domains": "domain",
    "composite_types": "type",
    "sequences": "sequence",
    "views": "view",
    "materialized_views": "materialized view",
    "functions": "function",
    "triggers": "trigger",
    "rlspolicies": "policy",
    "collations": "collation",
}
_CONSTRAINT_KINDS = {
    "PRIMARY KEY": "primary key",
    "FOREIGN KEY": "foreign key",
    "UNIQUE": "unique",
    "CHECK": "check",
    "EXCLUDE": "exclusion",
}
#: Facts that are data or bookkeeping, not schema: never compared nor shown.
_VOLATILE = {"current_value", "is_called", "dependent_on", "oid", "dependents"}
_SIMPLE = re.compile(r'"([a-z_][a-z0-9_$]*)"')


def inspect(conn: psycopg.Connection[Any]) -> Any:
    """The catalog of the database *conn* is connected to (read-only queries)."""
    from results.schemainspect import PostgreSQL

    with conn.cursor() as cur:
        return PostgreSQL(cur)  # type: ignore[no-untyped-call]


def sql(base: Any, head: Any) -> str:
    """Statements turning *base*'s schema into *head*'s (inspectors), or ""."""
    from results.dbdiff import Migration

    m = Migration(base, head)  # type: ignore[no-untyped-call]
    m.set_safety(False)  # type: ignore[no-untyped-call]  # drops are the point of a diff; the review shows them
    m.add_all_changes_ordered(privileges=False)  # type: ignore[no-untyped-call]
    return str(m.sql)


def _plain(key: str) -> str:
    """``"public"."users"`` → ``public.users`` (quotes kept where they matter)."""
    return _SIMPLE.sub(r"\1", key)


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _VOLATILE}


def _describe(obj: dict[str, Any]) -> str:
    for key in ("definition", "elements", "version"):
        if obj.get(key):
            value = obj[key]
            return ", ".join(value) if isinstance(value, list) else str(value)
    rest = {k: v for k, v in _clean(obj).items() if k not in ("name", "schema")}
    return json.dumps(rest, sort_keys=True, default=str) if rest else "(exists)"


def _column(col: dict[str, Any]) -> str:
    text = str(col.get("dbtypestr") or col.get("dbtype"))
    if col.get("collation"):
        text += f' COLLATE "{col["collation"]}"'
    if col.get("is_identity"):
        always = "ALWAYS" if col.get("is_identity_always") else "BY DEFAULT"
        text += f" GENERATED {always} AS IDENTITY"
    elif col.get("is_generated"):
        text += f" GENERATED ALWAYS AS ({col.get('default')}) STORED"
    elif col.get("default") is not None:
        text += f" DEFAULT {col['default']}"
    return text + (" NOT NULL" if col.get("not_null") else " NULL")


def _pairs(
    before: dict[str, Any], after: dict[str, Any]
) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    """Every key of either side with its object on each side (None: absent)."""
    return [(k, before.get(k), after.get(k)) for k in sorted(set(before) | set(after))]


def _simple(kind: str, name: str, a: Any, b: Any, show: Any) -> list[Change]:
    if a is None:
        return [Change(kind, "added", name, None, show(b))]
    if b is None:
        return [Change(kind, "removed", name, show(a), None)]
    if _clean(a) != _clean(b):
        return [Change(kind, "changed", name, show(a), show(b))]
    return []


def _table(name: str, a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    out: list[Change] = []
    for col, ca, cb in _pairs(a.get("columns") or {}, b.get("columns") or {}):
        cname = name + "." + _plain('"' + col.replace('"', '""') + '"')
        if ca is None or cb is None or _column(ca) != _column(cb):
            out += _simple("column", cname, ca, cb, _column)
    rest_a = {k: v for k, v in _clean(a).items() if k != "columns"}
    rest_b = {k: v for k, v in _clean(b).items() if k != "columns"}
    if rest_a != rest_b:
        diff = sorted(
            k for k in set(rest_a) | set(rest_b) if rest_a.get(k) != rest_b.get(k)
        )
        out.append(
            Change(
                "table",
                "changed",
                name,
                ", ".join(f"{k}={rest_a.get(k)}" for k in diff),
                ", ".join(f"{k}={rest_b.get(k)}" for k in diff),
            )
        )
    return out


def changes(base: Any, head: Any) -> list[Change]:
    """The structured changes from *base* to *head* (inspectors)."""
    a = base.as_definition().to_dict()
    b = head.as_definition().to_dict()
    out: list[Change] = []
    for key, ta, tb in _pairs(a.get("tables") or {}, b.get("tables") or {}):
        name = _plain(key)
        if ta is None or tb is None:
            out += _simple("table", name, ta, tb, _table_text)
        else:
            out += _table(name, ta, tb)
    constrained: set[str] = set()
    for side in (a, b):
        for con in (side.get("constraints") or {}).values():
            if con.get("index"):
                constrained.add(con["index"])
    for key, ca, cb in _pairs(a.get("constraints") or {}, b.get("constraints") or {}):
        con = cb or ca or {}
        kind = _CONSTRAINT_KINDS.get(str(con.get("constraint_type")), "constraint")
        out += _simple(kind, _plain(key), ca, cb, _constraint_text)
    for key, ia, ib in _pairs(a.get("indexes") or {}, b.get("indexes") or {}):
        if key in constrained:
            continue  # shown as its constraint
        out += _simple("index", _plain(key), ia, ib, _describe)
    for category, kind in _CATEGORIES.items():
        for key, oa, ob in _pairs(a.get(category) or {}, b.get(category) or {}):
            out += _simple(kind, _plain(key), oa, ob, _describe)
    return out


def _table_text(t: dict[str, Any]) -> str:
    cols = t.get("columns") or {}
    return "(" + ", ".join(f"{c} {_column(v)}" for c, v in cols.items()) + ")"


def _constraint_text(c: dict[str, Any]) -> str:
    text = str(c.get("definition"))
    if c.get("is_not_valid") and "NOT VALID" not in text:
        text += " NOT VALID"
    return text
