"""What a migration tool's own ledger says, in one line: for ``status`` and for
``format = "command"``, where branchdb does not read the migrations itself.

Read-only; every probe is error-free on both dialects (see
:func:`~branchdb.daemon.migrations.base.table_exists`), so it is safe inside a
PostgreSQL transaction.
"""

from __future__ import annotations

from branchdb.daemon.core.dbsession import Executor
from branchdb.daemon.migrations.base import table_exists
from branchdb.daemon.migrations.files import LEDGER_TABLES

#: drizzle keeps its PostgreSQL ledger in its own schema.
_PG_SCHEMAS = {"__drizzle_migrations": "drizzle"}


def describe(
    db: Executor, tables: tuple[str, ...] = (), schema: str | None = None
) -> str | None:
    """``alembic_version = 3f2a…`` or ``schema_migrations: 2 rows (newest …)`` for
    every known ledger table in *db* (plus *tables*), joined by ``; ``; None when
    there is none."""
    out: list[str] = []
    for table in dict.fromkeys(LEDGER_TABLES + tables):
        where = None
        if db.dialect == "postgres":
            where = schema if table in tables and schema else _PG_SCHEMAS.get(table)
        if not table_exists(db, table, where):
            continue
        name = f'"{table}"' if where is None else f'"{where}"."{table}"'
        rows = db.execute(f"SELECT * FROM {name}")
        if table == "alembic_version":
            heads = ", ".join(str(r[0]) for r in rows) or "(empty)"
            out.append(f"alembic_version = {heads}")
            continue
        text = f"{table}: {len(rows)} row{'s' if len(rows) != 1 else ''}"
        if rows and table == "schema_migrations":
            text += f" (newest {max(str(r[0]) for r in rows)})"
        out.append(text)
    return "; ".join(out) or None
