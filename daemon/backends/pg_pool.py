"""The warm pool of the postgres backend: clones of a snapshot made ahead of time.

A template clone copies every byte (about 2 s per GiB). A *spare* is such a clone
made before anyone asks for it; ``up --from`` and ``reset`` then take one by renaming
it, which costs the same at any size. A spare is::

    bdbp_<digest of the snapshot database>_<random>

- created by ``CREATE DATABASE … TEMPLATE <snapshot> ALLOW_CONNECTIONS false``, so
  nobody (superusers included) can connect to it from its first moment;
- owned by the admin role, with every right of PUBLIC revoked;
- marked last (``branchdb:{"project", "kind": "spare", "snapshot": <database>,
  "store"}``): a spare without its marker is half made and never handed out.

What makes a database a spare (:func:`scan`): its name prefix, the admin's ownership
*and* the marker, which only the admin can write on a database the admin owns.
Branch roles have neither CREATEDB nor ownership of any database, so they can neither
make nor mark one; a database a branch role owns is never a spare, whatever its name
and comment (tests/test_pg_pool.py tries).

Hand-out (:func:`claim`): in one transaction the spare is renamed to a temp name of
the branch database being built (:func:`.pg_admin.tmp_prefix`), marked as that
build's temp and opened to connections. The backend then finishes it like any clone
(ownership of its objects to the branch role, rights, final marker, rename). Two
processes claiming the same spare: the second one's rename fails and it takes the
next spare (or clones the template). A process killed after the claim leaves a temp
that crash recovery drops, as for any interrupted create.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple

from branchdb.daemon.backends.pg_admin import Admin, parse_marker, tmp_prefix
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import BackendError, NotFound

if TYPE_CHECKING:
    from branchdb.daemon.backends.base import Progress
    from branchdb.daemon.core.models import SnapshotRecord

#: Every spare is named so.
SPARE = naming.PREFIX + "p_"


def spare_prefix(snapshot_db: str) -> str:
    """Name prefix of the spares of snapshot database *snapshot_db*."""
    return f"{SPARE}{hashlib.sha256(snapshot_db.encode()).hexdigest()[:16]}_"


class Spare(NamedTuple):
    """A ``bdbp_`` database as :func:`scan` sees it."""

    name: str
    #: The snapshot database it is a clone of; None if it carries no spare marker.
    snapshot: str | None
    #: Complete, provably this project's and this store's: may be handed out.
    ready: bool
    #: Owned by the admin and carries no comment at all: a build interrupted
    #: before its marker (ours only if its name carries our snapshot's digest).
    unmarked: bool


def scan(admin: Admin) -> list[Spare]:
    """Every database named like a spare, classified. Read-only, one query."""
    rows = admin.query(_SELECT + "WHERE starts_with(d.datname, %s) ORDER BY 1", SPARE)
    return [_classify(admin, *row) for row in rows]


_SELECT = (
    "SELECT d.datname, shobj_description(d.oid, 'pg_database'), "
    "d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user), "
    "d.datallowconn, d.datistemplate FROM pg_database d "
)


def _classify(
    admin: Admin,
    name: str,
    comment: str | None,
    by_admin: bool,
    allow_conn: bool,
    template: bool,
    *,
    named: str | None = None,
) -> Spare:
    """*named*: the name to check the digest of (a claimed spare's old name)."""
    data = parse_marker(comment) or {}
    snapshot = data.get("snapshot")
    ours = (
        by_admin
        and admin.ours(comment, "spare")
        and isinstance(snapshot, str)
        and (named or name).startswith(spare_prefix(snapshot))
        and data.get("store") == admin.store
    )
    return Spare(
        str(name),
        str(snapshot) if ours else None,
        bool(ours and not allow_conn and not template),
        comment is None and by_admin,
    )


def build(admin: Admin, snapshot_db: str, strategy: str) -> str:
    """Make one spare of the sealed template *snapshot_db*; its name.

    *strategy*: a ``CREATE DATABASE … STRATEGY`` value, or "" for the server's
    default. Leaves nothing behind on failure (or an unmarked spare, if killed,
    which :func:`leftovers` finds).
    """
    from psycopg import sql

    name = spare_prefix(snapshot_db) + secrets.token_hex(4)
    ident = sql.Identifier(name)
    create = "CREATE DATABASE {} TEMPLATE {} ALLOW_CONNECTIONS false"
    if strategy:
        create += " STRATEGY " + strategy
    admin.run(
        sql.SQL(create).format(ident, sql.Identifier(snapshot_db)),
        f"create a spare clone of {snapshot_db}",
    )
    try:
        admin.run(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident),
            f"close spare {name}",
        )
        # Marked last: only a complete, closed spare is ever handed out.
        admin.comment_on(name, admin.mark("spare", snapshot=snapshot_db))
    except BaseException:
        admin.drop_database(name)
        raise
    return name


def ready(admin: Admin, snapshot_db: str) -> list[str]:
    """The spares of *snapshot_db* that may be handed out, oldest name first."""
    return [s.name for s in scan(admin) if s.ready and s.snapshot == snapshot_db]


def claim(admin: Admin, snapshot_db: str, final: str) -> str | None:
    """Take a spare of *snapshot_db* for the build of *final*: the temp database
    name it now has (marked as *final*'s temp, open to connections, still closed
    to PUBLIC), or None when no spare is left.

    Each attempt is one transaction: a spare someone else claimed first makes the
    rename fail, and the next one is tried.
    """
    from psycopg import sql

    for name in ready(admin, snapshot_db):
        tmp = tmp_prefix(final) + secrets.token_hex(4)
        try:
            with admin.conn.transaction():
                admin.rename(name, tmp)
                # Under the rename's lock: still the spare it was a moment ago?
                rows = admin.query(_SELECT + "WHERE d.datname = %s", tmp)
                again = [_classify(admin, *r, named=name) for r in rows]
                if not again or not again[0].ready or again[0].snapshot != snapshot_db:
                    raise _Lost
                admin.comment_on(tmp, admin.mark("tmp", final=final))
                admin.run(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                        sql.Identifier(tmp)
                    ),
                    f"open {tmp} to connections",
                )
            return tmp
        except (_Lost, BackendError):
            continue  # taken (or changed) by someone else: try the next one
    return None


class _Lost(Exception):
    """A spare changed under a claim."""


def drop(admin: Admin, names: list[str]) -> None:
    for name in names:
        admin.drop_database(name)


def of_snapshot(admin: Admin, snapshot_db: str) -> list[str]:
    """Every spare of *snapshot_db* this store may drop: the marked ones and the
    unmarked ones whose name carries its digest."""
    prefix = spare_prefix(snapshot_db)
    return [
        s.name
        for s in scan(admin)
        if s.snapshot == snapshot_db or (s.unmarked and s.name.startswith(prefix))
    ]


def orphans(admin: Admin, snapshot_dbs: set[str]) -> list[str]:
    """Marked spares of this project and store whose snapshot is not among
    *snapshot_dbs* (the versions the store still knows)."""
    return [
        s.name
        for s in scan(admin)
        if s.snapshot is not None and s.snapshot not in snapshot_dbs
    ]


def leftovers(admin: Admin, snapshot_db: str) -> list[str]:
    """Unmarked spares of *snapshot_db*: builds interrupted before their marker."""
    prefix = spare_prefix(snapshot_db)
    return [s.name for s in scan(admin) if s.unmarked and s.name.startswith(prefix)]


class PgSparePool:
    """The postgres backend's :class:`~.base.SparePool` (``backend.spare_pool``).

    *admin* opens an admin connection; *strategy* picks the ``CREATE DATABASE``
    strategy for a template of a given size (both the backend's).
    """

    def __init__(
        self,
        admin: Callable[[], AbstractContextManager[Admin]],
        strategy: Callable[[Admin, int], str],
    ) -> None:
        self._admin = admin
        self._strategy = strategy

    def count(self, snapshot: SnapshotRecord) -> int:
        with self._admin() as admin:
            return len(ready(admin, snapshot.location))

    def warm(
        self, snapshot: SnapshotRecord, count: int, progress: Progress | None = None
    ) -> int:
        """Build spares of *snapshot* until *count* are ready; how many were built.

        Never drops any (a pool above *count* shrinks as spares are handed out).
        Raises NotFound when the snapshot database is missing. The caller holds
        the snapshot's spares lock (one builder per snapshot).
        """
        built = 0
        with self._admin() as admin:
            rows = admin.query(
                "SELECT pg_database_size(oid) FROM pg_database "
                "WHERE datname = %s AND datistemplate",
                snapshot.location,
            )
            if not rows:
                raise NotFound(
                    f"snapshot {snapshot.ref} (database {snapshot.location}) is "
                    f"missing on {admin.server}"
                )
            strategy = self._strategy(admin, int(rows[0][0])).split("+")[0]
            strategy = "" if strategy == "default" else strategy
            have = len(ready(admin, snapshot.location))
            for i in range(have, count):
                if progress:
                    progress(f"making spare {i + 1} of {count} of {snapshot.ref}")
                build(admin, snapshot.location, strategy)
                built += 1
        return built

    def prune(self, keep: list[SnapshotRecord]) -> list[str]:
        """Drop this store's marked spares of every snapshot version not in *keep*
        (the versions the state store still records); the names dropped."""
        with self._admin() as admin:
            gone = orphans(admin, {s.location for s in keep})
            drop(admin, gone)
        return gone
