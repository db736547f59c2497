"""What a migration format is: a reader of files and a keeper of its tool's ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Protocol

from branchdb.daemon.core.dbsession import DbSession, Executor
from branchdb.daemon.core.errors import MigrationError
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations import files as migration_files


class MigrationFiles(Protocol):
    """A read-only tree of migration files: a directory, or a git tree at a commit."""

    def paths(self) -> list[str]:
        """Every file, as a POSIX path relative to the migrations directory, sorted."""
        ...

    def read(self, path: str) -> bytes: ...


class DirFiles:
    """Migration files in a directory on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self) -> list[str]:
        return migration_files.list_files(str(self.root))

    def read(self, path: str) -> bytes:
        """*path*'s bytes; MigrationError naming it if it cannot be read."""
        full = self.root / path
        try:
            return full.read_bytes()
        except OSError as e:
            raise MigrationError(migration_files.unreadable(str(full), e)) from None


class Format(Protocol):
    """A migration format, registered by name in :mod:`branchdb.daemon.migrations`.

    Formats are stateless; one instance serves every database.
    """

    name: ClassVar[str]
    #: True for ``command``: the team's own tool applies migrations; there is no
    #: per-migration plan and the runner just calls :meth:`run_command`.
    runs_command: ClassVar[bool] = False
    #: True when the ledger keeps only the latest applied key (golang-migrate's one
    #: ``schema_migrations`` row): everything ordered at or before it is applied.
    ledger_is_high_water_mark: ClassVar[bool] = False

    def detect(self, files: MigrationFiles) -> bool:
        """True if *files* look like this format (used by ``format = "auto"``)."""
        ...

    def load(self, files: MigrationFiles) -> list[Migration]:
        """All up-migrations in apply order; MigrationError on malformed files."""
        ...

    def applied(self, db: Executor) -> list[Applied]:
        """What the tool's own ledger says is applied (empty if it has no ledger yet).

        Read-only. Raises MigrationError if the ledger is in a state the tool itself
        would refuse (golang-migrate's ``dirty`` flag).
        """
        ...

    def ensure_ledger(self, db: Executor) -> None:
        """Create the tool's ledger table if missing, exactly as the tool would."""
        ...

    def before(self, db: Executor, migration: Migration) -> None:
        """Called before a non-transactional migration runs (golang-migrate: dirty)."""
        ...

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        """Record *migration* as applied; runs in the migration's transaction."""
        ...


def applied_keys(applied: Iterable[Applied]) -> set[str]:
    return {a.key for a in applied}


def read_text(files: MigrationFiles, path: str) -> str:
    """*path* decoded as UTF-8; MigrationError naming the file if it is not."""
    try:
        return files.read(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MigrationError(
            f"migration {path} is not valid UTF-8 ({e.reason} at byte {e.start}); "
            "save it as UTF-8"
        ) from None


def sha256_hex(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def text_checksum(text: str) -> str:
    """branchdb's own checksum for tools that keep none (golang-migrate, dbmate).

    Those tools never refuse an edited file, so a change that git or an editor makes
    without changing the SQL (CRLF or CR line endings, a UTF-8 BOM) must not count as
    an edit either: line endings become LF and a leading BOM is dropped first.
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return sha256_hex(text)


def table_exists(db: Executor, table: str, schema: str | None = None) -> bool:
    """True if *table* exists (PostgreSQL: in *schema*, else on the search path).

    Read-only and error-free on both dialects, so it is safe inside a PostgreSQL
    transaction (a failed probe would abort it).
    """
    if db.dialect == "sqlite":
        rows = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
        )
        return bool(rows)
    name = _quote(table) if schema is None else f"{_quote(schema)}.{_quote(table)}"
    rows = db.execute("SELECT to_regclass(?) IS NOT NULL", [name])
    return bool(rows and rows[0][0])


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


__all__ = ["Applied", "DbSession", "DirFiles", "Executor", "Format", "Migration"]
