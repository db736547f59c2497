"""golang-migrate: ``<version>_<title>.up.sql`` files and a one-row ledger.

The ledger is golang-migrate's ``schema_migrations (version, dirty)``, created with the
DDL of its ``database/postgres`` and ``database/sqlite3`` drivers. It holds only the
latest version, so the format is a *high-water mark*: every file ordered at or before
that version counts as applied. ``dirty = true`` means a migration stopped halfway;
golang-migrate refuses to go on, and so does branchdb.
"""

from __future__ import annotations

import re
from typing import ClassVar

from branchdb.daemon.core.dbsession import Executor
from branchdb.daemon.core.errors import MigrationError
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations.base import (
    MigrationFiles,
    read_text,
    sha256_hex,
    table_exists,
    text_checksum,
)

TABLE = "schema_migrations"
# golang-migrate source/parse.go: ^([0-9]+)_(.*)\.(down|up)\.(.*)$
_FILE = re.compile(r"^([0-9]+)_(.*)\.(down|up)\.(.*)$")

_DDL = {
    "sqlite": [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (version uint64,dirty bool)",
        f"CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON {TABLE} (version)",
    ],
    "postgres": [
        f"CREATE TABLE IF NOT EXISTS {TABLE} "
        "(version bigint not null primary key, dirty boolean not null)"
    ],
}


class GolangMigrateFormat:
    name: ClassVar[str] = "golang-migrate"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = True

    def detect(self, files: MigrationFiles) -> bool:
        return any(_parse(p) is not None for p in files.paths())

    def load(self, files: MigrationFiles) -> list[Migration]:
        by_version: dict[int, str] = {}
        out: list[Migration] = []
        for path in files.paths():
            parsed = _parse(path)
            if parsed is None:
                continue
            version, title = parsed
            if version in by_version:
                raise MigrationError(
                    f"golang-migrate version {version} is used twice: "
                    f"{by_version[version]} and {path}; renumber one of them"
                )
            by_version[version] = path
            text = read_text(files, path)
            out.append(
                Migration(
                    key=str(version),
                    name=path,
                    sql=text,
                    checksum=text_checksum(text),
                    statements=(),
                    order=(version,),
                    # golang-migrate keeps no checksum; branchdb's own (its record
                    # in the store) ignores line endings and a BOM. Records made
                    # before that hashed the raw bytes.
                    meta={
                        "version": version,
                        "title": title,
                        "also_matches": (sha256_hex(files.read(path)),),
                    },
                )
            )
        return sorted(out, key=lambda m: m.order)

    def applied(self, db: Executor) -> list[Applied]:
        if not table_exists(db, TABLE):
            return []
        rows = db.execute(f"SELECT version, dirty FROM {TABLE} LIMIT 1")
        if not rows:
            return []
        version, dirty = rows[0]
        if dirty:
            raise MigrationError(
                f"database is dirty at version {version}: a migration without a "
                "transaction stopped halfway and golang-migrate would refuse to go "
                "on. Fix it, then `branchdb reset` (or `migrate force` the version)"
            )
        return [Applied(key=str(version), checksum=None, label=f"version {version}")]

    def ensure_ledger(self, db: Executor) -> None:
        # golang-migrate checks first so that a read-only role can still migrate.
        if table_exists(db, TABLE):
            return
        for ddl in _DDL[db.dialect]:
            db.execute(ddl)

    def before(self, db: Executor, migration: Migration) -> None:
        """Mark the database dirty at this version, as golang-migrate does."""
        _set_version(db, int(migration.key), dirty=True)

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        _set_version(db, int(migration.key), dirty=False)


def _set_version(db: Executor, version: int, *, dirty: bool) -> None:
    db.execute(f"DELETE FROM {TABLE}")
    db.execute(f"INSERT INTO {TABLE} (version, dirty) VALUES (?, ?)", [version, dirty])


def _parse(path: str) -> tuple[int, str] | None:
    """(version, title) of a top-level up-migration; None for anything else."""
    if "/" in path:  # golang-migrate's file source reads one directory
        return None
    m = _FILE.match(path)
    if m is None or m.group(3) != "up" or m.group(4) != "sql":
        return None
    version = int(m.group(1))
    if version >= 2**63:  # bigint column; golang-migrate's uint would overflow it
        raise MigrationError(f"golang-migrate version in {path} is too large")
    return version, m.group(2)
