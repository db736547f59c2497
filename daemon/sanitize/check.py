"""``branchdb snapshot check``: what the detector flags in a live source, read-only.

Each entry point returns ``(findings, unreviewed)``: every column that looks personal
or secret, and those of them the rules (if given) do not cover. Nothing is written.
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
) -> tuple[list[Finding], list[Finding]]:
    """(findings, unreviewed) for the live database behind *conn*.

    The session is made read-only first (``default_transaction_read_only``); the
    caller opens and closes the connection.
    """
    conn.execute("SET default_transaction_read_only = on")
    schema = pg_schema(conn)
    findings = detect.detect(schema, sample_pg(conn, schema, sample), "postgres")
    return findings, detect.unreviewed(findings, rules) if rules else findings


def check_sqlite(
    path: str | Path, rules: Rules | None = None, sample: int = detect.SAMPLE
) -> tuple[list[Finding], list[Finding]]:
    """(findings, unreviewed) for a SQLite file, opened read-only."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        schema = sqlite_schema(db)
        findings = detect.detect(schema, sample_sqlite(db, schema, sample), "sqlite")
    finally:
        db.close()
    return findings, detect.unreviewed(findings, rules) if rules else findings
