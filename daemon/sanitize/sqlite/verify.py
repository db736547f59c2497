"""The SQLite verifier: originals copied aside before masking, then searched for.

:func:`capture_sqlite` copies the distinct original values of every searched column
(:func:`leaks.original_sources`) into a TEMP table of the staging connection — never
into the database file, and gone when the connection closes. After masking,
:func:`verify_sqlite` searches every text-like column of every table for them,
set-based, the three ways :mod:`leaks` describes; Python functions registered on the
connection extract the emails and words of a value.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time

from branchdb.daemon.sanitize import fakes, values
from branchdb.daemon.sanitize.leaks import (
    EMAIL_TOKEN,
    FAKE_WORDS,
    MAX_REPORTED,
    MIN_WORD,
    WORDS,
    LeakFound,
    VerifyReport,
    name_origins,
    original_sources,
)
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import Schema, q
from branchdb.daemon.sanitize.sqlite.masking import lit

#: The TEMP table of captured originals.
TEMP = "_bdb_originals"


def _text(v: object) -> str | None:
    """A value as text: bytes decoded (unreadable bytes replaced), numbers too."""
    if v is None:
        return None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _emails(value: object) -> str:
    text = _text(value)
    return json.dumps(
        [] if text is None else [m.lower() for m in re.findall(EMAIL_TOKEN, text)]
    )


def _inside(value: object, keys: int) -> str:
    """The texts inside a value (a JSON array): bytes decoded as UTF-8, and the
    string scalars (and with *keys* the keys and every scalar) of a JSON document
    held in text or bytes."""
    if isinstance(value, bytes):
        text = values.decode(value)
        out = [] if text is None else [text]
    elif isinstance(value, str):
        text, out = value, []
    else:
        return "[]"
    doc = values.as_json(text) if text is not None else None
    if doc is not None:
        out += [
            t
            for _p, kind, t in values.leaves(doc, strings=not keys)
            # an original: a lone word (a label, an enum value) is no evidence
            if keys or (kind == "value" and not t.isalpha())
        ]
    return json.dumps(out)


def _at(spec: str, value: object) -> str:
    """The scalars at and under the paths of *spec* in the JSON *value*."""
    text = _text(value)
    doc = values.as_json(text) if text is not None else None
    if doc is None:
        return "[]"
    return json.dumps(values.at_paths(doc, [tuple(p) for p in json.loads(spec)]))


_WORD_SPLIT = re.compile(r"[^\w'-]+|[\d_]+")


def _words(value: object) -> str:
    text = _text(value)
    if text is None:
        return "[]"
    return json.dumps(sorted({w for w in _WORD_SPLIT.split(text.lower()) if w}))


def _matches(pattern: str, value: object) -> int:
    return int(value is not None and re.fullmatch(pattern, str(value)) is not None)


def capture_sqlite(
    db: sqlite3.Connection, schema: Schema, rules: Rules, min_len: int = 4
) -> VerifyReport:
    """Copy the distinct originals of every searched column (and the words of the
    original names) into TEMP tables of *db*, before masking; the ambiguous ones
    are counted and left out."""
    db.create_function("bdb_emails", 1, _emails, deterministic=True)
    db.create_function("bdb_matches", 2, _matches, deterministic=True)
    db.create_function("bdb_words", 1, _words, deterministic=True)
    db.create_function("bdb_inside", 2, _inside, deterministic=True)
    db.create_function("bdb_at", 2, _at, deterministic=True)
    db.execute(
        f"CREATE TEMP TABLE {TEMP} (v TEXT NOT NULL, lv TEXT, origin TEXT NOT NULL)"
    )
    report = VerifyReport()
    for table, col, r in original_sources(schema, rules):
        origin, v = f"{table.key}.{col.name}", f"CAST({q(col.name)} AS TEXT)"
        if r.strategy != "json":  # a json rule replaces values inside, not the text
            db.execute(
                f"INSERT INTO temp.{TEMP} (v, origin) SELECT DISTINCT {v}, ? "
                f"FROM main.{q(table.name)} WHERE {v} IS NOT NULL "
                # bytes are originals only as UTF-8 text (below)
                f"AND length({v}) >= ? AND typeof({q(col.name)}) <> 'blob'",
                (origin, min_len),
            )
        # The texts inside: what a json rule's paths hold, or decoded bytes and
        # the strings of JSON documents.
        spec = json.dumps(
            [list(p) for p, _w, leaf in r.paths if leaf.strategy != "keep"]
        )
        inner = (
            f"bdb_at({lit(spec)}, {q(col.name)})"
            if r.strategy == "json"
            else f"bdb_inside({q(col.name)}, 0)"
        )
        db.execute(
            f"INSERT INTO temp.{TEMP} (v, origin) SELECT DISTINCT m.value, ? "
            f"FROM main.{q(table.name)} AS _t, json_each({inner}) AS m "
            "WHERE length(m.value) >= ?",
            (origin, min_len),
        )
        fixed = str(r.value) if r.strategy == "fixed" else None
        cur = db.execute(
            f"DELETE FROM temp.{TEMP} WHERE origin = ? "
            "AND (v IS ? OR bdb_matches(?, v))",
            (origin, fixed, fakes.shape(r.strategy, r.part) or "(?!)"),
        )
        report.ambiguous += max(cur.rowcount, 0)
    db.execute(f"UPDATE temp.{TEMP} SET lv = lower(v) WHERE v LIKE '%@%'")
    db.execute(f"CREATE TEMP TABLE {WORDS} (w TEXT NOT NULL, origin TEXT NOT NULL)")
    named = name_origins(schema, rules)
    db.execute(
        f"INSERT INTO temp.{WORDS} SELECT DISTINCT m.value, o.origin "
        f"FROM temp.{TEMP} AS o, json_each(bdb_words(o.v)) AS m "
        f"WHERE o.origin IN (SELECT value FROM json_each(?)) "
        f"AND length(m.value) >= ? AND m.value NOT IN (SELECT value FROM json_each(?))",
        (json.dumps(named), MIN_WORD, json.dumps(FAKE_WORDS)),
    )
    db.execute(f"CREATE INDEX temp.{WORDS}_w ON {WORDS} (w)")
    db.execute(f"CREATE INDEX temp.{TEMP}_v ON {TEMP} (v)")
    db.execute(f"CREATE INDEX temp.{TEMP}_lv ON {TEMP} (lv)")
    report.originals = int(
        db.execute(f"SELECT count(*) FROM temp.{TEMP}").fetchone()[0]
    )
    return report


def verify_sqlite(
    db: sqlite3.Connection, schema: Schema, report: VerifyReport
) -> VerifyReport:
    """Search every text-like column for the captured originals; raise LeakFound."""
    started = time.monotonic()
    leaks: list[tuple[str, str, str]] = []
    # SQLite types values, not columns: every column that can hold text is read.
    searched = [
        (t, c) for t in schema.tables.values() for c in t.columns.values()
        if c.kind not in ("int", "numeric")
    ]  # fmt: skip
    for table, col in searched:
        t, raw = f"main.{q(table.name)}", f"_t.{q(col.name)}"
        v = f"CAST({raw} AS TEXT)"
        checks = [
            ("whole value",
             f"SELECT o.origin FROM {t} AS _t "
             f"JOIN temp.{TEMP} AS o ON o.v = {v} LIMIT 1"),
            ("inside a value",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_inside({raw}, 1)) AS m "
             f"JOIN temp.{TEMP} AS o ON o.v = m.value "
             f"WHERE typeof({raw}) = 'blob' OR {v} LIKE '{{%' OR {v} LIKE '[%' "
             "LIMIT 1"),
            ("email in text",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_emails({raw})) AS m "
             f"JOIN temp.{TEMP} AS o ON o.lv = m.value WHERE {v} LIKE '%@%' LIMIT 1"),
            ("name in text",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_words({raw})) AS m "
             f"JOIN temp.{WORDS} AS o ON o.w = m.value LIMIT 1"),
        ]  # fmt: skip
        for how, stmt in checks:
            row = db.execute(stmt).fetchone()
            if row:
                leaks.append((str(row[0]), f"{table.key}.{col.name}", how))
        report.columns_searched += 1
    report.seconds = time.monotonic() - started
    if leaks:
        raise LeakFound(leaks[:MAX_REPORTED])
    return report


def drop_captured(db: sqlite3.Connection) -> None:
    """Drop the TEMP tables :func:`capture_sqlite` filled."""
    db.execute(f"DROP TABLE temp.{TEMP}")
    db.execute(f"DROP TABLE temp.{WORDS}")
