"""Sanitize a copied SQLite staging file: detect → refuse → mask → compact → verify.

:func:`sanitize_sqlite` works in place on a copy (SQLite's online backup into a temp
file, made by the libsql back-end), and the caller publishes it only if it returns.
Any exception means "publish nothing": the caller deletes the staging copy.

::

    report = sanitize_sqlite(tmp_path, load_rules("sanitize.toml"))
    snapshot.info["sanitize"] = report.info()
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from branchdb.daemon.core.errors import BackendError
from branchdb.daemon.sanitize import detect
from branchdb.daemon.sanitize.detect import refuse_unreviewed
from branchdb.daemon.sanitize.plan import Progress, no_progress
from branchdb.daemon.sanitize.report import SanitizeReport
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.sqlite import masking
from branchdb.daemon.sanitize.sqlite.introspect import sample_sqlite, sqlite_schema
from branchdb.daemon.sanitize.sqlite.verify import (
    capture_sqlite,
    drop_captured,
    verify_sqlite,
)


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
        samples = sample_sqlite(db, schema, sample)
        findings = detect.detect(schema, samples, "sqlite")
        missing = refuse_unreviewed(findings, rules, allow_unreviewed)
        originals = capture_sqlite(db, schema, rules)
        applied = masking.apply(db, schema, rules, progress)
        verified = verify_sqlite(db, schema, originals)
        drop_captured(db)
        # VACUUM rebuilds the file: no free page keeps an overwritten original.
        db.execute("VACUUM")
        db.execute("ANALYZE")
        progress("", "compacted", 0)

        def count(key: str) -> int:
            return int(db.execute(f'SELECT count(*) FROM main."{key}"').fetchone()[0])

        rows = sum(count(k) for k in schema.tables)
    except sqlite3.Error as e:
        raise BackendError(f"sanitizing {path} failed: {e}") from None
    finally:
        db.close()
    return SanitizeReport(
        findings, missing, applied, verified, len(schema.tables), rows,
        time.monotonic() - started, sampling=samples.limits(),
    )  # fmt: skip
