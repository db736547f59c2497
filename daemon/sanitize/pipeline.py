"""Sanitize a copied staging database: detect → refuse → mask → compact → verify.

These functions work in place on a copy (``pg_dump | pg_restore`` into a temp
database, SQLite's online backup into a temp file), and the caller publishes it only
if they return. Any exception means "publish nothing": the caller drops the staging
copy. The PostgreSQL backend builds its snapshots with :mod:`stream_pg` instead,
which never writes an original into the published tables; the in-place
:func:`sanitize_postgres` remains for staging databases that already hold a copy.

::

    report = sanitize_postgres(admin_url, tmp_db, load_rules("sanitize.toml"))
    snapshot.info["sanitize"] = report.info()
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchdb.daemon.core.errors import BackendError
from branchdb.daemon.sanitize import compile_pg, compile_sqlite, detect, verify
from branchdb.daemon.sanitize.detect import Finding, UnreviewedColumns
from branchdb.daemon.sanitize.plan import ApplyReport, Progress, _noop
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import Schema, pg_schema, sqlite_schema


@dataclass
class SanitizeReport:
    findings: list[Finding]
    unreviewed: list[Finding]  # non-empty only with allow_unreviewed=True
    applied: ApplyReport
    verified: verify.VerifyReport
    tables: int = 0
    rows: int = 0  # rows left in the sanitized database
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """JSON-able summary to record on the snapshot (SnapshotRecord.info)."""
        return {
            "tables": self.tables,
            "rows": self.rows,
            "rules_applied": self.applied.rules_applied,
            "seconds": round(self.seconds, 3),
            "flagged": [f.where for f in self.findings],
            "allowed_unreviewed": [f.where for f in self.unreviewed],
            "originals_verified": self.verified.originals,
            "columns_searched": self.verified.columns_searched,
            "changes": self.applied.tables,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def summary(self) -> str:
        return (
            f"sanitized {self.tables} tables ({self.rows} rows): "
            f"{self.applied.rules_applied} column rules applied, "
            f"{self.verified.originals} original values verified absent from "
            f"{self.verified.columns_searched} columns in {self.seconds:.1f} s"
            + (
                f"; UNREVIEWED (allowed): {', '.join(f.where for f in self.unreviewed)}"
                if self.unreviewed
                else ""
            )
        )


def line_progress(progress: Callable[[str], None] | None) -> Progress:
    """Adapt a one-line progress callback to the sanitizer's (table, action, rows)."""

    def say(table: str, action: str, rows: int) -> None:
        if progress is not None:
            progress(f"{table}: {action} ({rows} rows)")

    return say


def _gate(
    findings: list[Finding], rules: Rules, allow_unreviewed: bool
) -> list[Finding]:
    missing = detect.unreviewed(findings, rules)
    if missing and not allow_unreviewed:
        raise UnreviewedColumns(missing, rules.source)
    return missing


def _rows(schema: Schema, count: Callable[[str], int]) -> int:
    return sum(count(k) for k in schema.tables)


def sanitize_postgres(
    admin_url: str,
    staging_db: str,
    rules: Rules,
    *,
    allow_unreviewed: bool = False,
    progress: Progress = _noop,
    sample: int = detect.SAMPLE,
) -> SanitizeReport:
    """Sanitize database *staging_db* in place (connecting with *admin_url*'s role).

    Raises UnreviewedColumns (flagged columns without a rule), RulesError (a rule
    cannot hold; nothing was changed) or LeakFound (an original survived).
    """
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from branchdb.daemon.backends.pg_session import connect

    started = time.monotonic()
    timings: dict[str, float] = {}
    mark = started

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[phase] = now - mark
        mark = now

    conn = connect(make_conninfo(admin_url, dbname=staging_db), what="staging database")
    try:
        schema = pg_schema(conn)
        findings = detect.detect(
            schema, detect.sample_pg(conn, schema, sample), "postgres"
        )
        missing = _gate(findings, rules, allow_unreviewed)
        lap("detect")
        originals = verify.capture_pg(conn, schema, rules)
        lap("capture")
        applied = compile_pg.apply(conn, schema, rules, progress)
        lap("mask")
        touched = [schema.tables[k] for k in applied.tables if k in schema.tables]
        for t in touched:
            # FULL rewrites the table: no dead tuple holding an original stays in
            # the pages a clone copies.
            conn.execute(
                sql.SQL("VACUUM (FULL, ANALYZE) {}").format(
                    sql.Identifier(t.schema, t.name)
                )
            )
            progress(t.key, "compacted", 0)
        lap("compact")
        verified = verify.verify_pg(conn, schema, originals)
        lap("verify")

        def count(key: str) -> int:
            t = schema.tables[key]
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(t.schema, t.name)
                )
            ).fetchone()
            return int(row[0]) if row else 0

        rows = _rows(schema, count)
    finally:
        conn.close()  # drops the TEMP table of originals with the session
    return SanitizeReport(
        findings, missing, applied, verified, len(schema.tables), rows,
        time.monotonic() - started, timings,
    )  # fmt: skip


def sanitize_sqlite(
    path: str | Path,
    rules: Rules,
    *,
    allow_unreviewed: bool = False,
    progress: Progress = _noop,
    sample: int = detect.SAMPLE,
) -> SanitizeReport:
    """Sanitize the SQLite staging file *path* in place; same contract as above."""
    started = time.monotonic()
    try:
        db = sqlite3.connect(str(path), isolation_level=None)
        # Originals are captured into TEMP tables: keep them in memory, not in a
        # temp file on disk.
        db.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as e:
        raise BackendError(f"cannot open staging file {path}: {e}") from None
    try:
        schema = sqlite_schema(db)
        findings = detect.detect(
            schema, detect.sample_sqlite(db, schema, sample), "sqlite"
        )
        missing = _gate(findings, rules, allow_unreviewed)
        originals = verify.capture_sqlite(db, schema, rules)
        applied = compile_sqlite.apply(db, schema, rules, progress)
        verified = verify.verify_sqlite(db, schema, originals)
        db.execute(f"DROP TABLE temp.{verify.TEMP}")
        db.execute(f"DROP TABLE temp.{verify.WORDS}")
        # VACUUM rebuilds the file: no free page keeps an overwritten original.
        db.execute("VACUUM")
        db.execute("ANALYZE")
        progress("", "compacted", 0)

        def count(key: str) -> int:
            return int(db.execute(f'SELECT count(*) FROM main."{key}"').fetchone()[0])

        rows = _rows(schema, count)
    except sqlite3.Error as e:
        raise BackendError(f"sanitizing {path} failed: {e}") from None
    finally:
        db.close()
    return SanitizeReport(
        findings, missing, applied, verified, len(schema.tables), rows,
        time.monotonic() - started,
    )  # fmt: skip


def check_postgres(
    url: str, rules: Rules | None = None, sample: int = detect.SAMPLE
) -> tuple[list[Finding], list[Finding]]:
    """(findings, unreviewed) for a live database, in a read-only session."""
    from branchdb.daemon.backends.pg_session import connect

    conn = connect(url, what="snapshot source")
    try:
        conn.execute("SET default_transaction_read_only = on")
        schema = pg_schema(conn)
        findings = detect.detect(
            schema, detect.sample_pg(conn, schema, sample), "postgres"
        )
    finally:
        conn.close()
    return findings, detect.unreviewed(findings, rules) if rules else findings


def check_sqlite(
    path: str | Path, rules: Rules | None = None, sample: int = detect.SAMPLE
) -> tuple[list[Finding], list[Finding]]:
    """(findings, unreviewed) for a SQLite file, opened read-only."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        schema = sqlite_schema(db)
        findings = detect.detect(
            schema, detect.sample_sqlite(db, schema, sample), "sqlite"
        )
    finally:
        db.close()
    return findings, detect.unreviewed(findings, rules) if rules else findings
