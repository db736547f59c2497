"""Where a project's migrations are and whether they changed: standard library only.

Both the engine and the checkout hook's fast path (:mod:`branchdb.cli.fast`) use
these, so the two agree about where migrations live and what their fingerprint is.
Nothing here may import more than ``os`` and ``hashlib`` (and ``sqlite3``, which
the hook has loaded already, to read a ledger).
"""

from __future__ import annotations

import hashlib
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (hook path)
if TYPE_CHECKING:
    from collections.abc import Callable

#: Where migrations are looked for when ``migrations.dir`` is not set, in order.
MIGRATION_DIRS = (
    "drizzle",
    "migrations",
    "db/migrations",
    "prisma/migrations",
    "sql/migrations",
    "src/db/migrations",
    "database/migrations",
    "supabase/migrations",
)


def migrations_dir(root: str, configured: str | None, fmt: str) -> str | None:
    """Absolute migrations directory: *configured*, else the first known one found.

    A configured directory is returned even if missing (the engine reports it).
    """
    if configured:
        return os.path.realpath(os.path.join(root, configured))
    if fmt == "command":
        return None
    for rel in MIGRATION_DIRS:
        candidate = os.path.join(root, rel)
        if os.path.isdir(candidate):
            return os.path.realpath(candidate)
    return None


def list_files(folder: str) -> list[str]:
    """Every file under *folder* as a sorted POSIX relative path (no dot files)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        for f in filenames:
            if not f.startswith("."):
                out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(out)


def fingerprint(folder: str | None, fmt: str, command: str | None) -> str:
    """Hash of everything that decides what ``migrate`` would do: the configured
    format and command, and every file's path and content. Cheap (no parsing)."""
    if folder is None or not os.path.isdir(folder):
        return fingerprint_files([], _read_file, fmt, command)

    def read(rel: str) -> bytes:
        return _read_file(os.path.join(folder, rel))

    return fingerprint_files(list_files(folder), read, fmt, command)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def unreadable(path: str, err: OSError) -> str:
    """One line naming migration file *path*, why it cannot be read, what to do.

    For the callers' error (a user mistake, not a crash): a symbolic link whose
    target is missing (``os.walk`` lists it as a file) is the usual case.
    """
    why = err.strerror or str(err)
    if os.path.islink(path):
        return (
            f"migration file {path} is a symbolic link to {os.readlink(path)!r}, "
            f"which cannot be read ({why}); fix the link or remove it"
        )
    return f"cannot read migration file {path}: {why}"


def fingerprint_files(
    paths: list[str], read: Callable[[str], bytes], fmt: str, command: str | None
) -> str:
    """:func:`fingerprint` over any tree (*read* maps a relative path to bytes), so
    a git tree at a commit and the same files on disk have the same fingerprint."""
    h = hashlib.sha256(f"v2\0{fmt}\0{command or ''}\0".encode())
    for rel in paths:
        digest = hashlib.sha256(read(rel)).digest()
        h.update(rel.encode("utf-8", "surrogatepass") + b"\0" + digest)
    return h.hexdigest()


#: Every migration tool's ledger table that branchdb knows: the formats' own, and
#: those of tools run through ``format = "command"`` (alembic, knex, ...).
LEDGER_TABLES = (
    "__drizzle_migrations",
    "_prisma_migrations",
    "schema_migrations",  # golang-migrate, dbmate, Rails
    "flyway_schema_history",
    "_branchdb_migrations",
    "alembic_version",
    "knex_migrations",
    "goose_db_version",
    "atlas_schema_revisions",
)


def sqlite_ledger_fingerprint(path: str, extra: tuple[str, ...] = ()) -> str:
    """Hash of the rows of every known ledger table in the SQLite file *path*.

    *extra* names more ledger tables (a configured drizzle ``migrations.table``);
    any table whose name contains ``migration`` counts too, which covers a custom
    drizzle table named only in ``drizzle.config.ts`` (not read on the hook path).
    Read-only, ~1 ms: the checkout hook calls it to notice a ledger changed out of
    band (``dbmate rollback``, a restored file, a hand edit) without planning.
    Raises sqlite3.Error / OSError when the file cannot be read.
    """
    import sqlite3

    names = tuple(dict.fromkeys(LEDGER_TABLES + extra))
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        marks = ",".join("?" * len(names))
        found = sorted(
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                f"AND (name IN ({marks}) OR name LIKE '%migration%')",
                names,
            )
        )
        h = hashlib.sha256(b"ledger-v1")
        for name in found:
            quoted = '"' + name.replace('"', '""') + '"'
            h.update(b"\0" + name.encode())
            for row in con.execute(f"SELECT * FROM {quoted} ORDER BY rowid"):
                h.update(repr(row).encode())
        return h.hexdigest()[:32]
    finally:
        con.close()


def with_ledger(files_fp: str, ledger_fp: str | None) -> str:
    """The fingerprint a branch record keeps: its files' and, when the backend
    allows a cheap read, its ledger's (so an out-of-band change is noticed)."""
    return files_fp if ledger_fp is None else f"{files_fp}+{ledger_fp}"
