"""Find columns that look personal or secret, by name, type and sampled values.

Fail closed: a snapshot whose staging database has a flagged column without a rule is
refused (:func:`refuse_unreviewed`), listing each column with a suggested rule, and
:func:`starter_rules` writes those suggestions as a rules file to review. The detector
judges names, types and values it is given (the dialects' ``sample_pg`` and
``sample_sqlite`` read them: a few ``SELECT … LIMIT n``); it never decides that a
column is *safe*.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from branchdb.daemon.core.errors import Refused
from branchdb.daemon.sanitize import people, structured
from branchdb.daemon.sanitize.classify import classify_name, classify_values, luhn
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import CARRIERS, Column, Schema, Table

__all__ = ["classify_name", "classify_values", "luhn"]

#: Rows sampled per table (the first ones the scan returns).
SAMPLE = 200
#: A value longer than this (bytes) is not sampled (text is cut to its first 8 KiB).
MAX_VALUE = 65536
#: Seconds a table's sample may take (lock wait included) before it is given up.
SECONDS = 5.0
_NAMED = {"name", "first", "last"}


@dataclass
class Samples:
    """Sampled values: table → column → values (text, bytes or parsed JSON), and
    the tables whose sample ran out of time."""

    values: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)
    rows: int = SAMPLE
    seconds: float = SECONDS

    def limits(self) -> str:
        """The bounds of this sample, in one line (shown by ``snapshot check``)."""
        late = (
            f"; not sampled (over {self.seconds:g} s): {', '.join(self.timed_out)}"
            if self.timed_out
            else ""
        )
        return (
            f"sampled up to {self.rows} rows per table, values up to "
            f"{MAX_VALUE // 1024} KiB, {self.seconds:g} s per table{late}"
        )


@dataclass(frozen=True)
class Finding:
    table: str
    column: str
    category: str  # email, phone, name, address, ip, birth, id, secret, person, …
    reason: str  # "name", "type inet", "values: 96% look like emails"
    suggestion: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}"

    def toml(self) -> str:
        """The suggested rule as one line of a ``[tables.T]`` section."""
        s = self.suggestion
        if set(s) == {"strategy"}:
            return f'columns.{_bare(self.column)} = "{s["strategy"]}"'
        return f"columns.{_bare(self.column)} = {_lit(s)}"


def _lit(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_bare(k)} = {_lit(x)}" for k, x in v.items()) + " }"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v).lower() if isinstance(v, bool) else str(v)


def _bare(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _lit(name)


def suggest(category: str, col: Column, dialect: str) -> dict[str, Any]:
    """A rule that masks *category* while keeping *col*'s type and constraints."""
    return structured.suggest(category, col, dialect)


def detect(
    schema: Schema, samples: Samples | dict[str, dict[str, list[Any]]], dialect: str
) -> list[Finding]:
    """Findings for every column of *schema*, from its name, its type and its
    sampled values (from ``sample_pg`` or ``sample_sqlite``). Names sampled from
    a column flagged as a name are then looked for in every other column's texts.
    A column of a table whose sample ran out of time is flagged when it can carry
    text (fail closed)."""
    if not isinstance(samples, Samples):
        samples = Samples(samples)
    out: dict[tuple[str, str], Finding] = {}
    names: list[str] = []
    pending: list[tuple[Table, Column]] = []
    for t in schema.tables.values():
        got = samples.values.get(t.key, {})
        for c in t.columns.values():
            category, reason = classify_name(t.name, c.name), "column name"
            if category is None and c.kind == "inet":
                category, reason = "ip", f"type {c.type}"
            if category:
                out[t.key, c.name] = Finding(
                    t.key, c.name, category, reason, suggest(category, c, dialect)
                )
                if category in _NAMED:
                    names += [v for v in got.get(c.name, []) if isinstance(v, str)]
            elif t.key in samples.timed_out and _carries(c):
                out[t.key, c.name] = Finding(
                    t.key, c.name, "unsampled",
                    f"values not sampled in {samples.seconds:g} s",
                    structured.blank(c),
                )  # fmt: skip
            elif _carries(c):
                pending.append((t, c))
    known = people.known_words(names)
    for t, c in pending:
        flag = structured.analyse(
            t.name, c, samples.values.get(t.key, {}).get(c.name, []), known, dialect
        )
        if flag:
            out[t.key, c.name] = Finding(
                t.key, c.name, flag.category, flag.reason, flag.suggestion
            )
    order = {(t.key, c): i for i, (t, c) in enumerate(
        (t, c) for t in schema.tables.values() for c in t.columns
    )}  # fmt: skip
    return [out[k] for k in sorted(out, key=order.__getitem__)]


def _carries(c: Column) -> bool:
    return c.kind in CARRIERS and (c.kind != "array" or c.elem in CARRIERS)


def sampled_columns(t: Table) -> list[Column]:
    """The columns of *t* whose values are sampled (any that can carry text)."""
    return [c for c in t.columns.values() if _carries(c)]


def by_column(
    cols: list[Column], rows: Iterable[tuple[Any, ...]]
) -> dict[str, list[Any]]:
    """Sampled *rows* (one value per column of *cols*) as column → non-blank values
    (text, bytes or parsed JSON, as the dialect read them)."""
    got: dict[str, list[Any]] = {c.name: [] for c in cols}
    for row in rows:
        for c, v in zip(cols, row, strict=True):
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            got[c.name].append(v)
    return got


class UnreviewedColumns(Refused):
    """Flagged columns have no rule: the snapshot is refused (fail closed)."""

    def __init__(self, findings: list[Finding], rules_source: str) -> None:
        self.findings = findings
        lines = "\n".join(
            f"  {f.where} ({f.category}; {f.reason}) → [tables.{f.table}] {f.toml()}"
            for f in findings
        )
        super().__init__(
            f"refusing to snapshot: {len(findings)} column(s) look personal or secret "
            f"and have no rule in {rules_source}:\n{lines}\nAdd the rules (use "
            '"keep" for a column that is safe), or pass --allow-unreviewed to record '
            "the override on the snapshot"
        )


def unreviewed(findings: list[Finding], rules: Rules) -> list[Finding]:
    """Flagged columns with no rule (a truncated table needs none)."""
    return [f for f in findings if not rules.reviewed(f.table, f.column)]


def refuse_unreviewed(
    findings: list[Finding], rules: Rules, allow_unreviewed: bool
) -> list[Finding]:
    """The flagged columns without a rule; UnreviewedColumns if there are any,
    unless *allow_unreviewed* (then the caller records them on the snapshot)."""
    missing = unreviewed(findings, rules)
    if missing and not allow_unreviewed:
        raise UnreviewedColumns(missing, rules.source)
    return missing


def starter_rules(
    findings: list[Finding], salt_env: str = "BRANCHDB_SANITIZE_SALT"
) -> str:
    """A rules file with one suggested rule per finding, to review and commit."""
    lines = [
        "# branchdb sanitize rules: generated from the detector's findings.",
        '# Review every line: "keep" marks a column as safe to copy as it is.',
        f'salt_env = "{salt_env}"',
    ]
    tables: dict[str, list[Finding]] = {}
    for f in findings:
        tables.setdefault(f.table, []).append(f)
    for table, items in tables.items():
        lines += ["", f"[tables.{_bare(table) if '.' not in table else _lit(table)}]"]
        lines += [f"{f.toml()}  # {f.category}: {f.reason}" for f in items]
    return "\n".join(lines) + "\n"
