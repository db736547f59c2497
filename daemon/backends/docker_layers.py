"""Layered clones for the docker backend (``[docker] clone = "overlay2"``): the
fallback where ``[docker] dir`` is not on btrfs or XFS.

A snapshot version is an **image**: a build container from the empty cluster's
image, holding its data directory in its own writable layer (:data:`PGDATA`, never
a volume or a bind), is filled, shut down cleanly and committed. A branch is a
container created from that image; its data directory is in the container's
writable layer, so creating one copies no data. What it costs: overlay2 copies a
*whole file* up into the container's layer when it is first opened for writing,
and PostgreSQL opens a table's files read-write even to read them (and the planner
opens every 1 GiB segment to size the table): the first statement that touches a
table, a one-row read included, copies all of its files (about 0.65 s for a 1 GiB
table, about 4 s for 4 GiB, here), and the branch keeps that copy (the README's
Benchmarks, bench/bench_docker_overlay.py).

Names (labels as in :mod:`.docker_runtime`; images keep the labels they were
committed with, and a container made from one inherits those it does not set)::

    image branchdb-base:<image id>          the empty cluster per [docker] image
                                            (kind=base, project "-")
    image branchdb-snap/<project>/<name>:vN (naming.docker_snapshot_image) a
                                            snapshot version (kind=snapshot,
                                            snapshot, version)
    container bdbt_<hex>                    a build (a temp; its socket folder
                                            is its ``dir`` label)

A dangling image (``snapshot rm`` untags; Docker keeps an image a running
container uses) with this project's labels is removed once no container uses it:
after each branch container goes, and by recovery (:func:`sweep`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import docker_cluster
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.core.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from docker.models.containers import Container

#: The data directory inside a layered cluster's container: not under the
#: official image's ``VOLUME /var/lib/postgresql/data`` (a volume is never in a
#: committed image).
PGDATA = "/var/lib/branchdb/data"
BASE_REPO = "branchdb-base"
#: What the fallback costs, said once per process and folder.
COST = (
    "[docker] dir {dir} is not on btrfs/XFS: branches use Docker's image layers "
    "(clone = overlay2), where the first query touching a table, even a read, "
    "copies all of its files into the branch (about 1 s and 1 GiB per GiB of "
    "table), which keeps that copy; put dir on btrfs/XFS for reflink clones, or "
    'set clone = "overlay2" to silence this'
)
# The empty cluster, made inside the build container: initdb, then the server on
# its socket only (exec: it gets the stop signal). $1: the pg_hba line added.
_INIT = (
    'initdb -D "$PGDATA" -U {superuser} -E UTF8 --locale=C.UTF-8 --auth-local=trust '
    '--auth-host=scram-sha-256 >/dev/null && echo "$1" >> "$PGDATA/pg_hba.conf" && '
    'exec postgres -D "$PGDATA" -p {port} -c listen_addresses='
)
log = logging.getLogger("branchdb.docker")
_warned: set[str] = set()


def warn_fallback(folder: Path) -> None:
    """Log, once per process and *folder*, what the fallback costs."""
    if str(folder) not in _warned:
        _warned.add(str(folder))
        log.warning(COST.format(dir=folder))


def find_image(ref: str) -> Any | None:
    import docker

    try:
        return rt.client().images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def ensure_base(image: str, root: Path) -> str:
    """The image of the empty cluster for *image* (built once, under the same
    lock as the reflink base in *root*/base); its reference."""
    import fcntl

    img = rt.ensure_image(image)
    ref = f"{BASE_REPO}:{str(img.id).split(':')[-1][:16]}"

    def sealed() -> bool:  # an image of that name without our label is not ours
        found = find_image(ref)
        return found is not None and rt.label(found, "kind") == "base"

    if sealed():
        return ref
    folder = root / "base"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one build per root, other callers wait
        if sealed():
            return ref
        docker_cluster.remove_base_builds(folder)  # a build killed earlier
        check_image(image)
        uid, gid = rt.image_user(image)
        tmp = folder / f".tmp-{secrets.token_hex(6)}"
        marks = rt.labels("-", "base", ref, dir=str(tmp), owner=f"{uid}:{gid}")
        try:
            build(
                img.id, tmp, marks, (uid, gid),
                work=lambda conn: docker_cluster.setup(conn, tmp / "run"),
                seal=lambda c: commit(c, ref, img.attrs, marks),
                init=True,
            )  # fmt: skip
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)
    return ref


def owner_of(ref: str) -> tuple[int, int]:
    """(uid, gid) owning the data directory in the cluster image *ref* (its
    ``owner`` label, written when it was built)."""
    img = rt.client().images.get(ref)
    uid, _, gid = (rt.label(img, "owner") or "").partition(":")
    if not (uid.isdigit() and gid.isdigit()):
        raise BackendError(f"image {ref} has no branchdb.owner label; rebuild it")
    return int(uid), int(gid)


def build(
    image: str,
    tmp: Path,
    marks: dict[str, str],
    owner: tuple[int, int],
    *,
    work: Callable[[Any], None],
    seal: Callable[[Container], None],
    init: bool = False,
    settings: tuple[str, ...] = (),
) -> None:
    """Serve a cluster in a build container ``bdbt_<hex>`` of *image* on the socket
    in *tmp*/run only (no network), let *work* use it (a superuser connection),
    shut it down cleanly, then *seal* (commit) the stopped container, and remove
    it. *init*: the image has no cluster yet (initdb first, in the container).
    The caller removes *tmp*. Raises BackendError if the shutdown was not clean."""
    tmp.mkdir(parents=True)
    rt.make_run_dir(tmp / "run", *owner)
    name = rt.TMP + secrets.token_hex(6)
    port = docker_cluster.BUILD_PORT
    script = _INIT.format(port=port, superuser=rt.SUPERUSER)
    init_cmd = ["sh", "-c", script, "init", _HBA] if init else None
    container = rt.create_postgres(
        image, name, marks, data=None, run_dir=tmp / "run",
        user=f"{owner[0]}:{owner[1]}", port=port, listen="", settings=settings,
        pgdata=PGDATA, network="none", entrypoint=init_cmd,
    )  # fmt: skip
    try:
        if init:
            container.put_archive("/", _data_dir(*owner))
        container.start()
        conn = rt.wait_ready(tmp / "run", port, container)
        try:
            work(conn)
        finally:
            conn.close()
        code = rt.stop(container)
        if code != 0:
            raise BackendError(
                f"PostgreSQL in {name} did not shut down cleanly (exit {code})"
            )
        seal(container)
    finally:
        rt.remove(container)


_HBA = "host all all all scram-sha-256"  # any address [docker] listen allows


def _data_dir(uid: int, gid: int) -> bytes:
    """A tar of the empty :data:`PGDATA` owned by the cluster's user (its parent
    is root's: the image's user could not make it)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, mode, owner in (
            (os.path.dirname(PGDATA), 0o755, (0, 0)),
            (PGDATA, 0o700, (uid, gid)),
        ):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, mode
            info.uid, info.gid = owner
            tar.addfile(info)
    return out.getvalue()


def commit(
    container: Container, ref: str, base: dict[str, Any], marks: dict[str, str]
) -> None:
    """Commit the stopped *container* as *ref*, with *marks* as its labels and the
    entrypoint, command and user of the server image (*base*: its attrs), not the
    build's. A build's ``dir`` label is blanked: labels can only be overridden."""
    repository, _, tag = ref.rpartition(":")
    conf = base.get("Config") or {}
    container.commit(
        repository=repository,
        tag=tag,
        conf={
            "Labels": {**marks, rt.LABEL + "dir": ""},
            "Entrypoint": conf.get("Entrypoint"),
            "Cmd": conf.get("Cmd"),
            "User": conf.get("User") or "",
        },
    )


def build_snapshot(
    base: str,
    ref: str,
    tmp: Path,
    marks: dict[str, str],
    owner: tuple[int, int],
    fill: Callable[[str, str], None],
    seal: Callable[[Container, str, dict[str, Any], dict[str, str]], None],
) -> Any:
    """Serve a container of the empty cluster's image *base*, let *fill* restore
    into it (:func:`.docker_cluster.fill_and_freeze`), shut it down cleanly and
    commit it as *ref* through *seal* (:func:`commit`; the kill point). The image."""
    attrs = rt.client().images.get(base).attrs
    build(
        base, tmp, marks, owner,
        work=lambda conn: docker_cluster.fill_and_freeze(conn, tmp / "run", fill),
        seal=lambda c: seal(c, ref, attrs, marks),
        # Old WAL deleted, not recycled: see docker_cluster.serving.
        settings=("wal_recycle=off", "min_wal_size=32MB", "max_wal_size=2GB"),
    )  # fmt: skip
    return rt.client().images.get(ref)


def layer_bytes(img: Any) -> int:
    """Bytes of *img*'s own top layer (what committing the build added)."""
    history = img.history()
    return int(history[0].get("Size") or 0) if history else 0


def size_rw(container: Container) -> int:
    """Bytes in *container*'s writable layer (dockerd's ``SizeRw``)."""
    got = rt.client().api.containers(all=True, size=True, filters={"id": container.id})
    return int(got[0].get("SizeRw") or 0) if got else 0


def ours(img: Any, project: str) -> bool:
    return rt.label(img, "project") == project and rt.label(img, "kind") == "snapshot"


def drop_snapshot(ref: str, project: str) -> None:
    """Untag the snapshot image *ref* if its labels say this project's; Docker
    removes it at once unless a running container uses it (then it is dangling
    until :func:`sweep`). Layers a stopped branch uses stay until it goes."""
    import docker

    img = find_image(ref)
    if img is None or not ours(img, project) or ref not in (img.tags or []):
        return
    with contextlib.suppress(docker.errors.NotFound):
        rt.client().images.remove(ref, force=True)


def sweep(project: str) -> list[str]:
    """Remove this project's dangling snapshot images that no container uses;
    the ids removed (an image still in use is kept: Docker refuses)."""
    import docker

    gone = []
    flt = {"dangling": True, "label": f"{rt.LABEL}project={project}"}
    for img in rt.client().images.list(filters=flt):
        if not ours(img, project) or img.tags:
            continue
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            rt.client().images.remove(img.id)
            gone.append(str(img.id))
    return gone


def check_image(image: str) -> None:
    """Raise ConfigError if *image* declares a volume over :data:`PGDATA` (its data
    would then never be in a layer)."""
    volumes = (rt.ensure_image(image).attrs.get("Config") or {}).get("Volumes") or {}
    for v in volumes:
        if v == PGDATA or PGDATA.startswith(v.rstrip("/") + "/"):
            raise ConfigError(
                f"image {image} declares VOLUME {v}: layered clones keep the data "
                f"directory at {PGDATA}, in the container's own layer"
            )
