"""State stores: where branchdb keeps its records.

:class:`~.base.Store` is the interface; :class:`~.sqlite_store.SqliteStore` (the
embedded default, one SQLite file) and :class:`~.postgres_store.PostgresStore`
(``[state] url``, shared by daemon replicas) implement it with the queries of
:class:`~.sql_store.SqlStore` and the schema steps of :mod:`.schema`.
:func:`open_store` picks one. Nothing heavy is imported here (the hook path).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (hook path)
if TYPE_CHECKING:
    from pathlib import Path

    from branchdb.daemon.store.base import Store


def open_store(url: str | None, sqlite_path: Path, schema: str | None = None) -> Store:
    """The PostgreSQL store at *url* (in *schema*), else the SQLite file.

    Raises ConfigError for a URL that is not ``postgres(ql)://``, and what the
    store's constructor raises (BackendError, ConfigError).
    """
    if not url:
        from branchdb.daemon.store.sqlite_store import SqliteStore

        return SqliteStore(sqlite_path)
    from branchdb.daemon.core.errors import ConfigError, redact

    if not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(
            f"state.url {redact(url)!r} must be a postgresql:// URL "
            "(leave it unset for the embedded SQLite store)"
        )
    from branchdb.daemon.store.postgres_store import DEFAULT_SCHEMA, PostgresStore

    return PostgresStore(url, schema or DEFAULT_SCHEMA)
