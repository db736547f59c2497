"""PostgreSQL: one database and one login role per branch on a shared server.

Everything branchdb creates carries a name prefix *and* a ``COMMENT`` marker
(``branchdb:{"project": …, "kind": …, "store": …}``); nothing unmarked is ever
dropped. ``store`` is the id of the state store that made it
(:attr:`branchdb.daemon.store.base.Store.store_id`).

Names (all ≤ 63 bytes, from :mod:`branchdb.daemon.core.naming`)::

    bdb_<project>_<branch>_<hash>      branch database, owned by the admin role
    bdbr_<project>_<branch>_<hash>     branch login role (generated password):
                                       CONNECT, TEMPORARY and CREATE on its
                                       database, owner of schema public and of
                                       every object it creates or is cloned with
    bdbs_<project>_<snap>_vN_<hash>    sealed snapshot: a template that refuses
                                       connections, owned by the admin role
    bdbo_<project>_<snap>_vN_<hash>    NOLOGIN role owning the objects *inside* a
                                       snapshot; each clone reassigns them to its
                                       branch role
    bdbt_<digest of final>_<random>    a database being built

Ownership rests on what a branch role cannot change: the admin owns the database
(its marker, name, settings and rights), the branch role owns what is inside it.
Databases of the previous layout (owned by their branch role) are still recognised,
dropped, and moved to this layout before their next migration. The why and the proof
are in :mod:`.pg_layout`.

Build protocol: a database is created under a ``bdbt_`` name, completed (ownership,
privileges, marker; a snapshot is also sealed), and only then renamed to its final
name, so an interrupted create never leaves a half-made database under the final
name. The next create of the same final name drops those leftovers first.

Why a content role: objects restored into a snapshot must belong to *someone*; if they
belonged to the admin, ``REASSIGN OWNED BY admin`` in a clone would also hand over
every database the admin owns (REASSIGN moves shared objects too). The content role
owns nothing but objects inside snapshot databases, so reassigning it in a clone moves
exactly the clone's objects to the branch role, which can then migrate them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

from branchdb.daemon.backends import pg_layout, pg_pool
from branchdb.daemon.backends.base import Info, Progress, Recovered
from branchdb.daemon.backends.pg_admin import (
    Admin,
    content_role,
)
from branchdb.daemon.backends.pg_session import PgSession, connect
from branchdb.daemon.config.project import Config
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import (
    BackendError,
    ConfigError,
    NotFound,
    Refused,
)
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from branchdb.daemon.core.context import ProjectContext
    from branchdb.daemon.sanitize.rules import Rules

#: Below this size a WAL-logged copy beats FILE_COPY's two checkpoints
#: (bench/bench_pg_clone.py measures both).
WAL_LOG_MAX_BYTES = 64 << 20


class PostgresBackend:
    name: ClassVar[str] = "postgres"
    dialect: ClassVar[str] = "postgres"
    exists_is_stat: ClassVar[bool] = False
    samples_activity: ClassVar[bool] = True
    copy_on_write: ClassVar[bool] = False  # FILE_COPY+clone on PostgreSQL 18 only
    scales_to_zero: ClassVar[bool] = False

    def __init__(self, config: Config, *, store_id: str | None = None) -> None:
        """*store_id*: the state store this backend works for; written into every
        marker, and a database another store made is never dropped."""
        from psycopg.conninfo import conninfo_to_dict

        if not config.database.server:
            raise ConfigError(
                'backend = "postgres" needs an admin URL: set [database] server in '
                "branchdb.toml or BRANCHDB_PG_URL (postgresql://user:pass@host:port/db)"
            )
        self.config = config
        self.project = config.project.name
        self.store_id = store_id
        self.admin_url = config.database.server
        try:
            params = conninfo_to_dict(self.admin_url)
        except Exception:  # psycopg.ProgrammingError: say it plainly
            raise ConfigError(
                "[database] server is not a valid PostgreSQL URL"
            ) from None
        self.host = str(params.get("host") or "localhost")
        self.port = int(params.get("port") or 5432)
        self.admin_user = str(params.get("user") or "")
        self.sslmode = params.get("sslmode")
        self.server = f"{self.host}:{self.port}"
        self._superuser: bool | None = None

    # -------------------------------------------------------------- plumbing
    def _db_url(self, database: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(self.admin_url, dbname=database)

    @contextmanager
    def _admin(self, database: str | None = None) -> Iterator[Admin]:
        url = self.admin_url if database is None else self._db_url(database)
        conn = connect(url, what="admin connection to database")
        try:
            admin = Admin(
                conn, self.server, self.project, bool(self._superuser), self.store_id
            )
            if self._superuser is None:
                admin.check_privileges(self.admin_user)
                self._superuser = admin.superuser
            yield admin
        finally:
            conn.close()

    def _url(self, role: str, password: str, database: str) -> str:
        from urllib.parse import quote

        host = f"[{self.host}]" if ":" in self.host else self.host
        url = (
            f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}"
            f"@{host}:{self.port}/{quote(database, safe='')}"
        )
        return url + (f"?sslmode={self.sslmode}" if self.sslmode else "")

    # -------------------------------------------------------------- databases
    def database_name(self, branch: str) -> str:
        return naming.pg_database(self.project, branch)

    def exists(self, database: str) -> bool:
        """True if *database* is provably a branch database of this project (see
        :func:`.pg_layout.find`); a foreign one of that name is not."""
        with self._admin() as admin:
            found = pg_layout.find(admin, [database]).get(database)
        return found is not None and found.layout is not None

    def create(
        self,
        database: str,
        *,
        branch: str,
        snapshot: SnapshotRecord | None,
        info: Info,
    ) -> Info:
        # reset hands back the previous info: same role and password, same URL.
        role = str(info.get("role") or naming.pg_role(self.project, branch))
        password = str(info.get("password") or secrets.token_urlsafe(24))
        with self._admin() as admin:
            if admin.db_comment(database) is not None:
                raise Refused(f"database {database} already exists on {self.server}")
            admin.drop_leftovers(database)
            new_role = admin.role_comment(role) is None
            admin.ensure_role(role, password, branch=branch)
            try:
                content: str | None = None
                if snapshot is None:
                    strategy = "fresh"
                    fresh = "CREATE DATABASE {tmp} TEMPLATE template0"
                    tmp = admin.new_tmp(database, fresh)
                else:
                    strategy, tmp = self._clone(admin, database, snapshot)
                    content = str(
                        snapshot.info.get("content_role")
                        or content_role(snapshot.location)
                    )
                try:
                    pg_layout.hand_over(admin, self._admin, tmp, role, content)
                    mark = admin.mark("branch", branch=branch, role=role)
                    admin.comment_on(tmp, mark)
                    admin.rename(tmp, database)
                except BaseException:
                    admin.drop_database(tmp)
                    raise
            except BaseException:
                if new_role:  # made by this call: a failed create leaves nothing
                    admin.drop_role(role)
                raise
        return {
            "url": self._url(role, password, database),
            "role": role,
            "password": password,
            "strategy": strategy,
            "host": self.host,
            "port": self.port,
            "database": database,
        }

    def _clone(
        self, admin: Admin, database: str, snapshot: SnapshotRecord
    ) -> tuple[str, str]:
        """Copy *snapshot* to a temp database owned by the admin; (strategy, name).

        A ready spare of *snapshot* (:mod:`.pg_pool`) is taken first: strategy
        "spare". Only an empty pool copies the template.
        """
        from psycopg import sql

        src = snapshot.location
        spare = pg_pool.claim(admin, src, database)
        if spare is not None:
            return "spare", spare
        rows = admin.query(
            "SELECT datistemplate, datallowconn, pg_database_size(oid), "
            "shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            src,
        )
        if not rows:
            raise NotFound(
                f"snapshot {snapshot.ref} (database {src}) is missing on "
                f"{self.server}; recreate it with "
                f"`branchdb snapshot create {snapshot.name}`"
            )
        sealed, allow_conn, size, comment = rows[0]
        if not (sealed and not allow_conn and admin.ours(comment, "snapshot")):
            raise Refused(f"snapshot database {src} is not sealed; recreate it")
        strategy = self._strategy(admin, int(size))
        create = "CREATE DATABASE {tmp} TEMPLATE {}"
        if strategy != "default":
            create += " STRATEGY " + strategy.split("+")[0]
        return strategy, admin.new_tmp(database, create, sql.Identifier(src))

    def _strategy(self, admin: Admin, size: int) -> str:
        version = admin.conn.info.server_version
        if version < 150000:
            return "default"  # no STRATEGY option before 15 (always a file copy)
        if version >= 180000:
            got = admin.query("SELECT current_setting('file_copy_method', true)")
            if got and got[0][0] == "clone":
                return "FILE_COPY+clone"  # reflinks: instant on XFS/Btrfs/ZFS
        return "WAL_LOG" if size < WAL_LOG_MAX_BYTES else "FILE_COPY"

    def drop(self, database: str, info: Info) -> None:
        """Drop *database* and its role; sessions still connected are terminated.

        Idempotent: a database that does not exist is not an error (its role, if
        ours, is still dropped). Raises Refused, having dropped nothing, when the
        database exists but is not provably this project's branch database (see
        :func:`.pg_layout.find`), or when its marker names another state store.
        """
        with self._admin() as admin:
            found = pg_layout.find(admin, [database]).get(database)
            if found is not None:
                refused = pg_layout.refusal(found, admin)
                if refused is not None:
                    raise refused
                if found.layout == "legacy" and found.role:
                    admin.ensure_member(found.role)  # owner of a previous-layout one
                admin.drop_database(database)
            role = info.get("role") or (found.role if found else None)
            if role:
                admin.drop_role(str(role))

    def retire(self, database: str, info: Info) -> None:
        """What ``reset`` calls instead of :meth:`drop`: *database*'s name is free
        when it returns, and the server drops the old database meanwhile (see
        :mod:`.pg_retire`); its role stays, for the new one. Refuses what
        :meth:`drop` refuses; a database of the previous layout, or one that
        cannot be renamed, is dropped as :meth:`drop` does."""
        from branchdb.daemon.backends import pg_retire

        with self._admin() as admin:
            found = pg_layout.find(admin, [database]).get(database)
            if found is None:
                return
            refused = pg_layout.refusal(found, admin)
            if refused is not None:
                raise refused
            trash = None
            if found.layout == "admin":
                try:
                    trash = pg_retire.retire(admin, database)
                except BackendError:
                    trash = None  # sessions that would not end: drop waits for them
        if trash is None:
            self.drop(database, info)
        else:
            pg_retire.drop_detached(self.admin_url, trash)

    def connect(self, database: str, info: Info) -> PgSession:
        """A session on *database* as its branch role, for migrations.

        A database of the previous layout is first moved to the current one (see
        the module docstring): the admin takes ownership and the role keeps schema
        public, its objects and its rights.
        """
        url = info.get("url")
        if not url:
            raise NotFound(f"no credentials recorded for database {database}")
        with self._admin() as admin:
            pg_layout.adopt(admin, self._admin, database)
        return PgSession(str(url))

    def list_owned(self, store: str | None = None) -> list[str]:
        """Branch databases of this project that are provably branchdb's (see
        :func:`.pg_layout.find`), sorted. With *store*, only those whose marker names
        that state store: a database of the previous layout, or marked before
        stores had ids, is then never listed (when in doubt, it is kept)."""
        with self._admin() as admin:
            found = pg_layout.find(admin)
        return sorted(
            f.name
            for f in found.values()
            if f.layout is not None and (store is None or f.store == store)
        )

    def activity(
        self, databases: list[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        """Each branch database of this project (or of *databases*) -> (client
        sessions begun so far, client sessions open now).

        The counter is ``pg_stat_database.sessions`` (PostgreSQL 14+), which
        counts client backends only. Verified on PostgreSQL 15 with autovacuum
        at ``autovacuum_naptime = 1``: on a database no client touched, autovacuum
        raised ``xact_commit`` by 2-4 a second (and ``tup_returned``, ``blks_hit``
        with it) and vacuumed its tables, while ``sessions``, ``session_time`` and
        ``active_time`` did not move; a client's connection moved ``sessions`` as
        soon as its first transaction's statistics were flushed. Before 14 there
        is no such column: committed + rolled-back transactions are counted, which
        autovacuum moves too (idle TTL then rarely fires: when in doubt, keep).
        Open sessions: ``pg_stat_activity`` client backends (never autovacuum).

        Read-only, on the admin connection (never a connection to the
        branch databases themselves, which would count as activity).
        """
        with self._admin() as admin:
            found = pg_layout.find(admin, databases)
            ours = sorted(n for n, f in found.items() if f.layout)
            # Fixed expressions, never input: sessions exist from PostgreSQL 14.
            counter = (
                "s.sessions"
                if admin.conn.info.server_version >= 140000
                else "s.xact_commit + s.xact_rollback"
            )
            rows = admin.query(
                "SELECT d.datname, "
                f"coalesce({counter}, 0), coalesce(a.n, 0) "
                "FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid "
                "LEFT JOIN (SELECT datid, count(*) AS n FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' GROUP BY datid) a "
                "ON a.datid = d.oid "
                "WHERE d.datname = ANY(%s::text[])",
                ours,
            )
            return {str(n): (int(x), int(b)) for n, x, b in rows}

    def size_bytes(self, database: str) -> int:
        with self._admin() as admin:
            return admin.size(database)

    # --------------------------------------------------------------- recovery
    def drop_leftovers(self, database: str, branch: str, info: Info) -> Info:
        with self._admin() as admin:  # temps first: the role has rights in them
            admin.drop_leftovers(database)
        if info.get("role"):
            return info
        # A first create makes the role before the database; only the database's
        # marker or the record would name it otherwise.
        return {**info, "role": naming.pg_role(self.project, branch)}

    def recover_temps(self, ctx: ProjectContext) -> Recovered:
        """See :func:`.pg_recovery.recover_temps` (spares half made included)."""
        from branchdb.daemon.backends import pg_recovery

        return pg_recovery.recover_temps(self, ctx)

    @property
    def spare_pool(self) -> pg_pool.PgSparePool:
        """The warm pool (:mod:`.pg_pool`): spares ``create`` hands out."""
        return pg_pool.PgSparePool(self._admin, self._strategy)

    # -------------------------------------------------------------- snapshots
    def snapshot_create(
        self,
        name: str,
        version: int,
        source: str,
        *,
        progress: Progress | None = None,
        rules: Rules | None = None,
        allow_unreviewed: bool = False,
    ) -> SnapshotRecord:
        """Copy the live database at *source* into a sealed template database
        (:func:`.pg_snapshots.create`)."""
        from branchdb.daemon.backends import pg_snapshots

        return pg_snapshots.create(
            self,
            name,
            version,
            source,
            progress=progress,
            rules=rules,
            allow_unreviewed=allow_unreviewed,
        )

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None:
        """Drop the snapshot database, its spares and its content role, if marked
        as ours."""
        with self._admin() as admin:
            pg_pool.drop(admin, pg_pool.of_snapshot(admin, snapshot.location))
            if admin.ours(admin.db_comment(snapshot.location), "snapshot"):
                admin.drop_database(snapshot.location)
            admin.drop_role(
                str(
                    snapshot.info.get("content_role") or content_role(snapshot.location)
                )
            )
