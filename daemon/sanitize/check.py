"""``branchdb snapshot check``: what the detector flags in a live source, read-only.

Each entry point returns ``(findings, unreviewed, limits)``: every column that looks
personal or secret, those of them the rules (if given) do not cover, and the bounds of
the sample the values were judged on (:meth:`detect.Samples.limits`). Nothing is
written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.sanitize import detect
from branchdb.daemon.sanitize.detect import Finding
from branchdb.daemon.sanitize.pg.introspect import pg_schema, sample_pg
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.sqlite.introspect import sample_sqlite, sqlite_schema

if TYPE_CHECKING:
    import psycopg


def check_postgres(
    conn: psycopg.Connection[Any],
    rules: Rules | None = None,
    sample: int = detect.SAMPLE,
) -> tuple[list[Finding], list[Finding], str]:
    """(findings, unreviewed, limits) for the live database behind *conn*.

    The session is made read-only first (``default_transaction_read_only``); the
    caller opens and closes the connection.
    """
    conn.execute("SET default_transaction_read_only = on")
    schema = pg_schema(conn)
    samples = sample_pg(conn, schema, sample)
    findings = detect.detect(schema, samples, "postgres")
    missing = detect.unreviewed(findings, rules) if rules else findings
    return findings, missing, samples.limits()


def check_sqlite(
    path: str | Path, rules: Rules | None = None, sample: int = detect.SAMPLE
) -> tuple[list[Finding], list[Finding], str]:
    """(findings, unreviewed, limits) for a SQLite file, opened read-only."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        schema = sqlite_schema(db)
        samples = sample_sqlite(db, schema, sample)
        findings = detect.detect(schema, samples, "sqlite")
    finally:
        db.close()
    missing = detect.unreviewed(findings, rules) if rules else findings
    return findings, missing, samples.limits()
