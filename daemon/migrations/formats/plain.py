"""Plain SQL files, applied in natural name order, recorded in ``_branchdb_migrations``.

For teams without a migration tool: every ``*.sql`` at the top of the directory is
one migration (``2_x.sql`` before ``10_y.sql``). A file whose first line is
``-- branchdb:no-transaction`` runs outside a transaction.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import ClassVar

from branchdb.daemon.core.dbsession import Executor
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations.base import (
    MigrationFiles,
    read_text,
    sha256_hex,
    table_exists,
)

TABLE = "_branchdb_migrations"
NO_TRANSACTION = "-- branchdb:no-transaction"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(name text primary key, checksum text not null, applied_at text not null)"
)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers: ``2_x`` < ``10_y``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in re.split(r"(\d+)", name)
        if part
    )


class PlainSqlFormat:
    name: ClassVar[str] = "sql"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = False

    def detect(self, files: MigrationFiles) -> bool:
        return any(_is_migration(p) for p in files.paths())

    def load(self, files: MigrationFiles) -> list[Migration]:
        out: list[Migration] = []
        for path in files.paths():
            if not _is_migration(path):
                continue
            text = read_text(files, path)
            first = text.removeprefix("\ufeff").split("\n", 1)[0].strip()
            out.append(
                Migration(
                    key=path,
                    name=path,
                    sql=text,
                    checksum=sha256_hex(files.read(path)),
                    statements=(),
                    order=(natural_key(path), path),
                    transactional=first != NO_TRANSACTION,
                )
            )
        return sorted(out, key=lambda m: m.order)

    def applied(self, db: Executor) -> list[Applied]:
        if not table_exists(db, TABLE):
            return []
        rows = db.execute(f"SELECT name, checksum FROM {TABLE}")
        found = [Applied(key=n, checksum=c, label=n) for n, c in rows]
        return sorted(found, key=lambda a: (natural_key(a.key), a.key))

    def ensure_ledger(self, db: Executor) -> None:
        db.execute(_DDL)

    def before(self, db: Executor, migration: Migration) -> None:
        return None

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        db.execute(
            f"INSERT INTO {TABLE} (name, checksum, applied_at) VALUES (?, ?, ?)",
            [migration.key, migration.checksum, now.replace("+00:00", "Z")],
        )


def _is_migration(path: str) -> bool:
    return "/" not in path and path.endswith(".sql")
