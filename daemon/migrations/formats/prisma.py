"""Prisma Migrate: ``<timestamp>_<name>/migration.sql`` and ``_prisma_migrations``.

The ledger is created with the exact DDL of prisma's schema engine (PostgreSQL and
SQLite flavours) and kept with its semantics, so ``prisma migrate deploy`` and
``prisma migrate status`` agree with branchdb about what is applied:

- ``checksum`` is the lowercase hex SHA-256 of ``migration.sql``'s text as read
  (a BOM and a missing final newline change it); like prisma's
  ``script_matches_checksum`` (``schema-connector/src/checksum.rs``), a ledger row
  also matches the file with CRLF turned into LF or LF into CRLF, and a checksum an
  old prisma wrote without zero padding;
- a row is *applied* when ``finished_at`` is set and ``rolled_back_at`` is not;
- a row with neither is a *failed* migration: prisma refuses to go on (P3009), and so
  does branchdb, until it is resolved;
- rows marked ``rolled_back_at`` (``prisma migrate resolve --rolled-back``) are
  ignored, so the migration is applied again.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from branchdb.daemon.core.errors import MigrationError
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations.base import (
    Executor,
    MigrationFiles,
    read_text,
    sha256_hex,
    table_exists,
)

LEDGER = "_prisma_migrations"
_DIR = re.compile(r"^(?P<dir>[^/]+)/migration\.sql$")

# Verbatim from prisma-engines' schema engine (sql-schema-connector flavours).
_DDL = {
    "postgres": """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);""",
    "sqlite": """CREATE TABLE "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
);""",
}


def matching_checksums(script: str) -> frozenset[str]:
    """Every ledger checksum prisma accepts for *script* (see the module doc)."""
    variants = (script, script.replace("\r\n", "\n"), script.replace("\n", "\r\n"))
    out: set[str] = set()
    for text in variants:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        out.add(digest.hex())
        out.add("".join(f"{b:x}" for b in digest))  # prisma-engines issue 1887
    return frozenset(out)


def _now(dialect: str, delta_ms: int = 0) -> Any:
    t = datetime.now(UTC) - timedelta(milliseconds=delta_ms)
    # Prisma's SQLite driver stores DateTime values as Unix milliseconds.
    return int(t.timestamp() * 1000) if dialect == "sqlite" else t


class PrismaFormat:
    name: ClassVar[str] = "prisma"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = False

    def detect(self, files: MigrationFiles) -> bool:
        paths = files.paths()
        return "migration_lock.toml" in paths or any(_DIR.match(p) for p in paths)

    def load(self, files: MigrationFiles) -> list[Migration]:
        out: list[Migration] = []
        paths = files.paths()
        dirs = sorted({p.split("/", 1)[0] for p in paths if "/" in p})
        for d in dirs:
            path = f"{d}/migration.sql"
            if path not in paths:
                raise MigrationError(
                    f"prisma migration directory {d}/ has no migration.sql (prisma "
                    "P3015): add it or remove the directory"
                )
            # The runner splits the script for the database's dialect and runs
            # it outside a transaction if a statement cannot run inside one.
            script = read_text(files, path)
            out.append(
                Migration(
                    key=d,
                    name=path,
                    sql=script,
                    checksum=sha256_hex(script),
                    statements=(),
                    order=(d,),
                    meta={"also_matches": matching_checksums(script)},
                )
            )
        return out

    def applied(self, db: Executor) -> list[Applied]:
        if not table_exists(db, LEDGER):
            return []
        rows = db.execute(
            "SELECT migration_name, checksum, finished_at, rolled_back_at, started_at "
            f"FROM {LEDGER} ORDER BY started_at, migration_name"
        )
        failed = [r for r in rows if r[2] is None and r[3] is None]
        if failed:
            names = ", ".join(f"{r[0]} (started at {r[4]})" for r in failed)
            first = failed[0][0]
            raise MigrationError(
                f"{LEDGER} records failed migrations: {names}. Like prisma (P3009), "
                "no new migration is applied until they are resolved: fix the "
                "database, then run `npx prisma migrate resolve --rolled-back "
                f"{first}` (or --applied), or rebuild this branch's database with "
                "`branchdb reset`"
            )
        seen: dict[str, Applied] = {}
        for name, checksum, finished, rolled_back, _ in rows:
            if finished is not None and rolled_back is None and name not in seen:
                seen[name] = Applied(key=name, checksum=checksum, label=name)
        return list(seen.values())

    def ensure_ledger(self, db: Executor) -> None:
        if not table_exists(db, LEDGER):
            db.execute(_DDL["sqlite" if db.dialect == "sqlite" else "postgres"])

    def before(self, db: Executor, migration: Migration) -> None:
        # Prisma's own order: a started row first, finished when the script is done.
        # If a statement fails midway the row stays unfinished: a failed migration.
        db.execute(
            f"INSERT INTO {LEDGER} (id, checksum, migration_name, started_at, "
            "applied_steps_count) VALUES (?, ?, ?, ?, 0)",
            [str(uuid.uuid4()), migration.checksum, migration.key, _now(db.dialect)],
        )

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        now = _now(db.dialect)
        started = db.execute(
            f"SELECT id FROM {LEDGER} WHERE migration_name = ? AND finished_at IS NULL "
            "AND rolled_back_at IS NULL",
            [migration.key],
        )
        if started:
            db.execute(
                f"UPDATE {LEDGER} SET finished_at = ?, applied_steps_count = 1 "
                "WHERE id = ?",
                [now, started[0][0]],
            )
            return
        db.execute(
            f"INSERT INTO {LEDGER} (id, checksum, finished_at, migration_name, logs, "
            "rolled_back_at, started_at, applied_steps_count) "
            "VALUES (?, ?, ?, ?, NULL, NULL, ?, 1)",
            [
                str(uuid.uuid4()),
                migration.checksum,
                now,
                migration.key,
                _now(db.dialect, duration_ms),
            ],
        )
