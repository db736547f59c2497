"""PostgreSQL in Docker: one server container per branch, on a copy-on-write clone.

A branch is a container of ``[docker] image`` whose data directory is a reflink
clone (btrfs, XFS) of a sealed, cleanly shut down data directory — a snapshot, or
the empty cluster of the image for a fresh branch (:mod:`.docker_cluster`). Creating
one copies no data, so it takes the same time at 1 GiB as at 4 GiB; a write later
copies only the blocks it touches.

Where ``[docker] dir`` has no reflinks, ``[docker] clone`` (``auto`` by default)
falls back to Docker's own layers (:mod:`.docker_layers`): a snapshot is an image
and a branch a container of it, its data in the container's writable layer. That
also copies no data on create, but overlay2 copies a whole file up when it is
first opened for writing, and PostgreSQL opens a table's files read-write even to
read: the first query touching a table copies all of it (see the README).
Branches are always cloned the way their snapshot was made
(:mod:`.docker_snapshots`).

Names and marks (:mod:`.docker_runtime` for the labels)::

    container <database>       the branch (``naming.pg_database``), labelled
                               kind=branch, final=<database>; its name is its
                               seal: a container is a branch only once renamed
                               from its temp name to <database>
    container bdbt_<hex>       one being built (a temp; recovery removes it)
    volume bdbv_<hex>          its data directory (labelled, a bind of the dir);
                               layered: its socket directory (``run``)
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from branchdb.daemon.backends import (
    cow,
    docker_cluster,
    docker_idle,
    docker_layers,
    docker_ports,
    docker_snapshots,
)
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.backends.base import Info, Progress, Recovered
from branchdb.daemon.config.project import Config
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import NotFound, Refused
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


def _commit_snapshot(
    container: Container, ref: str, base: dict[str, Any], marks: dict[str, str]
) -> None:
    """Commit a layered snapshot's build container as its image (the seal)."""
    docker_layers.commit(container, ref, base, marks)


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
        self._clone: str | None = None

    def clone_mode(self) -> str:
        """``reflink`` or ``overlay2``, how new snapshots and fresh branches are
        made: ``[docker] clone``, with ``auto`` decided by probing ``dir`` once (a
        one-line warning says what the fallback costs). Raises ConfigError for
        ``reflink`` on a folder without reflinks."""
        if self._clone is None:
            want = self.settings.clone
            if want == "reflink":
                cow.require_reflink(self.root)
            elif want == "auto":
                want = "reflink" if cow.supports_reflink(self.root) else "overlay2"
                if want == "overlay2":
                    docker_layers.warn_fallback(self.root)
            self._clone = want
        return self._clone

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
        source, strategy = docker_snapshots.source_of(self, snapshot)
        layered = strategy == "overlay2" or (
            strategy == "fresh" and self.clone_mode() == "overlay2"
        )
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
                # store: always set, never inherited from a snapshot image's.
                marks = rt.labels(
                    self.project, "branch", database, branch=branch,
                    store=self.store_id or "", port=port, dir=folder,
                    volume=volume, clone="overlay2" if layered else "reflink",
                )  # fmt: skip
                how: dict[str, Any] = {"port": port, "listen": self.settings.listen}
                if layered:  # the volume is the socket folder; data: the layer
                    uid, gid = docker_layers.owner_of(str(source))
                    rt.create_volume(volume, folder / "run", marks)
                    folder.mkdir(parents=True)
                    rt.make_run_dir(folder / "run", uid, gid)
                    run = {"source": volume, "type": "volume"}
                    how |= {"data": None, "run_dir": run}
                    how["pgdata"] = docker_layers.PGDATA
                else:
                    rt.create_volume(volume, folder / "data", marks)
                    folder.mkdir(parents=True)
                    st = os.stat(source)  # cp -a keeps the image's postgres uid
                    uid, gid = st.st_uid, st.st_gid
                    rt.make_run_dir(folder / "run", uid, gid)
                    how |= {"data": {"source": volume, "type": "volume"},
                            "run_dir": folder / "run"}  # fmt: skip
                lap("prepare")
                if not layered:  # the clone runs while dockerd creates the container
                    clone = cow.Clone(Path(source), folder / "data")
                container = rt.create_postgres(
                    str(source) if layered else self.settings.image, tmp, marks,
                    user=f"{uid}:{gid}", **how,
                )  # fmt: skip
                lap("container create" + ("" if layered else " (clone running)"))
            if clone is not None:
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
        if rt.label(c, "clone") == "overlay2":
            docker_layers.sweep(self.project)  # its image, if `snapshot rm` untagged it

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
        """Bytes the branch holds: its clone's apparent size (reflink), or its
        container's writable layer (overlay2: what it wrote or copied up)."""
        c = rt.find(database)
        if c is None or not self._mine(c):
            return 0
        if rt.label(c, "clone") == "overlay2":
            return docker_layers.size_rw(c)
        folder = self._folder(c)
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
        it: as the directory ``snapshots/<name>/v<version>`` (reflink) or the
        image ``branchdb-snap/<project>/<name>:v<version>`` (overlay2); see
        :mod:`.docker_snapshots`."""
        return docker_snapshots.create(
            self, name, version, source, progress=progress, rules=rules,
            allow_unreviewed=allow_unreviewed,
            seals=(_seal_snapshot, _commit_snapshot),
        )  # fmt: skip

    def snapshot_drop(self, snapshot: SnapshotRecord) -> None:
        """Remove the sealed directory (branches cloned from it keep their data:
        a reflink clone shares blocks, not files), or untag the image: Docker
        keeps its layers while a branch container uses them, and a dangling image
        goes with the last such container (:func:`.docker_layers.sweep`)."""
        docker_snapshots.drop(self, snapshot)
