"""What a schema diff is, for every dialect: a list of changes (rendered from its
JSON shape by :mod:`.render`).

A change names a schema object and says what happened to it from the *base*
(``--against``, main by default) to the *head* (the branch). ``before``/``after``
describe the object's definition (a column's type, nullability and default; an
index's or constraint's DDL) — schema only, never a row of data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

#: The order changes are listed in (then by name): containers before contents.
KIND_ORDER = (
    "schema",
    "extension",
    "enum",
    "type",
    "domain",
    "sequence",
    "table",
    "column",
    "primary key",
    "unique",
    "check",
    "exclusion",
    "foreign key",
    "constraint",
    "index",
    "view",
    "materialized view",
    "function",
    "trigger",
    "policy",
    "collation",
)


class Change(NamedTuple):
    """One schema object added, removed or changed (base → head)."""

    kind: str  # one of KIND_ORDER
    change: str  # "added" | "removed" | "changed"
    name: str  # qualified: "public.users.email", "public.users_email"
    before: str | None  # its definition in the base (None when added)
    after: str | None  # its definition in the head (None when removed)


def sort_key(c: Change) -> tuple[int, str, str]:
    rank = KIND_ORDER.index(c.kind) if c.kind in KIND_ORDER else len(KIND_ORDER)
    return rank, c.name, c.change


@dataclass(frozen=True)
class SchemaDiff:
    """The schema difference from *base* to *head*.

    ``sql``: statements that turn the base's schema into the head's (None where
    the dialect has no generator for what changed); ``ignored``: what was left out
    and why (shown, so that an empty diff is never a silent gap).
    """

    dialect: str  # "postgres" | "sqlite"
    base: str  # what was compared: "branch main", "snapshot prod@3", …
    head: str
    changes: tuple[Change, ...]
    sql: str | None
    ignored: tuple[str, ...] = field(default=())
