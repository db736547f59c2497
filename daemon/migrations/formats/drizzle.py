"""drizzle-kit migrations: ``meta/_journal.json`` plus one ``<tag>.sql`` per entry.

Reads and writes exactly what drizzle-orm's own migrator does (``readMigrationFiles``
in ``drizzle-orm/src/migrator.ts``, ``migrate`` in ``sqlite-core/dialect.ts`` and
``pg-core/dialect.ts``): the hash is the sha256 of the file's text exactly as read
(``readFileSync(...).toString()``: CRLF, a UTF-8 BOM and a missing final newline all
change it; nothing is normalised), statements are that text split on
``--> statement-breakpoint``, and the ledger row is ``(hash, created_at = journal
"when")``. A BOM stays in the first statement, as with drizzle: SQLite ignores it,
PostgreSQL rejects it with a syntax error. drizzle itself only compares the
newest ``created_at`` with each ``when``; branchdb compares every row, which is what
lets it notice a migration that arrived below an applied one after a rebase.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from branchdb.daemon.core.dbsession import Executor
from branchdb.daemon.core.errors import MigrationError
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations.base import (
    MigrationFiles,
    read_text,
    sha256_hex,
    table_exists,
)

JOURNAL = "meta/_journal.json"
BREAKPOINT = "--> statement-breakpoint"
TABLE = "__drizzle_migrations"
PG_SCHEMA = "drizzle"

_DDL = {
    "sqlite": [
        f'CREATE TABLE IF NOT EXISTS "{TABLE}" '
        "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)"
    ],
    "postgres": [
        f'CREATE SCHEMA IF NOT EXISTS "{PG_SCHEMA}"',
        f'CREATE TABLE IF NOT EXISTS "{PG_SCHEMA}"."{TABLE}" '
        "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)",
    ],
}


def _table(dialect: str) -> str:
    return f'"{PG_SCHEMA}"."{TABLE}"' if dialect == "postgres" else f'"{TABLE}"'


class DrizzleFormat:
    name: ClassVar[str] = "drizzle"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = False

    def detect(self, files: MigrationFiles) -> bool:
        return JOURNAL in files.paths()

    def load(self, files: MigrationFiles) -> list[Migration]:
        paths = set(files.paths())
        if JOURNAL not in paths:
            raise MigrationError(f"drizzle migrations need {JOURNAL}; it is missing")
        entries = _journal_entries(read_text(files, JOURNAL))
        out: list[Migration] = []
        seen: dict[str, str] = {}
        for entry in entries:
            tag, when, idx = entry["tag"], entry["when"], entry["idx"]
            path = f"{tag}.sql"
            if path not in paths:
                raise MigrationError(
                    f"{JOURNAL} lists {tag!r} but {path} does not exist; restore it "
                    "or regenerate the journal with drizzle-kit"
                )
            key = str(when)
            if key in seen:
                raise MigrationError(
                    f"{JOURNAL}: {seen[key]} and {path} have the same when={when}; "
                    "drizzle tells migrations apart by it"
                )
            seen[key] = path
            # Hashed and split as read, like drizzle-orm: no line-ending changes.
            text = read_text(files, path)
            statements = tuple(s.strip() for s in text.split(BREAKPOINT) if s.strip())
            out.append(
                Migration(
                    key=key,
                    name=path,
                    sql=text,
                    checksum=sha256_hex(text),
                    statements=statements,
                    order=(idx,),
                    meta={"when": when, "tag": tag},
                )
            )
        return sorted(out, key=lambda m: m.order)

    def applied(self, db: Executor) -> list[Applied]:
        schema = PG_SCHEMA if db.dialect == "postgres" else None
        if not table_exists(db, TABLE, schema):
            return []
        rows = db.execute(
            f"SELECT hash, created_at FROM {_table(db.dialect)} ORDER BY created_at, id"
        )
        out: list[Applied] = []
        for hash_, created_at in rows:
            key = "?" if created_at is None else str(int(float(created_at)))
            out.append(
                Applied(
                    key=key,
                    checksum=hash_,
                    label=f"hash {str(hash_)[:12]} created_at {created_at}",
                )
            )
        return out

    def ensure_ledger(self, db: Executor) -> None:
        for ddl in _DDL[db.dialect]:
            db.execute(ddl)

    def before(self, db: Executor, migration: Migration) -> None:
        return None

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        db.execute(
            f'INSERT INTO {_table(db.dialect)} ("hash", "created_at") VALUES (?, ?)',
            [migration.checksum, migration.meta["when"]],
        )


def _journal_entries(text: str) -> list[dict[str, Any]]:
    try:
        journal = json.loads(text)
        entries = journal["entries"]
        out = [
            {"idx": int(e["idx"]), "when": int(e["when"]), "tag": str(e["tag"])}
            for e in entries
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise MigrationError(
            f"{JOURNAL} is not a drizzle journal ({type(e).__name__}: {e}); "
            "regenerate it with drizzle-kit"
        ) from None
    return out
