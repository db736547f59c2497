"""dbmate: ``<version>_<name>.sql`` files with ``-- migrate:up`` / ``-- migrate:down``.

Only the up block runs. ``-- migrate:up transaction:false`` opts a file out of the
transaction, as in dbmate's ``pkg/dbmate/migration.go``. The ledger is dbmate's
``schema_migrations (version varchar(128) primary key)``, one row per applied file.

A pending file that dbmate 2.36 would refuse (no ``-- migrate:down`` block,
statements before ``-- migrate:up``, ...) is refused with dbmate's own message, so a
file cannot work on branch databases and then fail in CI or production. dbmate
parses a file only when it applies it, so an applied file is not checked again.
"""

from __future__ import annotations

import itertools
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
_FILE = re.compile(r"^(\d+).*\.sql$")
# The directive patterns of dbmate's pkg/dbmate/migration.go. Go's RE2 ``\s`` is
# ASCII whitespace only, and its ``$`` (multi-line) matches only before ``\n``.
_WS = r"[\t\n\f\r ]"
_UP = re.compile(rf"^--{_WS}*migrate:up({_WS}*(?=\n|\Z)|{_WS}+[^\t\n\f\r ])", re.M)
_DOWN = re.compile(rf"^--{_WS}*migrate:down({_WS}*(?=\n|\Z)|{_WS}+[^\t\n\f\r ])", re.M)
_BLANK_OR_COMMENT = re.compile(rf"^{_WS}*(--|$)")

# dbmate's own error messages (migration.go), so branchdb refuses with its words.
ERR_MISSING_UP = (
    "dbmate requires each migration to define an up block with '-- migrate:up'"
)
ERR_MISSING_DOWN = (
    "dbmate requires each migration to define a down block with '-- migrate:down'"
)
ERR_UNEXPECTED_STMT = (
    "dbmate does not support statements preceding the '-- migrate:up' block"
)
ERR_MULTIPLE_DOWN = (
    "dbmate requires every '-- migrate:down' to be preceded by a '-- migrate:up'"
)

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
            text = read_text(files, path)
            meta: dict[str, object] = {"version": version}
            try:
                up, transactional = parse_up(text)
            except MigrationError as e:
                # dbmate parses a file only when it is about to apply it: the
                # runner refuses this one only if it is pending.
                up, transactional = "", True
                meta["refused"] = f"{e}; dbmate would refuse it"
            checksum = text_checksum(up)
            # Records made before the checksum ignored line endings hashed raw text.
            meta["also_matches"] = (sha256_hex(up),)
            out.append(
                Migration(
                    key=version,
                    name=path,
                    sql=up,
                    checksum=checksum,
                    statements=(),
                    order=(path,),  # dbmate applies files in name order
                    transactional=transactional,
                    meta=meta,
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


def parse_up(text: str) -> tuple[str, bool]:
    """(up block, runs in a transaction) of a dbmate file, checked as dbmate 2.36
    checks it (``parseMigrationContents``); MigrationError with dbmate's message."""
    ups = list(_UP.finditer(text))
    if not ups:
        raise MigrationError(ERR_MISSING_UP)
    for line in text[: ups[0].start()].split("\n"):
        if not _BLANK_OR_COMMENT.match(line):
            raise MigrationError(ERR_UNEXPECTED_STMT)
    bounds = [m.start() for m in ups] + [len(text)]
    sections = [text[a:b] for a, b in itertools.pairwise(bounds)]
    for section in sections:
        if len(_DOWN.findall(section)) > 1:
            raise MigrationError(ERR_MULTIPLE_DOWN)
    down = _DOWN.search(sections[0])
    if down is None:
        raise MigrationError(ERR_MISSING_DOWN)
    if len(sections) > 1:
        # dbmate 2.36 records the version once per block, so its second insert
        # into schema_migrations fails: such a file never applies cleanly.
        raise MigrationError(
            "more than one '-- migrate:up' block: dbmate records the version once "
            "per block and fails on the second; merge the blocks"
        )
    block = sections[0][: down.start()]
    options: dict[str, str] = {}
    first = block.split("\n", 1)[0]
    first = re.sub(r"^--\s*migrate:(up|down)", "", first).strip()
    for pair in re.split(_WS + "+", first) if first else []:
        parts = pair.split(":")
        if len(parts) == 2:
            options[parts[0]] = parts[1]
    return block, options.get("transaction") != "false"
