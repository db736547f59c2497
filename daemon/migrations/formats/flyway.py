"""Flyway SQL migrations: ``V<version>__<desc>.sql`` and ``flyway_schema_history``.

Versions are dot or underscore separated numbers compared numerically (``1.10`` after
``1.9``; ``1.0`` equals ``1``). The checksum is Flyway's: CRC-32 over the file read
line by line with ``BufferedReader.readLine`` (terminators ``\\n``, ``\\r``, ``\\r\\n``
dropped, a BOM stripped from the first line), each line's UTF-8 bytes fed in turn,
stored as a signed 32-bit int (``ChecksumCalculator`` / ``LoadableResource``). The
history table uses Flyway's own DDL for PostgreSQL and SQLite. Undo (``U``) files
are ignored; repeatable (``R__``) migrations are not supported yet.
"""

from __future__ import annotations

import re
import zlib
from typing import ClassVar

from branchdb.daemon.core.dbsession import Executor
from branchdb.daemon.core.errors import MigrationError
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations.base import MigrationFiles, read_text, table_exists

TABLE = "flyway_schema_history"
_VERSIONED = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<desc>.*)\.sql$")
_REPEATABLE = re.compile(r"^R__.*\.sql$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_COLUMNS = """(
    "installed_rank" INT NOT NULL{pk},
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INT{integer},
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" {installed_on},
    "execution_time" INT{integer} NOT NULL,
    "success" BOOLEAN NOT NULL
)"""
_DDL = {
    # flyway-database sqlite createMetaDataTable.sql
    "sqlite": [
        f'CREATE TABLE "main"."{TABLE}" '
        + _COLUMNS.format(
            pk=" PRIMARY KEY",
            integer="",
            installed_on="TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now'))",
        ),
        f'CREATE INDEX "main"."{TABLE}_s_idx" ON "{TABLE}" ("success")',
    ],
    # flyway-core postgresql createMetaDataTable.sql (in the current schema)
    "postgres": [
        f'CREATE TABLE "{TABLE}" '
        + _COLUMNS.format(
            pk="", integer="EGER", installed_on="TIMESTAMP NOT NULL DEFAULT now()"
        ),
        f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{TABLE}_pk" '
        'PRIMARY KEY ("installed_rank")',
        f'CREATE INDEX "{TABLE}_s_idx" ON "{TABLE}" ("success")',
    ],
}
_INSTALLED_BY = {"sqlite": "''", "postgres": "current_user"}


def flyway_checksum(data: bytes) -> int:
    """Flyway's checksum of a file's bytes (UTF-8), as the signed int it stores."""
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # readLine() yields no empty line after a final terminator
    crc = 0
    for line in lines:
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - 2**32 if crc >= 2**31 else crc


def version_order(version: str) -> tuple[int, ...]:
    """Numeric parts with trailing zeros dropped: Flyway treats 1.0 and 1 as equal."""
    parts = [int(p) for p in re.split(r"[._]", version)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class FlywayFormat:
    name: ClassVar[str] = "flyway"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = False

    def detect(self, files: MigrationFiles) -> bool:
        return any(_VERSIONED.match(_base(p)) for p in files.paths())

    def load(self, files: MigrationFiles) -> list[Migration]:
        by_order: dict[tuple[int, ...], str] = {}
        out: list[Migration] = []
        for path in files.paths():
            base = _base(path)
            if _REPEATABLE.match(base):
                raise MigrationError(
                    f"flyway repeatable migration {path} is not supported by branchdb "
                    'yet; use versioned V<n>__ files, or format = "command" to run '
                    "flyway itself"
                )
            m = _VERSIONED.match(base)
            if m is None:
                continue
            version = m.group("version").replace("_", ".")
            order = version_order(version)
            if order in by_order:
                raise MigrationError(
                    f"flyway version {version} is used twice: {by_order[order]} and "
                    f"{path}; renumber one of them"
                )
            by_order[order] = path
            raw = files.read(path)
            out.append(
                Migration(
                    key=version,
                    name=path,
                    sql=read_text(files, path),
                    checksum=str(flyway_checksum(raw)),
                    statements=(),
                    order=order,
                    meta={
                        "version": version,
                        "description": m.group("desc").replace("_", " "),
                    },
                )
            )
        return sorted(out, key=lambda m: m.order)

    def applied(self, db: Executor) -> list[Applied]:
        if not table_exists(db, TABLE):
            return []
        rows = db.execute(
            f'SELECT "version", "checksum", "success", "type", "script" FROM "{TABLE}" '
            'ORDER BY "installed_rank"'
        )
        out: list[Applied] = []
        for version, checksum, success, type_, script in rows:
            if not success:
                raise MigrationError(
                    f"{TABLE} records a failed migration {script} (version "
                    f"{version}); flyway would require `flyway repair`. Rebuild this "
                    "branch's database with `branchdb reset`"
                )
            if type_ != "SQL" or version is None:
                continue  # schema markers, baselines, repeatables
            out.append(
                Applied(
                    key=str(version),
                    checksum=None if checksum is None else str(checksum),
                    label=f"{script} (version {version})",
                )
            )
        return out

    def ensure_ledger(self, db: Executor) -> None:
        # Flyway's DDL has no IF NOT EXISTS (and PostgreSQL's constraint cannot).
        if table_exists(db, TABLE):
            return
        for ddl in _DDL[db.dialect]:
            db.execute(ddl)

    def before(self, db: Executor, migration: Migration) -> None:
        return None

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        t = f'"{TABLE}"'
        db.execute(
            f"INSERT INTO {t} (installed_rank, version, description, type, script, "
            "checksum, installed_by, execution_time, success) VALUES "
            f"((SELECT COALESCE(MAX(installed_rank), 0) + 1 FROM {t}), ?, ?, 'SQL', "
            f"?, ?, {_INSTALLED_BY[db.dialect]}, ?, ?)",
            [
                migration.key,
                migration.meta["description"],
                migration.name,
                int(migration.checksum),
                duration_ms,
                True,
            ],
        )


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]
