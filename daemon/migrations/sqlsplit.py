"""Split a migration script into statements, and tell which cannot run in a transaction.

SQLite scripts are split with :func:`sqlite3.complete_statement`, SQLite's own test
for "this text ends a statement" (it knows strings, comments and trigger bodies).
PostgreSQL scripts are split by pglast, the PostgreSQL parser itself, so dollar-quoted
bodies, ``DO`` blocks and ``E''`` strings come out whole. pglast is imported lazily:
it is only needed when a PostgreSQL database is migrated.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from branchdb.daemon.core.errors import MigrationError

_BOM = "\ufeff"


def split(sql: str, dialect: str) -> list[str]:
    """The statements of *sql*, in order, without empty or comment-only chunks.

    Statements keep their text (SQLite: with the trailing ``;``) minus leading
    comments and whitespace. Raises MigrationError for a PostgreSQL syntax error,
    naming line and column.
    """
    sql = sql.removeprefix(_BOM)
    if dialect == "sqlite":
        return _split_sqlite(sql)
    if dialect == "postgres":
        return _split_postgres(sql)
    raise ValueError(f"unknown SQL dialect {dialect!r}")


def _split_sqlite(sql: str) -> list[str]:
    out: list[str] = []
    start = 0
    pos = sql.find(";")
    while pos != -1:
        chunk = sql[start : pos + 1]
        # A ";" inside a string, comment or trigger body does not end the statement;
        # complete_statement knows which is which.
        if sqlite3.complete_statement(chunk):
            _keep(out, chunk)
            start = pos + 1
        pos = sql.find(";", pos + 1)
    _keep(out, sql[start:])
    return out


def _keep(out: list[str], chunk: str) -> None:
    body = _skip_leading_comments(chunk)
    if body.strip().strip(";").strip():
        out.append(body.strip())


def _skip_leading_comments(text: str) -> str:
    """*text* from its first token on (``--`` and ``/* */`` comments removed)."""
    i = 0
    n = len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            break
    return text[i:]


def _split_postgres(sql: str) -> list[str]:
    import pglast
    from pglast.parser import ParseError

    if not _skip_leading_comments(sql).strip().strip(";").strip():
        return []
    try:
        parts = pglast.split(sql, with_parser=True)
    except ParseError as e:
        raise MigrationError(_describe_parse_error(sql, e)) from None
    return [p.strip() for p in parts if p.strip()]


def _describe_parse_error(sql: str, e: Exception) -> str:
    message = e.args[0] if e.args else str(e)
    location = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None
    if location is None:
        return f"SQL syntax error: {message}"
    before = sql[:location]
    line = before.count("\n") + 1
    column = location - (before.rfind("\n") + 1) + 1
    return f"SQL syntax error at line {line}, column {column}: {message}"


# Statements PostgreSQL refuses inside a transaction block, by parse-tree node.
_NEVER_IN_TX = {
    "CreatedbStmt",
    "DropdbStmt",
    "AlterSystemStmt",
    "CreateTableSpaceStmt",
    "DropTableSpaceStmt",
    "CreateSubscriptionStmt",
    "DropSubscriptionStmt",
}
_NO_TX_PREFIX = re.compile(
    r"""^\s*(
        (create|drop)\s+(unique\s+)?index\s+concurrently
      | reindex\b.*\bconcurrently\b
      | reindex\s+(\(.*\)\s*)?(system|database|schema)\b
      | vacuum\b
      | (create|drop)\s+(database|tablespace|subscription)\b
      | alter\s+system\b
      | alter\s+table\b.*\bdetach\s+partition\b.*\bconcurrently\b
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def needs_autocommit(stmt: str, dialect: str = "postgres") -> bool:
    """True if *stmt* (one statement or a chunk of several) cannot run in a transaction.

    PostgreSQL: ``CREATE/DROP INDEX CONCURRENTLY``, ``REINDEX … CONCURRENTLY`` and
    ``REINDEX SCHEMA/DATABASE/SYSTEM``, ``VACUUM``, ``CREATE/DROP DATABASE``,
    ``CREATE/DROP TABLESPACE``, ``ALTER SYSTEM``, subscriptions and ``DETACH
    PARTITION … CONCURRENTLY``. ``ALTER TYPE … ADD VALUE`` runs in a transaction
    since PostgreSQL 12, so it is not listed. SQLite: ``VACUUM``.
    """
    body = _skip_leading_comments(stmt.removeprefix(_BOM))
    if dialect == "sqlite":
        return bool(re.match(r"vacuum\b", body, re.IGNORECASE))
    try:
        from pglast.parser import ParseError, parse_sql

        tree = parse_sql(body)
    except ParseError:
        # Not parseable here (the database will say why); judge by its first words.
        return bool(_NO_TX_PREFIX.match(body))
    return any(_node_needs_autocommit(raw.stmt) for raw in tree)


def _node_needs_autocommit(node: Any) -> bool:
    kind = type(node).__name__
    if kind in _NEVER_IN_TX:
        return True
    if kind in ("IndexStmt", "DropStmt"):
        return bool(getattr(node, "concurrent", False))
    if kind == "VacuumStmt":
        return bool(node.is_vacuumcmd)  # ANALYZE alone is fine in a transaction
    if kind == "ReindexStmt":
        params = node.params or ()
        if any(getattr(p, "defname", "") == "concurrently" for p in params):
            return True
        return node.kind.name in (
            "REINDEX_OBJECT_SCHEMA",
            "REINDEX_OBJECT_DATABASE",
            "REINDEX_OBJECT_SYSTEM",
        )
    if kind == "ClusterStmt":
        return node.relation is None  # CLUSTER of every table
    if kind == "AlterTableStmt":
        for cmd in node.cmds or ():
            part: Any = getattr(cmd, "def_", None)
            if type(part).__name__ == "PartitionCmd" and part.concurrent:
                return True
    return False
