"""PostgreSQL in Docker: one server container per branch, on a copy-on-write clone.

A branch is a container of ``[docker] image`` whose data directory is a reflink
clone (btrfs, XFS) of a sealed, cleanly shut down data directory — a snapshot, or
the empty cluster of the image for a fresh branch (:mod:`.docker_cluster`). Creating
one copies no data, so it takes the same time at 1 GiB as at 4 GiB; a write later
copies only the blocks it touches. Docker's own layers (overlay2) would copy a
whole 1 GiB segment file on the first write to a table: see the README.

Names and marks (:mod:`.docker_runtime` for the labels)::

    container <database>       the branch (``naming.pg_database``), labelled
                               kind=branch, final=<database>; its name is its
                               seal: a container is a branch only once renamed
                               from its temp name to <database>
    container bdbt_<hex>       one being built (a temp; recovery removes it)
    volume bdbv_<hex>          its data directory (labelled, a bind of the dir)
    <dir>/<project>/branches/<hex>/data   the clone;  .../run  its socket dir

The URL is for role ``app`` (not a superuser) on database ``app``; the superuser
``postgres`` gets its own generated password too. Both live in the branch's record
(``info``) like the postgres backend's role passwords, so ``reset`` (a new clone
under the same name) keeps host, port, user and password: the URL stays the same.
Ports come from ``[docker] ports``, one per branch, and are kept in the container's
labels and the record.

Scale to zero (``[docker] stop_after``): :meth:`stop_idle` (run by the daemon's
scheduler) stops containers with no client session and no new one for that long;
:meth:`wake` (called by the engine for ``up``/``url``/``env`` and the API) starts a
stopped one and returns once it takes connections.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from branchdb.daemon.backends import cow, docker_cluster, docker_idle, docker_ports
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.backends.base import Info, Progress, Recovered
from branchdb.daemon.config.project import Config
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import NotFound, Refused, redact
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from docker.models.containers import Container

    from branchdb.daemon.backends.pg_session import PgSession
    from branchdb.daemon.core.context import ProjectContext
    from branchdb.daemon.sanitize.rules import Rules

TMP, VOLUME = rt.TMP, rt.VOLUME


def _seal(container: Container, final: str) -> None:
    """Give a complete branch container its final name (the seal; a kill point
    for the tests)."""
    container.rename(final)


def _seal_snapshot(data: Path, final: Path) -> None:
    os.rename(data, final)


class DockerBackend:
    name: ClassVar[str] = "docker"
    dialect: ClassVar[str] = "postgres"
    exists_is_stat: ClassVar[bool] = False
    samples_activity: ClassVar[bool] = True
    copy_on_write: ClassVar[bool] = True
    scales_to_zero: ClassVar[bool] = True

    def __init__(self, config: Config, *, store_id: str | None = None) -> None:
        self.config = config
        self.store_id = store_id
        self.project = config.project.name
        self.settings = config.docker
        self.root = self.settings.dir or (config.data_dir / "docker")
        self.area = self.root / self.project
        self.branches = self.area / "branches"
        self.snapshots = self.area / "snapshots"
        self.ports = docker_ports.Ports(
            self.settings.ports, self.settings.listen, self.root
        )
        #: Seconds each step of the last create took (prepare, container create
        #: with the clone running beside it, the rest of the clone, start, ready,
        #: seal): bench/bench_docker.py prints them.
        self.timings: dict[str, float] = {}

    # -------------------------------------------------------------- plumbing
    def _mine(self, c: Container | None) -> bool:
        """A sealed branch container of this project (labels and name agree)."""
        return (
            c is not None
            and rt.label(c, "project") == self.project
            and rt.label(c, "kind") == "branch"
            and rt.name_of(c) == rt.label(c, "final")
        )

    def _folder(self, c: Any) -> Path | None:
        """The branch directory a labelled container/volume names, if it is ours."""
        where = rt.label(c, "dir")
        if not where:
            return None
        folder = Path(where)
        return folder if folder.parent == self.branches else None

    def _url(self, password: str, port: int) -> str:
        from urllib.parse import quote

        host = self.settings.url_host
        host = f"[{host}]" if ":" in host else host
        return (
            f"postgresql://{docker_cluster.OWNER}:{quote(password, safe='')}"
            f"@{host}:{port}/{docker_cluster.DATABASE}"
        )

    # -------------------------------------------------------------- databases
    def database_name(self, branch: str) -> str:
        return naming.pg_database(self.project, branch)

    def exists(self, database: str) -> bool:
        return self._mine(rt.find(database))

    def create(
        self,
        database: str,
        *,
        branch: str,
        snapshot: SnapshotRecord | None,
        info: Info,
    ) -> Info:
        found = rt.find(database)
        if found is not None:
            if self._mine(found):
                raise Refused(f"container {database} already exists")
            raise Refused(
                f"a container named {database} exists but branchdb did not make it "
                "for this project; branchdb never touches it"
            )
        self.drop_leftovers(database, branch, info)
        if snapshot is None:
            cow.require_reflink(self.root)
            source = docker_cluster.ensure_base(self.settings.image, self.root)
            strategy = "fresh"
        else:
            source = Path(snapshot.location)
            if not (source / "PG_VERSION").is_file():
                raise NotFound(
                    f"snapshot {snapshot.ref} ({source}) is missing; recreate it "
                    f"with `branchdb snapshot create {snapshot.name}`"
                )
            strategy = "reflink"
        password = str(info.get("password") or secrets.token_urlsafe(24))
        superuser = str(info.get("superuser_password") or secrets.token_urlsafe(24))
        key = secrets.token_hex(6)
        folder = self.branches / key
        tmp, volume = TMP + key, VOLUME + key
        container: Container | None = None
        clone: cow.Clone | None = None
        lap = rt.Lap(self.timings)
        try:
            # Held until a container carries the port in its labels.
            with self.ports.lock():
                port = self.ports.allocate(info.get("port"))
                marks = rt.labels(
                    self.project, "branch", database, branch=branch,
                    store=self.store_id, port=port, dir=folder, volume=volume,
                )  # fmt: skip
                rt.create_volume(volume, folder / "data", marks)
                folder.mkdir(parents=True)
                st = os.stat(source)  # cp -a keeps the image's postgres uid
                rt.make_run_dir(folder / "run", st.st_uid, st.st_gid)
                lap("prepare")
                # The clone runs while dockerd creates the container.
                clone = cow.Clone(source, folder / "data")
                container = rt.create_postgres(
                    self.settings.image, tmp, marks,
                    data={"source": volume, "type": "volume"},
                    run_dir=folder / "run", user=f"{st.st_uid}:{st.st_gid}",
                    port=port, listen=self.settings.listen,
                )  # fmt: skip
                lap("container create (clone running)")
            clone.wait()
            lap("clone (rest of it)")
            container.start()
            lap("start")
            with rt.wait_ready(folder / "run", port, container) as conn:
                lap("ready")
                docker_cluster.set_passwords(conn, superuser, password)
            _seal(container, database)
            lap("seal")
        except BaseException:
            if clone is not None:
                clone.kill()
            rt.remove(container)
            rt.remove_volume(volume)
            cow.remove_tree(folder)
            raise
        return {
            "url": self._url(password, port),
            "password": password,
            "superuser_password": superuser,
            "port": port,
            "host": self.settings.url_host,
            "container": database,
            "strategy": strategy,
        }

    def drop(self, database: str, info: Info) -> None:
        """Remove the container, its volume and its data directory (idempotent).
        Raises Refused, removing nothing, if a container of that name is not a
        branch of this project or another state store made it."""
        found = rt.find(database)
        if found is None:
            return
        if not self._mine(found):
            raise Refused(
                f"container {database} is not a branch database branchdb made for "
                f"project {self.project!r} (no matching labels); nothing was removed"
            )
        made_by = rt.label(found, "store")
        if made_by and self.store_id and made_by != self.store_id:
            raise Refused(
                f"container {database} was made by another branchdb state store "
                f"(id {made_by}); nothing was removed. Delete it with the branchdb "
                "that uses that store"
            )
        self._remove(found)

    def _remove(self, c: Any) -> None:
        volume = rt.label(c, "volume")
        folder = self._folder(c)
        rt.remove(c)
        if volume and volume.startswith(VOLUME):
            rt.remove_volume(volume)
        if folder is not None:
            cow.remove_tree(folder)

    def connect(self, database: str, info: Info) -> PgSession:
        """A session as the branch's owner role; a stopped branch is started."""
        from branchdb.daemon.backends.pg_session import PgSession

        url = info.get("url")
        if not url:
            raise NotFound(f"no credentials recorded for database {database}")
        self.wake(database, info)
        return PgSession(str(url))

    def list_owned(self, store: str | None = None) -> list[str]:
        return sorted(
            rt.name_of(c)
            for c in rt.containers(self.project)
            if self._mine(c) and (store is None or rt.label(c, "store") == store)
        )

    def size_bytes(self, database: str) -> int:
        c = rt.find(database)
        folder = self._folder(c) if self._mine(c) else None
        return 0 if folder is None else cow.tree_bytes(folder / "data")

    def activity(
        self, databases: list[str] | None = None
    ) -> dict[str, tuple[int, int]]:
        """Each branch (or of *databases*) -> (client sessions begun on database
        ``app``, open now); see :func:`.docker_idle.activity`."""
        return docker_idle.activity(self, databases)

    # ------------------------------------------------------------ scale to zero
    def state(self, database: str) -> str | None:
        """``running`` or ``stopped`` (None: no such branch container)."""
        c = rt.find(database)
        if c is None or not self._mine(c):
            return None
        return "running" if c.status == "running" else "stopped"

    def wake(self, database: str, info: Info) -> bool:
        """Start *database*'s container if it is stopped; return once it takes
        connections. True if it had to be started."""
        return docker_idle.wake(self, database)

    def stop_idle(self, idle_for: float, now: float | None = None) -> list[str]:
        """Stop every running branch idle for *idle_for* seconds
        (:func:`.docker_idle.stop_idle`); the names stopped."""
        return docker_idle.stop_idle(self, idle_for, now)

    # --------------------------------------------------------------- recovery
    def drop_leftovers(self, database: str, branch: str, info: Info) -> Info:
        """Remove temp containers and unused volumes an interrupted create of
        *database* left (the caller holds the branch's lock)."""
        ready = rt.find(database)
        keep = rt.label(ready, "volume") if self._mine(ready) else None
        for c in rt.containers(self.project):
            if rt.name_of(c).startswith(TMP) and rt.label(c, "final") == database:
                self._remove(c)
        for v in rt.volumes(self.project):
            if rt.label(v, "final") == database and v.name != keep:
                self._remove_volume(v)
        return info

    def _remove_volume(self, v: Any) -> None:
        folder = self._folder(v)
        rt.remove_volume(v.name)
        if folder is not None:
            cow.remove_tree(folder)

    def recover_temps(self, ctx: ProjectContext) -> Recovered:
        """Temp containers, volumes no container uses, and snapshot build folders
        of this project that no live create owns (each under its branch's or
        snapshot's lock, taken without waiting: a busy one is left)."""
        from branchdb.daemon.backends import docker_recovery

        return docker_recovery.recover(self, ctx)

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
        """Restore *source* (a PostgreSQL URL; read-only, one consistent
        ``pg_dump``) into a cluster in a container, shut it down cleanly and seal
        its data directory as ``snapshots/<name>/v<version>``."""
        from branchdb.daemon.backends import pg_copy

        cow.require_reflink(self.root)
        final = self.snapshots / name / f"v{version}"
        if final.exists():
            raise Refused(f"snapshot {name}@{version} already exists at {final}")
        for old in final.parent.glob(f".tmp-v{version}-*"):  # we hold its lock
            shutil.rmtree(old, ignore_errors=True)
        tmp = final.parent / f".tmp-v{version}-{secrets.token_hex(6)}"
        say = progress if callable(progress) else (lambda _m: None)
        extra: dict[str, Any] = {}

        def fill(admin: str, database: str) -> None:
            from psycopg.conninfo import make_conninfo

            bindir = pg_copy.find_bin(15)
            owner = docker_cluster.OWNER
            if rules is None:
                target = make_conninfo(admin, dbname=database)
                pg_copy.copy(source, target, owner, bindir, progress)
                return
            from branchdb.daemon.sanitize.pg import stream
            from branchdb.daemon.sanitize.report import line_progress

            report = stream.build(
                pg_copy.Client(bindir, owner), source, admin, database, rules,
                allow_unreviewed=allow_unreviewed, progress=line_progress(progress),
                say=say,
            )  # fmt: skip
            extra["sanitize"] = report.info()

        marks = rt.labels(self.project, "snapshot", str(final), snapshot=name, dir=tmp)
        try:
            data = docker_cluster.build_snapshot(
                self.settings.image, self.root, tmp, marks, fill
            )
            _seal_snapshot(data, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return SnapshotRecord(
            project=self.project,
            name=name,
            version=version,
            backend=self.name,
            location=str(final),
            created_at=time.time(),
            source=redact(source),
            size_bytes=cow.tree_bytes(final),
            info={"image": self.settings.image, **extra},
        )

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None:
        """Remove the sealed directory (branches cloned from it keep their data:
        a reflink clone shares blocks, not files)."""
        where = Path(snapshot.location)
        if where.parent.parent == self.snapshots and where.is_dir():
            shutil.rmtree(where)
