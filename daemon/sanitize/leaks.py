"""What both verifiers share: which originals are searched, the report, LeakFound.

A verifier proves that no original value of a masked column survives anywhere in
the snapshot. It searches every text-like column of every table for the originals
of every column its rule replaces (:func:`original_sources`; texts inside arrays,
JSON, bytes, XML, hstore and composites included), three ways per column (and per
text inside a structured column):
whole values (a hash join on the value), email addresses inside free text (each
extracted address joined to the lower-cased originals), and the words of masked
*names* inside free text (each word joined to the words of the original names,
fake-list words excepted). A hit raises :class:`LeakFound` naming where the original
came from and where it was found — never the value itself.

Originals shorter than four characters or matching their own strategy's output
shape (a real "Avery Ashford" may also be a generated one) are *ambiguous*: counted,
never reported. The SQLite verifier (:mod:`sqlite.verify`) copies the originals
before masking them in place; the PostgreSQL one (:mod:`pg.verify`) reads them from
the raw tables of the streaming build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from branchdb.daemon.core.errors import BranchdbError
from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.rules import REPLACING, ColumnRule, Rules
from branchdb.daemon.sanitize.schema import Column, Schema, Table

#: The table of the words of original names (TEMP, or UNLOGGED in a scratch schema).
WORDS = "_bdb_words"
#: Name words shorter than this are not searched.
MIN_WORD = 4
#: Words of the fake lists: a masked value may hold them, so they are never searched.
FAKE_WORDS = sorted(
    w.lower()
    for w in (*fakes.FIRST_NAMES, *fakes.LAST_NAMES, *fakes.STREETS, *fakes.CITIES)
)
#: An email address inside free text (a Python and a PostgreSQL regex alike).
EMAIL_TOKEN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
#: At most this many leaks are named in a LeakFound.
MAX_REPORTED = 20
#: Strategies whose output is generated from the digest alone (never from the text
#: of the original), so that a column they mask holds no free text to search inside.
GENERATED = frozenset({"null", "hash", "email", "name", "phone", "address"})


class LeakFound(BranchdbError):
    """An original value of a masked column is still in the snapshot."""

    http_status = 422

    def __init__(self, leaks: list[tuple[str, str, str]]) -> None:
        self.leaks = leaks  # (origin table.column, found in table.column, how)
        lines = "\n".join(f"  original {o} found in {w} ({h})" for o, w, h in leaks)
        super().__init__(
            f"sanitizing leaked {len(leaks)} original value location(s); the snapshot "
            f"was not published:\n{lines}\nMask or drop those columns too (a copy "
            "of a masked column needs the same rule)"
        )


@dataclass
class VerifyReport:
    originals: int = 0
    ambiguous: int = 0
    columns_searched: int = 0
    seconds: float = 0.0
    #: "table.column" keys whose every value was replaced by a GENERATED fake: only
    #: their whole values are searched (they hold no free text of an original).
    generated: set[str] = field(default_factory=set)


def original_sources(
    schema: Schema, rules: Rules
) -> list[tuple[Table, Column, ColumnRule]]:
    """(table, column, rule) of every column whose originals the verifiers search
    the snapshot for: a column holding text its rule replaces (``rules.REPLACING``).
    The originals of a structured column are the texts inside it: its array
    elements, decoded bytes, JSON keys and scalars (for a ``json`` rule, the
    scalars at and under its paths)."""
    out = []
    for key, trule in rules.tables.items():
        table = schema.tables.get(key)
        if table is None:
            continue
        for r in trule.columns.values():
            col = table.columns.get(r.column)
            if (
                r.strategy in REPLACING
                and col is not None
                and (col.kind in ("text", "inet") or col.structured)
            ):
                out.append((table, col, r))
    return out  # fmt: skip


def generated_columns(rules: Rules) -> set[str]:
    """The "table.column" of every column a GENERATED strategy fills."""
    return {
        f"{key}.{r.column}"
        for key, trule in rules.tables.items()
        for r in trule.columns.values()
        if r.strategy in GENERATED
    }


def name_origins(schema: Schema, rules: Rules) -> list[str]:
    """Origins whose words are searched in free text (masked person names)."""
    return [
        f"{t.key}.{c.name}"
        for t, c, r in original_sources(schema, rules)
        if r.strategy == "name" and not c.structured
    ]
