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
import re
from pathlib import Path
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


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def ddl(dialect: str, table: str, schema: str) -> list[str]:
    """drizzle-orm's ledger DDL (``sqlite-core/dialect.ts``, ``pg-core/dialect.ts``)."""
    if dialect == "postgres":
        return [
            f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}",
            f"CREATE TABLE IF NOT EXISTS {_quote(schema)}.{_quote(table)} "
            "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)",
        ]
    return [
        f"CREATE TABLE IF NOT EXISTS {_quote(table)} "
        "(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)"
    ]


_DDL = {d: ddl(d, TABLE, PG_SCHEMA) for d in ("sqlite", "postgres")}

#: drizzle-kit's config files, in the order drizzle-kit looks for them.
CONFIG_FILES = (
    "drizzle.config.ts",
    "drizzle.config.mts",
    "drizzle.config.cts",
    "drizzle.config.js",
    "drizzle.config.mjs",
    "drizzle.config.cjs",
    "drizzle.config.json",
)
_MIGRATIONS_BLOCK = re.compile(r"\bmigrations\s*:\s*\{([^{}]*)\}")
_KEY = r"""\b{key}\s*:\s*(["'`])([^"'`]+)\1"""


def config_ledger(root: Path) -> tuple[str | None, str | None]:
    """(table, schema) from ``migrations: { table, schema }`` in the project's
    drizzle config (literal strings only), or (None, None)."""
    for name in CONFIG_FILES:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        block = _MIGRATIONS_BLOCK.search(text)
        if block is None:
            return None, None
        found = [
            re.search(_KEY.format(key=k), block.group(1)) for k in ("table", "schema")
        ]
        table, schema = (m.group(2) if m else None for m in found)
        return table, schema
    return None, None


class DrizzleFormat:
    """*table*/*schema*: drizzle's ``migrationsTable``/``migrationsSchema`` (its
    config's ``migrations: { table, schema }``); the schema is PostgreSQL's only."""

    name: ClassVar[str] = "drizzle"
    runs_command: ClassVar[bool] = False
    ledger_is_high_water_mark: ClassVar[bool] = False

    def __init__(self, table: str | None = None, schema: str | None = None) -> None:
        self.table = table or TABLE
        self.schema = schema or PG_SCHEMA

    def _table(self, dialect: str) -> str:
        if dialect == "postgres":
            return f"{_quote(self.schema)}.{_quote(self.table)}"
        return _quote(self.table)

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
                    # branchdb 0.1 hashed CRLF files with LF endings; drizzle
                    # never compares hashes, so such rows stay valid.
                    meta={
                        "when": when,
                        "tag": tag,
                        "also_matches": (sha256_hex(text.replace("\r\n", "\n")),),
                    },
                )
            )
        return sorted(out, key=lambda m: m.order)

    def applied(self, db: Executor) -> list[Applied]:
        schema = self.schema if db.dialect == "postgres" else None
        if not table_exists(db, self.table, schema):
            return []
        rows = db.execute(
            f"SELECT hash, created_at FROM {self._table(db.dialect)} "
            "ORDER BY created_at, id"
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
        for statement in ddl(db.dialect, self.table, self.schema):
            db.execute(statement)

    def before(self, db: Executor, migration: Migration) -> None:
        return None

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        db.execute(
            f'INSERT INTO {self._table(db.dialect)} ("hash", "created_at") '
            "VALUES (?, ?)",
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
