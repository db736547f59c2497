"""The rules file: what to do with each table and column of a sanitized snapshot.

::

    salt_env = "BRANCHDB_SALT"            # or: salt = "…" (one of the two is required)

    [tables.users]
    where = "created_at > now() - interval '90 days'"   # keep a subset of rows
    columns.email = "email"                              # short form: the strategy
    columns.phone = { strategy = "phone" }

    [tables.users.columns]                               # or a sub-table
    ssn = { strategy = "hash", salt_key = "people" }

    [tables.users.columns]
    profile = { strategy = "json", paths = { "$.backup_email" = "email",
                "$.contacts[*].phone" = "phone" } }           # inside JSON, by path
    tags = "email"                                       # an array: element by element

    [tables.audit_log]
    truncate = true

Strategies and their options are listed in :data:`STRATEGIES`. Every mistake is a
:class:`RulesError` naming the file and ``table.column``. Parsing is pure: checking a
rule against the live schema (types, NOT NULL, unique) happens when it is compiled.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.sanitize.values import PathError, Segment, parse_path


class RulesError(ConfigError):
    """The rules file is invalid, or a rule cannot hold on the live schema."""


#: strategy → the options it accepts (besides ``strategy`` and ``salt_key``).
STRATEGIES: dict[str, frozenset[str]] = {
    "keep": frozenset(),
    "null": frozenset(),
    "fixed": frozenset({"value"}),
    "hash": frozenset(),
    "email": frozenset(),
    "name": frozenset({"part"}),
    "phone": frozenset(),
    "address": frozenset({"part"}),
    "shuffle": frozenset(),
    "noise": frozenset({"range", "days"}),
    "sql": frozenset({"expr"}),
    "json": frozenset({"paths"}),
}
#: Strategies a ``json`` rule may apply at a path (to the value found there).
JSON_LEAF = frozenset({"keep", "null", "fixed", "hash", "email", "name", "phone",
                       "address"})  # fmt: skip
PARTS = {
    "name": ("full", "first", "last"),
    "address": ("full", "street", "city", "zip"),
}
#: Strategies that replace a value by one derived from it (or by a constant): the
#: original must then appear nowhere in the snapshot (see verify.py). ``shuffle`` and
#: ``noise`` keep (near-)original values by design and are not verified.
REPLACING = frozenset(
    {"null", "fixed", "hash", "email", "name", "phone", "address", "json"}
)


@dataclass(frozen=True)
class ColumnRule:
    table: str
    column: str
    strategy: str
    value: Any = None  # fixed
    part: str = "full"  # name / address
    range: float | None = None  # noise, numbers: relative spread
    days: int | None = None  # noise, dates: +/- days
    expr: str = ""  # sql
    salt_key: str = ""  # columns sharing a salt_key (default "") hash alike
    #: json: (segments, path as written, the rule applied to the value there)
    paths: tuple[tuple[tuple[Segment, ...], str, ColumnRule], ...] = ()

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class TableRule:
    name: str
    columns: dict[str, ColumnRule] = field(default_factory=dict)
    truncate: bool = False
    where: str = ""


@dataclass(frozen=True)
class Rules:
    salt: str
    tables: dict[str, TableRule] = field(default_factory=dict)
    source: str = "rules"

    def column(self, table: str, column: str) -> ColumnRule | None:
        t = self.tables.get(table)
        return t.columns.get(column) if t else None

    def reviewed(self, table: str, column: str) -> bool:
        """True when *table.column* has a rule, or its table is truncated."""
        t = self.tables.get(table)
        return t is not None and (t.truncate or column in t.columns)

    def salt_for(self, rule: ColumnRule) -> str:
        return self.salt + (f"\x1f{rule.salt_key}" if rule.salt_key else "")


def load_rules(path: str | Path, env: Mapping[str, str] | None = None) -> Rules:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise RulesError(f"cannot read rules file {p}: {e.strerror}") from None
    return parse_rules(text, source=str(p), env=env)


def parse_rules(
    text: str, *, source: str = "rules", env: Mapping[str, str] | None = None
) -> Rules:
    """Parse and validate rules TOML; raises RulesError naming the bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{source}: not valid TOML: {e}") from None
    _only(data, {"salt", "salt_env", "tables"}, source, "")
    salt = _salt(data, source, os.environ if env is None else env)
    tables_raw = data.get("tables", {})
    if not isinstance(tables_raw, dict):
        raise RulesError(f"{source}: 'tables' must be a table ([tables.NAME])")
    tables = {name: _table(source, name, raw) for name, raw in tables_raw.items()}
    return Rules(salt=salt, tables=tables, source=source)


def _salt(data: dict[str, Any], source: str, env: Mapping[str, str]) -> str:
    if "salt" in data and "salt_env" in data:
        raise RulesError(f"{source}: set either 'salt' or 'salt_env', not both")
    if "salt_env" in data:
        var = str(data["salt_env"])
        if not env.get(var):
            raise RulesError(
                f"{source}: salt_env = {var!r} but the environment variable {var} "
                "is not set (or empty)"
            )
        return env[var]
    salt = data.get("salt")
    if not isinstance(salt, str) or not salt:
        raise RulesError(
            f'{source}: a salt is required (salt = "…" or salt_env = "VAR"): '
            "without one, hashed values can be reversed by hashing guesses"
        )
    return salt


def _only(
    raw: dict[str, Any], allowed: set[str] | frozenset[str], src: str, at: str
) -> None:
    for key in raw:
        if key not in allowed:
            near = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            where = f"{at}: " if at else ""
            raise RulesError(f"{src}: {where}unknown key {key!r}{hint}")


def _table(src: str, name: str, raw: Any) -> TableRule:
    if not isinstance(raw, dict):
        raise RulesError(f"{src}: tables.{name} must be a table")
    _only(raw, {"columns", "truncate", "where"}, src, f"table {name}")
    truncate = raw.get("truncate", False)
    where = raw.get("where", "")
    if not isinstance(truncate, bool):
        raise RulesError(f"{src}: table {name}: truncate must be true or false")
    if not isinstance(where, str):
        raise RulesError(f"{src}: table {name}: where must be an SQL condition string")
    if truncate and where:
        raise RulesError(f"{src}: table {name}: truncate and where exclude each other")
    cols = raw.get("columns", {})
    if not isinstance(cols, dict):
        raise RulesError(f"{src}: table {name}: columns must be a table")
    columns = {c: _column(src, name, c, spec) for c, spec in cols.items()}
    return TableRule(name=name, columns=columns, truncate=truncate, where=where)


def _column(src: str, table: str, column: str, spec: Any) -> ColumnRule:
    at = f"{table}.{column}"
    if isinstance(spec, str):
        spec = {"strategy": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("strategy"), str):
        raise RulesError(
            f'{src}: {at}: expected a strategy name or {{ strategy = "…", … }}'
        )
    strategy = spec["strategy"]
    if strategy not in STRATEGIES:
        near = difflib.get_close_matches(strategy, sorted(STRATEGIES), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise RulesError(
            f"{src}: {at}: unknown strategy {strategy!r}{hint}; known: "
            + ", ".join(STRATEGIES)
        )
    _only(spec, {"strategy", "salt_key", *STRATEGIES[strategy]}, src, at)
    rule = ColumnRule(
        table=table,
        column=column,
        strategy=strategy,
        value=spec.get("value"),
        part=str(spec.get("part", "full")),
        range=spec.get("range"),
        days=spec.get("days"),
        expr=str(spec.get("expr", "")),
        salt_key=str(spec.get("salt_key", "")),
        paths=_paths(src, table, column, spec) if strategy == "json" else (),
    )
    _check(src, rule, spec)
    return rule


def _paths(
    src: str, table: str, column: str, spec: dict[str, Any]
) -> tuple[tuple[tuple[Segment, ...], str, ColumnRule], ...]:
    raw = spec.get("paths")
    at = f"{src}: {table}.{column}"
    if not isinstance(raw, dict) or not raw:
        raise RulesError(
            f'{at}: strategy \'json\' needs paths = {{ "$.key" = "email", … }}'
        )
    out = []
    for path, leaf in raw.items():
        try:
            segments = parse_path(path)
        except PathError as e:
            raise RulesError(f"{at}: {e}") from None
        rule = _column(src, table, f"{column} {path}", leaf)
        if rule.strategy not in JSON_LEAF:
            raise RulesError(
                f"{at}: path {path}: strategy {rule.strategy!r} cannot apply inside "
                "JSON; use one of " + ", ".join(sorted(JSON_LEAF))
            )
        out.append((segments, path, rule))
    return tuple(out)


def _check(src: str, r: ColumnRule, spec: dict[str, Any]) -> None:
    at = f"{src}: {r.where}"
    if r.strategy == "fixed" and "value" not in spec:
        raise RulesError(f"{at}: strategy 'fixed' needs a value (value = …)")
    if r.strategy in PARTS and r.part not in PARTS[r.strategy]:
        raise RulesError(
            f"{at}: part must be one of {', '.join(PARTS[r.strategy])}, not {r.part!r}"
        )
    if r.strategy == "sql" and not r.expr.strip():
        raise RulesError(f"{at}: strategy 'sql' needs expr = \"…\"")
    if r.strategy == "noise":
        if (r.range is None) == (r.days is None):
            raise RulesError(
                f"{at}: noise needs exactly one of range = 0.1 (numbers) "
                "or days = 30 (dates)"
            )
        if r.range is not None and (
            not isinstance(r.range, int | float) or not 0 < r.range <= 1
        ):
            raise RulesError(f"{at}: noise range must be a number in (0, 1]")
        if r.days is not None and (not isinstance(r.days, int) or r.days < 1):
            raise RulesError(f"{at}: noise days must be a whole number >= 1")
