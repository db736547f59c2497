"""Dialect-neutral checks and bookkeeping shared by both dialects' masking.

A rule is checked against the live column before any SQL runs, so a rule that could
not hold (nulling a NOT NULL column, a word-list fake in a unique column, a fixed value
longer than the column) fails with a message naming ``table.column``, and nothing is
changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from branchdb.daemon.sanitize.rules import ColumnRule, Rules, RulesError, TableRule
from branchdb.daemon.sanitize.schema import Column, ForeignKey, Schema, Table

#: progress(table, action, rows): called after each statement on a table.
Progress = Callable[[str, str, int], None]

# Strategies that map equal inputs to equal outputs through a small word list or
# range: distinct inputs may meet, so they cannot serve a unique column.
_COLLIDING = {"fixed", "name", "phone", "address", "noise"}
_TEXT_ONLY = {"email", "name", "phone", "address"}
_HASHABLE = {"text", "int", "numeric", "uuid", "inet", "bytes"}
#: Strategies an array column applies to each of its elements.
ELEMENT_WISE = frozenset({"hash", "email", "name", "phone", "address", "json"})


def no_progress(_table: str, _action: str, _rows: int) -> None:
    """The default :data:`Progress`: reports nothing."""


@dataclass
class ApplyReport:
    tables: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # table → action → rows
    rules_applied: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def count(self, table: str, action: str, rows: int) -> None:
        per = self.tables.setdefault(table, {})
        per[action] = per.get(action, 0) + max(rows, 0)


def check_column(rule: ColumnRule, col: Column) -> None:
    """RulesError when *rule* cannot hold on *col* (an array's element-wise
    strategies are checked against its element)."""
    at = f"{rule.where} ({col.type})"
    s = rule.strategy
    if s == "null" and col.not_null:
        raise RulesError(
            f"{at}: strategy 'null' on a NOT NULL column; use fixed or hash instead"
        )
    if s in _COLLIDING and col.unique:
        raise RulesError(
            f"{at}: strategy {s!r} would break the column's uniqueness; use "
            "hash or email (both derive each value from the unique original)"
        )
    # Arrays are masked element by element, with the element's kind.
    kind = col.elem if col.kind == "array" and s in ELEMENT_WISE else col.kind
    if s == "json" and kind not in ("json", "text"):
        raise RulesError(
            f"{at}: strategy 'json' needs a JSON column (or an array of JSON); "
            f"this column is {col.kind}: use null, fixed or sql"
        )
    if s in _TEXT_ONLY and kind != "text":
        raise RulesError(
            f"{at}: strategy {s!r} writes text; this column is {col.kind}: use hash, "
            "fixed or sql"
        )
    if s == "hash" and kind not in _HASHABLE:
        raise RulesError(
            f"{at}: cannot hash a {col.kind} column and keep its type; use noise, "
            "fixed or sql"
        )
    if s == "noise":
        if rule.range is not None and col.kind not in ("int", "numeric"):
            raise RulesError(f"{at}: noise range needs a number column (use days =)")
        if rule.days is not None and col.kind not in ("date", "timestamp"):
            raise RulesError(f"{at}: noise days needs a date/timestamp column")
    if s == "fixed" and col.max_len and len(str(rule.value)) > col.max_len:
        raise RulesError(
            f"{at}: fixed value is longer than the column ({col.max_len} characters)"
        )


def resolve(schema: Schema, rules: Rules) -> list[tuple[TableRule, Table]]:
    """Pair each table rule with its table; check every column rule. Pure."""
    out = []
    for key, trule in rules.tables.items():
        table = schema.tables.get(key)
        if table is None:
            raise RulesError(
                f"{rules.source}: table {key!r} does not exist in the database "
                f"(tables: {', '.join(sorted(schema.tables)) or 'none'})"
            )
        for name, crule in trule.columns.items():
            col = table.columns.get(name)
            if col is None:
                raise RulesError(
                    f"{rules.source}: {key}.{name}: no such column (columns of "
                    f"{key}: {', '.join(table.columns)})"
                )
            check_column(crule, col)
        out.append((trule, table))
    return out


def masked(trule: TableRule) -> list[ColumnRule]:
    return [r for r in trule.columns.values() if r.strategy != "keep"]


def prune(
    fks: list[ForeignKey],
    delete: Callable[[ForeignKey], int],
    progress: Progress,
    report: ApplyReport,
) -> None:
    """Delete rows whose foreign key points at a removed row, until none remain.

    Repeats over the whole FK graph, so removing a user removes its orders and then
    the orders' items, whatever order the constraints come in.
    """
    for _ in range(len(fks) + 1):
        total = 0
        for fk in fks:
            n = delete(fk)
            if n:
                report.count(fk.child, "orphans deleted", n)
                progress(fk.child, f"deleted rows orphaned by {fk.name}", n)
            total += n
        if not total:
            return
