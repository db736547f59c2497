"""What sanitizing needs to know about a live schema, in either dialect.

Tables are keyed as rules name them: ``users`` for PostgreSQL's ``public`` schema (and
SQLite's ``main``), ``schema.table`` otherwise (:func:`table_key`). Each column gets a
coarse *kind* (text, int, numeric, date, timestamp, inet, uuid, bytes, json, array,
xml, hstore, composite, other; a domain has its base type's kind, citext is text)
that the compilers use to keep the column's type after masking. The dialects fill
these in :mod:`pg.introspect` and :mod:`sqlite.introspect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as declared / format_type()
    kind: str
    max_len: int | None
    not_null: bool
    unique: bool  # alone a primary key or unique index
    elem: str = ""  # an array's element kind ("text", "json", "bytes", …)
    elem_type: str = ""  # an array's element type, as format_type() names it
    fields: int = 0  # a composite type's number of attributes

    @property
    def structured(self) -> bool:
        """A value holding texts inside it (searched element by element)."""
        return self.kind in STRUCTURED and (
            self.kind != "array" or self.elem in CARRIERS
        )


#: Kinds whose values carry texts inside a structure (or inside bytes).
STRUCTURED = frozenset({"json", "array", "bytes", "xml", "hstore", "composite"})
#: Kinds of column (or array element) that can carry personal text.
CARRIERS = frozenset({"text", *STRUCTURED})


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
        """Columns whose whole value is one text (text, inet)."""
        return [
            (t, c)
            for t in self.tables.values()
            for c in t.columns.values()
            if c.kind in ("text", "inet")
        ]

    def structured_columns(self) -> list[tuple[Table, Column]]:
        """Columns whose values hold texts inside (JSON, arrays, bytes, …)."""
        return [
            (t, c)
            for t in self.tables.values()
            for c in t.columns.values()
            if c.structured
        ]


def table_key(schema: str, name: str, default: str) -> str:
    """How rules name table *name* of *schema* (*default*: the dialect's own)."""
    return name if schema == default else f"{schema}.{name}"


def q(name: str) -> str:
    """Quote an identifier the SQL-standard way (SQLite has no composition library;
    the detector also quotes PostgreSQL columns so in its suggestions)."""
    return '"' + name.replace('"', '""') + '"'
