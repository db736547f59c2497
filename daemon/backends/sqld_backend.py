"""libsql branches served by a libsql server (sqld): one namespace per branch.

Why a namespace per branch and not an sqld per branch: sqld's JWT auth can confine a
token to one namespace. sqld 0.24 reads the claim ``id`` (``auth/user_auth_strategies
/jwt.rs``) and refuses that token on every other namespace
(``Authenticated::is_namespace_authorized``, checked by ``NamespaceStore::
with_authenticated`` before any statement runs, on HTTP and WebSocket alike). So one
sqld, one key pair, and a token per branch give the isolation the issue asks for,
with one process to run instead of one per branch (each ~10 MB and a port). Each
namespace also gets its own JWT key and tokens expire (``sqld_auth``): a deleted
branch's tokens die with its namespace, and tokens are re-signed when handed out
(``credentials_stale``/``refresh_credentials``, called by the engine).

Layout on the daemon's side (``<data_dir>/sqld/``)::

    owned/<namespace>.json   branchdb's marker: written ("creating") before the
                             namespace is created, "ready" once it is, removed
                             after it is deleted. A namespace without one is
                             never touched (another tool's, or another daemon's):
                             creating over it is refused. A "creating" marker is
                             a temp: recovery deletes what it names.
    locks/<namespace>        migration locks

Clone from a snapshot, when the daemon shares sqld's file system (managed sqld, or
``[libsql] db_path``). sqld serves a ``data`` file placed in
``<db_path>/dbs/<namespace>/`` before the namespace is created, but with no
``wallog`` beside it ``ReplicationLogger::open`` first rebuilds its replication log
from the file (``replication/primary/logger.rs`` ``recover``: ~70 MB/s here, 14x a
file copy at 100 MiB). So ``snapshot_create`` has a throwaway sqld do that once per
snapshot (:func:`~.sqld_process.prebuild_log`), compacted into one immutable
``snapshots/*.snap`` file and a 64-byte ``wallog``, and seals what it leaves in
``snapshots/<name>/<version>.sqld/``; a clone copies ``data`` (reflink or
``copy_file_range``) and ``wallog``, hard-links the ``.snap``
(:func:`~.sqld_process.place_prepared`) and creates the namespace, which sqld then
opens as it would after its own clean restart (strategy ``…+log``). Without the pair
(no sqld binary where the snapshot was made, a page size other than sqld's 4096),
the file alone is placed and sqld rebuilds the log (``…+sqld``). sqld's admin
``fork`` is not used: it copies through the log, 13-34x a file copy
(bench/bench_sqld.py). Without a shared file system the namespace is created empty
and the snapshot's SQL is loaded through Hrana (strategy ``load``).

Every clone of one prepared snapshot carries the same replication-log id: an
embedded replica synced from one branch must not be pointed at another.

Tried and rejected: placing an empty ``wallog`` beside the file, so that sqld
skips the rebuild (``LogFile::new`` writes a fresh header and nothing is recovered):
the first query on such a namespace answered "no such table" (sqld 0.24).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from branchdb.daemon.backends.base import Info, Progress, Recovered
from branchdb.daemon.backends.libsql_backend import LibsqlBackend, clone_file
from branchdb.daemon.backends.sqld_auth import Signer, claims, new_key_id, stale
from branchdb.daemon.backends.sqld_client import Admin, HranaSession
from branchdb.daemon.backends.sqld_markers import Markers
from branchdb.daemon.backends.sqld_process import (
    ManagedSqld,
    find_binary,
    page_size,
    place_prepared,
    prepare_snapshot,
    prepared_log,
)
from branchdb.daemon.config.project import Config
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import ConfigError, NotFound, Refused
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from branchdb.daemon.core.context import ProjectContext
    from branchdb.daemon.sanitize.rules import Rules

PAGE_SIZE = 4096  # sqld's replication log frames (LIBSQL_PAGE_SIZE)
LOAD_BATCH = 500  # dump statements per Hrana request
SESSION_TTL = 6 * 3600  # the daemon's own tokens (a long migration fits)


class SqldBackend:
    name: ClassVar[str] = "sqld"
    dialect: ClassVar[str] = "sqlite"
    exists_is_stat: ClassVar[bool] = False
    samples_activity: ClassVar[bool] = False
    copy_on_write: ClassVar[bool] = False
    scales_to_zero: ClassVar[bool] = False

    def __init__(self, config: Config, *, store_id: str | None = None) -> None:
        self.config = config
        self.store_id = store_id
        self.project = config.project.name
        s = config.libsql
        self.root = config.data_dir / "sqld"
        self.owned = self.root / "owned"
        self.marks = Markers(self.owned, self.project)
        self.locks = self.root / "locks"
        # snapshots: the same sealed files
        self.files = LibsqlBackend(config, store_id=store_id)
        self.managed: ManagedSqld | None = None
        if s.managed or not s.server:
            self.managed = ManagedSqld(config.data_dir, s.listen)
            self.db_path: Path | None = self.managed.db_path
            self._signer: Signer | None = None
        else:
            assert s.admin and s.key_file  # checked by config
            self.db_path = s.db_path
            self._signer = Signer.from_file(s.key_file)
        self._endpoints: tuple[str, str] | None = None

    # ---------------------------------------------------------------- plumbing
    def _ends(self) -> tuple[str, str]:
        """(Hrana URL, admin URL); a managed sqld is (re)started when needed."""
        s = self.config.libsql
        if self.managed is None:
            assert s.server and s.admin
            return s.server, s.admin
        return self.managed.ensure()

    def _admin(self) -> Admin:
        return Admin(self._ends()[1])

    def _sign(self) -> Signer:
        if self._signer is None:
            assert self.managed is not None
            self._ends()  # creates the key pair on first start
            self._signer = Signer.from_file(self.managed.private_key)
        return self._signer

    def public_url(self, namespace: str) -> str:
        template = self.config.libsql.public_url
        if template:
            return template.replace("{namespace}", namespace)
        server = self._ends()[0]
        scheme, _, rest = server.partition("://")
        host, _, port = rest.partition(":")
        if host in ("127.0.0.1", "localhost", "::1"):
            host = "localhost"  # *.localhost is loopback (RFC 6761)
        return f"{scheme}://{namespace}.{host}" + (f":{port}" if port else "")

    def key_id(self, namespace: str, info: Info) -> str | None:
        """The ``key_id`` of *namespace*'s own key: from *info*, else from the
        marker; None for a namespace made before per-namespace keys (it takes
        tokens of the daemon's key)."""
        key_id = info.get("key_id")
        return key_id if isinstance(key_id, str) else self.marks.key_id(namespace)

    def _dir(self, namespace: str) -> Path | None:
        return None if self.db_path is None else self.db_path / "dbs" / namespace

    # -------------------------------------------------------------- databases
    def database_name(self, branch: str) -> str:
        return naming.sqld_namespace(self.project, branch)

    def exists(self, database: str) -> bool:
        return self.marks.state(database) == "ready" and self._admin().exists(database)

    def create(
        self,
        database: str,
        *,
        branch: str,
        snapshot: SnapshotRecord | None,
        info: Info,
    ) -> Info:
        admin = self._admin()
        if self.marks.state(database) == "creating":
            # An earlier create of ours was killed half way (the caller holds the
            # branch lock): whatever it left is ours to remove.
            admin.delete(database)
            self.drop_leftovers(database, branch, info)
        if admin.exists(database):
            if self.marks.mine(database):
                raise Refused(f"sqld namespace {database} already exists")
            raise Refused(
                f"sqld namespace {database} exists on {admin.url} but was not made "
                "by branchdb for this project; branchdb never touches it (delete it "
                "yourself, or rename the project)"
            )
        if snapshot is not None and not Path(snapshot.location).is_file():
            raise NotFound(
                f"snapshot {snapshot.ref} file {snapshot.location} is missing; "
                f"recreate it with `branchdb snapshot create {snapshot.name}`"
            )
        # The marker first (an intent: "creating"), "ready" only once sqld has
        # the namespace: a create killed in between leaves a temp, never a branch.
        # The namespace's own key: kept across reset (same token), new for a new
        # branch. A record from before per-namespace keys keeps the server's key.
        legacy = "auth_token" in info and "key_id" not in info
        key_id = None if legacy else str(info.get("key_id") or new_key_id())
        self.marks.mark(
            database, branch, "creating", key_id=key_id, store=self.store_id
        )
        folder = self._dir(database)
        body = {}
        if key_id is not None:
            body["jwt_key"] = self._sign().public_pem(database, key_id)
        keyed: Info = {**info, **({"key_id": key_id} if key_id else {})}
        try:
            if folder is not None and folder.exists():
                shutil.rmtree(folder)  # leftover of an interrupted create (no ns)
            prepared = prepared_log(snapshot.info if snapshot else None)
            if snapshot is None:
                admin.create(database, body)
                strategy = "fresh"
            elif folder is not None and prepared is not None:
                # data + its replication log, as sqld left them: served at once.
                folder.mkdir(parents=True)
                method = place_prepared(prepared, folder)
                admin.create(database, body)
                strategy = f"{method}+log"
            elif folder is not None and page_size(Path(snapshot.location)) == PAGE_SIZE:
                folder.mkdir(parents=True)
                tmp = folder / f".tmp-data-{os.urandom(4).hex()}"
                method = clone_file(Path(snapshot.location), tmp)
                os.chmod(tmp, 0o644)
                os.rename(tmp, folder / "data")
                admin.create(database, body)  # sqld serves the file already there
                strategy = f"{method}+sqld"
            else:
                admin.create(database, body)
                self._load(database, keyed, Path(snapshot.location))
                strategy = "load"
        except BaseException:
            with contextlib.suppress(Exception):
                admin.delete(database)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            self.marks.path(database).unlink(missing_ok=True)
            raise
        self.marks.mark(database, branch, "ready", key_id=key_id, store=self.store_id)
        out: Info = {
            "url": self.public_url(database),
            "namespace": database,
            "strategy": strategy,
            **({"key_id": key_id} if key_id else {}),
        }
        token = info.get("auth_token")
        fresh = self._token_ok(database, key_id, token)
        out["auth_token"] = token if fresh else self._token(database, key_id)
        return out

    # ------------------------------------------------------------- credentials
    def _token(self, database: str, key_id: str | None) -> str:
        return self._sign().token(
            database, key_id=key_id, ttl=self.config.libsql.token_ttl
        )

    def _token_ok(self, database: str, key_id: str | None, token: object) -> bool:
        """*token* is signed by the namespace's current key, with more than half
        of its lifetime left, and as long-lived as ``token_ttl`` allows."""
        if not isinstance(token, str) or stale(token):
            return False
        ttl = self.config.libsql.token_ttl
        if ttl and not isinstance(claims(token).get("exp"), int):
            return False  # made before token_ttl was set: give it an expiry
        return self._sign().signed_by(token, database, key_id)

    def credentials_stale(self, database: str, info: Info) -> bool:
        """True if *info*'s token should be re-signed before it is handed out: less
        than half its lifetime left, no ``exp`` although ``token_ttl`` asks for
        one, or signed with a key that is no longer the daemon's. No I/O."""
        key_id = self.key_id(database, info)
        return not self._token_ok(database, key_id, info.get("auth_token"))

    def refresh_credentials(self, database: str, info: Info) -> Info:
        """*info* with a newly signed token (the engine calls this, under the
        branch lock, when :meth:`credentials_stale`). A token still fresh but
        signed with another key means the key file was replaced: the namespace
        is first given its key derived from the new one, which revokes every
        older token."""
        key_id = self.key_id(database, info)
        token = info.get("auth_token")
        if (
            isinstance(token, str)
            and key_id
            and not self._sign().signed_by(token, database, key_id)
            and self.marks.mine(database)
        ):
            self._rekey(database, key_id)
        return {**info, "auth_token": self._token(database, key_id)}

    def _rekey(self, database: str, key_id: str) -> None:
        self._admin().set_jwt_key(database, self._sign().public_pem(database, key_id))

    def _load(self, database: str, info: Info, source: Path) -> None:
        """Replay *source*'s SQL into the (new, empty) namespace, in one
        transaction."""
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            with self.connect(database, info) as db, db.transaction():
                batch: list[str] = []
                for stmt in src.iterdump():
                    if stmt in ("BEGIN TRANSACTION;", "COMMIT;"):
                        continue
                    batch.append(stmt)
                    if len(batch) >= LOAD_BATCH:
                        db.executescript(batch)
                        batch = []
                if batch:
                    db.executescript(batch)
        finally:
            src.close()

    def drop(self, database: str, info: Info) -> None:
        """Delete the namespace and branchdb's marker (idempotent). Raises Refused,
        deleting nothing, if the namespace exists without this project's marker
        or another state store made it."""
        if not self.marks.mine(database):
            if self._admin().exists(database):
                raise Refused(
                    f"sqld namespace {database} is not a branch database branchdb "
                    "made for this project (no marker); nothing was deleted"
                )
            return
        made_by = self.marks.made_by(database)
        if made_by and self.store_id and made_by != self.store_id:
            raise Refused(
                f"sqld namespace {database} was made by another branchdb state "
                f"store (id {made_by}); nothing was deleted. Delete it with the "
                "branchdb that uses that store"
            )
        self._admin().delete(database)
        folder = self._dir(database)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        (self.locks / database).unlink(missing_ok=True)
        Path(str(self.locks / database) + ".migrate-lock").unlink(missing_ok=True)
        self.marks.path(database).unlink(missing_ok=True)

    def connect(self, database: str, info: Info) -> HranaSession:
        """A session with a short-lived token of the namespace's own key. A
        namespace of ours that refuses it was keyed with the daemon's previous
        key file: it is given the current one (revoking every older token)."""
        self.locks.mkdir(parents=True, exist_ok=True)
        key_id = self.key_id(database, info)
        url = str(info.get("url") or self.public_url(database))

        def session() -> HranaSession:
            token = self._sign().token(database, key_id=key_id, ttl=SESSION_TTL)
            return HranaSession(self._ends()[0], database, token, url, self.locks)

        try:
            return session()
        except Refused:
            if key_id is None or self.marks.state(database) != "ready":
                raise
            self._rekey(database, key_id)
            return session()

    def list_owned(self, store: str | None = None) -> list[str]:
        """Namespaces with this project's "ready" marker; with *store*, those that
        store made."""
        names = [n for n in self.marks.names() if self.marks.state(n) == "ready"]
        if store is None:
            return names
        return [n for n in names if self.marks.made_by(n) == store]

    def size_bytes(self, database: str) -> int:
        folder = self._dir(database)
        if folder is not None:
            total = 0
            for part in ("data", "data-wal"):  # sqld runs its files in WAL mode
                with contextlib.suppress(FileNotFoundError):
                    total += (folder / part).stat().st_size
            if total:
                return total
        return int(self._admin().stats(database).get("storage_bytes_used", 0))

    def activity(
        self, databases: list[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        return {}

    # --------------------------------------------------------------- recovery
    def drop_leftovers(self, database: str, branch: str, info: Info) -> Info:
        # An interrupted create leaves at most a copied file without a namespace
        # (removed here) or a namespace with our marker (drop() removes it).
        folder = self._dir(database)
        if (
            folder is not None
            and folder.exists()
            and not self._admin().exists(database)
        ):
            shutil.rmtree(folder, ignore_errors=True)
        return info

    def recover_temps(self, ctx: ProjectContext) -> Recovered:
        """Markers whose namespace was never created (a create killed before
        sqld made it): removed with any copied file, under the branch's lock (a
        live create holds it: reported busy). Also the file backend's temps and
        interrupted snapshot preparations, under the snapshot's lock."""
        out = self.files.recover_temps(ctx)
        prep = self.root / "prep"
        if prep.is_dir():
            for work in sorted(prep.iterdir()):
                name = work.name.rsplit("-", 2)[0]
                try:
                    with ctx.lock(f"snapshot\0{name}", timeout=0):
                        shutil.rmtree(work, ignore_errors=True)
                        out.dropped.append(work.name)
                except Refused:
                    out.busy.append(work.name)
        admin = self._admin()
        for database in self.marks.names():
            if self.marks.state(database) != "creating":
                continue
            owner = ctx.store.branch_by_database(self.name, database)
            branch = owner.branch if owner else self.marks.branch(database)
            try:
                with ctx.lock(branch or database, timeout=0):
                    if self.marks.state(database) != "creating":
                        continue  # finished meanwhile
                    admin.delete(database)  # if sqld got as far as making it
                    self.drop_leftovers(database, "", {})
                    self.marks.path(database).unlink(missing_ok=True)
                    out.dropped.append(database)
            except Refused:
                out.busy.append(database)
        return out

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
        rec = self.files.snapshot_create(
            name,
            version,
            source,
            progress=progress,
            rules=rules,
            allow_unreviewed=allow_unreviewed,
        )
        rec.backend = self.name
        if self.db_path is not None and page_size(Path(rec.location)) == PAGE_SIZE:
            try:
                find_binary()
            except ConfigError:
                return rec  # no sqld here to prepare with: clones rebuild the log
            if progress:
                progress(f"preparing sqld's replication log for {rec.ref}")
            rec.info["sqld"] = str(
                prepare_snapshot(
                    Path(rec.location), self.root / "prep" / f"{rec.name}-{rec.version}"
                )
            )
        return rec

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None:
        prepared = Path(snapshot.location).with_suffix(".sqld")
        if prepared.parent.parent == self.files.snapshots and prepared.is_dir():
            shutil.rmtree(prepared, ignore_errors=True)
        self.files.snapshot_drop(snapshot)

    def close(self) -> None:
        """Stop a managed sqld (``branchdb serve`` calls this on shutdown)."""
        if self.managed is not None:
            self.managed.stop()
