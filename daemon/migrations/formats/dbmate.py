"""dbmate: ``<version>_<name>.sql`` files with ``-- migrate:up`` / ``-- migrate:down``.

Only the up block runs. ``-- migrate:up transaction:false`` opts a file out of the
transaction, as in dbmate's ``pkg/dbmate/migration.go``. The ledger is dbmate's
``schema_migrations (version varchar(128) primary key)``, one row per applied file.
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
)

TABLE = "schema_migrations"
_FILE = re.compile(r"^(\d+).*\.sql$")
# The directive patterns of dbmate's migration.go.
_UP = re.compile(r"^--\s*migrate:up(\s*$|\s+\S+)", re.MULTILINE)
_DOWN = re.compile(r"^--\s*migrate:down(\s*$|\s+\S+)$", re.MULTILINE)

_COLUMNS = "(version varchar(128) primary key)"
_DDL = {
    "sqlite": f'CREATE TABLE IF NOT EXISTS "{TABLE}" {_COLUMNS}',
    "postgres": f"CREATE TABLE IF NOT EXISTS {TABLE} {_COLUMNS}",
}


class DbmateFormat:
    name: ClassVar[str] = "dbmate"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = False

    def detect(self, files: MigrationFiles) -> bool:
        return any(
            _FILE.match(p) and _UP.search(files.read(p).decode("utf-8", "replace"))
            for p in files.paths()
            if "/" not in p
        )

    def load(self, files: MigrationFiles) -> list[Migration]:
        by_version: dict[str, str] = {}
        out: list[Migration] = []
        for path in files.paths():
            m = _FILE.match(path)
            if "/" in path or m is None:
                continue
            version = m.group(1)
            if version in by_version:
                raise MigrationError(
                    f"dbmate version {version} is used twice: {by_version[version]} "
                    f"and {path}; renumber one of them"
                )
            by_version[version] = path
            up, transactional = parse_up(read_text(files, path), path)
            out.append(
                Migration(
                    key=version,
                    name=path,
                    sql=up,
                    checksum=sha256_hex(up),
                    statements=(),
                    order=(path,),  # dbmate applies files in name order
                    transactional=transactional,
                    meta={"version": version},
                )
            )
        return sorted(out, key=lambda m: m.order)

    def applied(self, db: Executor) -> list[Applied]:
        if not table_exists(db, TABLE):
            return []
        rows = db.execute(f"SELECT version FROM {TABLE} ORDER BY version")
        return [
            Applied(key=str(v), checksum=None, label=f"version {v}") for (v,) in rows
        ]

    def ensure_ledger(self, db: Executor) -> None:
        db.execute(_DDL[db.dialect])

    def before(self, db: Executor, migration: Migration) -> None:
        return None

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        db.execute(f"INSERT INTO {TABLE} (version) VALUES (?)", [migration.key])


def parse_up(text: str, path: str) -> tuple[str, bool]:
    """(up block, runs in a transaction) of a dbmate file; MigrationError if bad."""
    up = _UP.search(text)
    if up is None:
        raise MigrationError(
            f"dbmate migration {path} has no '-- migrate:up' line; add one above "
            "its statements"
        )
    down = _DOWN.search(text)
    if down is not None and down.start() < up.start():
        raise MigrationError(
            f"dbmate migration {path}: '-- migrate:up' must come before "
            "'-- migrate:down'"
        )
    for line in text[: up.start()].split("\n"):
        if line.strip() and not line.lstrip().startswith("--"):
            raise MigrationError(
                f"dbmate migration {path} has statements before '-- migrate:up'; "
                "move them into the up block"
            )
    block = text[up.start() : down.start() if down is not None else len(text)]
    options: dict[str, str] = {}
    for pair in block.split("\n", 1)[0].split():
        parts = pair.split(":")
        if len(parts) == 2:
            options[parts[0]] = parts[1]
    return block, options.get("transaction") != "false"
