"""Sanitize a copied SQLite staging file: detect → refuse → mask → compact → verify.

:func:`sanitize_sqlite` works in place on a copy (SQLite's online backup into a temp
file), and the caller publishes it only if it returns. Any exception means "publish
nothing": the caller deletes the staging copy. (PostgreSQL snapshots are built by
:mod:`stream_pg`, which never writes an original into the published tables.)

::

    report = sanitize_sqlite(tmp_path, load_rules("sanitize.toml"))
    snapshot.info["sanitize"] = report.info()
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.errors import BackendError
from branchdb.daemon.sanitize import compile_sqlite, detect, verify
from branchdb.daemon.sanitize.detect import Finding, refuse_unreviewed
from branchdb.daemon.sanitize.plan import ApplyReport, Progress, no_progress
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import Schema, pg_schema, sqlite_schema

if TYPE_CHECKING:
    import psycopg


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


def _rows(schema: Schema, count: Callable[[str], int]) -> int:
    return sum(count(k) for k in schema.tables)


def sanitize_sqlite(
    path: str | Path,
    rules: Rules,
    *,
    allow_unreviewed: bool = False,
    progress: Progress = no_progress,
    sample: int = detect.SAMPLE,
) -> SanitizeReport:
    """Sanitize the SQLite staging file *path* in place.

    Raises UnreviewedColumns (flagged columns without a rule), RulesError (a rule
    cannot hold; nothing was changed), LeakFound (an original survived) or
    BackendError (SQLite failed).
    """
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
        missing = refuse_unreviewed(findings, rules, allow_unreviewed)
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
    findings = detect.detect(schema, detect.sample_pg(conn, schema, sample), "postgres")
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
