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

from branchdb.daemon.sanitize import fakes
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

#: The TEMP table of captured originals.
TEMP = "_bdb_originals"


def _emails(text: object) -> str:
    return json.dumps(
        [] if text is None else [m.lower() for m in re.findall(EMAIL_TOKEN, str(text))]
    )


_WORD_SPLIT = re.compile(r"[^\w'-]+|[\d_]+")


def _words(text: object) -> str:
    if text is None:
        return "[]"
    return json.dumps(sorted({w for w in _WORD_SPLIT.split(str(text).lower()) if w}))


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
    db.execute(
        f"CREATE TEMP TABLE {TEMP} (v TEXT NOT NULL, lv TEXT, origin TEXT NOT NULL)"
    )
    report = VerifyReport()
    for table, col, r in original_sources(schema, rules):
        origin, v = f"{table.key}.{col.name}", f"CAST({q(col.name)} AS TEXT)"
        db.execute(
            f"INSERT INTO temp.{TEMP} (v, origin) SELECT DISTINCT {v}, ? "
            f"FROM main.{q(table.name)} WHERE {v} IS NOT NULL AND length({v}) >= ?",
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
    for table, col in schema.text_columns():
        t, v = f"main.{q(table.name)}", f"CAST(_t.{q(col.name)} AS TEXT)"
        checks = [
            ("whole value",
             f"SELECT o.origin FROM {t} AS _t "
             f"JOIN temp.{TEMP} AS o ON o.v = {v} LIMIT 1"),
            ("email in text",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_emails({v})) AS m "
             f"JOIN temp.{TEMP} AS o ON o.lv = m.value WHERE {v} LIKE '%@%' LIMIT 1"),
            ("name in text",
             f"SELECT o.origin FROM {t} AS _t, json_each(bdb_words({v})) AS m "
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
