"""Snapshots on the docker backend: a sealed data directory (reflink clones) or an
image (layered clones, :mod:`.docker_layers`), by the backend's clone mode.

Either is built the same way (the source restored into database ``app`` of a
cluster served on its socket only, frozen, shut down cleanly) and sealed last:
the rename of ``snapshots/<name>/.tmp-v<N>-<hex>/data`` to ``snapshots/<name>/v<N>``,
or the commit of the stopped build container as
``branchdb-snap/<project>/<name>:v<N>``. A record's ``info["clone"]`` says which
(``overlay2`` for an image; a directory otherwise), and branches are cloned the
way their snapshot was made, whatever the mode is now.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import cow, docker_cluster, docker_layers
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.backends.base import Progress
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import NotFound, Refused, redact
from branchdb.daemon.core.models import SnapshotRecord

if TYPE_CHECKING:
    from branchdb.daemon.backends.docker_backend import DockerBackend
    from branchdb.daemon.sanitize.rules import Rules

LAYERED = "overlay2"


def layered(snapshot: SnapshotRecord) -> bool:
    """True if *snapshot* is an image (layered clones), not a directory."""
    return snapshot.info.get("clone") == LAYERED


def source_of(
    backend: DockerBackend, snapshot: SnapshotRecord | None
) -> tuple[str | Path, str]:
    """What a new branch is made from (a sealed directory or a cluster image)
    and its strategy (``fresh``, ``reflink``, ``overlay2``). Raises NotFound
    for a snapshot that is gone."""
    image = backend.settings.image
    if snapshot is None:
        if backend.clone_mode() == LAYERED:
            return docker_layers.ensure_base(image, backend.root), "fresh"
        return docker_cluster.ensure_base(image, backend.root), "fresh"
    missing = NotFound(
        f"snapshot {snapshot.ref} ({snapshot.location}) is missing; recreate it "
        f"with `branchdb snapshot create {snapshot.name}`"
    )
    if layered(snapshot):
        img = docker_layers.find_image(snapshot.location)
        if img is None or not docker_layers.ours(img, backend.project):
            raise missing
        return snapshot.location, LAYERED
    source = Path(snapshot.location)
    if not (source / "PG_VERSION").is_file():
        raise missing
    return source, "reflink"


def create(
    backend: DockerBackend,
    name: str,
    version: int,
    source: str,
    *,
    progress: Progress | None,
    rules: Rules | None,
    allow_unreviewed: bool,
    seals: tuple[Callable[[Path, Path], None], Callable[..., None]],
) -> SnapshotRecord:
    """Build and seal version *version* of snapshot *name* from *source*; *seals*:
    the directory rename and the image commit (the backend's kill points)."""
    from branchdb.daemon.backends import pg_copy

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

    image = backend.settings.image
    folder = backend.snapshots / name
    if backend.clone_mode() == LAYERED:
        ref = naming.docker_snapshot_image(backend.project, name, version)
        if docker_layers.find_image(ref) is not None:
            raise Refused(f"snapshot {name}@{version} already exists as image {ref}")
        base = docker_layers.ensure_base(image, backend.root)
        owner = docker_layers.owner_of(base)
        tmp = _fresh_tmp(backend, folder, version)
        marks = rt.labels(
            backend.project, "snapshot", ref, snapshot=name, version=version,
            store=backend.store_id or "", owner="{}:{}".format(*owner), dir=tmp,
        )  # fmt: skip
        try:
            img = docker_layers.build_snapshot(
                base, ref, tmp, marks, owner, fill, seals[1]
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        location, size = ref, docker_layers.layer_bytes(img)
        extra |= {"clone": LAYERED, "image_id": str(img.id)}
    else:
        final = folder / f"v{version}"
        if final.exists():
            raise Refused(f"snapshot {name}@{version} already exists at {final}")
        tmp = _fresh_tmp(backend, folder, version)
        marks = rt.labels(backend.project, "snapshot", str(final), snapshot=name,
                          dir=tmp)  # fmt: skip
        try:
            data = docker_cluster.build_snapshot(image, backend.root, tmp, marks, fill)
            seals[0](data, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        location, size = str(final), cow.tree_bytes(final)
    return SnapshotRecord(
        project=backend.project,
        name=name,
        version=version,
        backend=backend.name,
        location=location,
        created_at=time.time(),
        source=redact(source),
        size_bytes=size,
        info={"image": image, **extra},
    )


def _fresh_tmp(backend: DockerBackend, folder: Path, version: int) -> Path:
    """A new build folder for *version* (the caller holds the snapshot's lock:
    an older one of that version, and its build container, are a killed build's)."""
    for old in folder.glob(f".tmp-v{version}-*"):
        for c in rt.containers(backend.project):
            if rt.name_of(c).startswith(rt.TMP) and rt.label(c, "dir") == str(old):
                rt.remove(c)
        shutil.rmtree(old, ignore_errors=True)
    return folder / f".tmp-v{version}-{secrets.token_hex(6)}"


def drop(backend: DockerBackend, snapshot: SnapshotRecord) -> None:
    if layered(snapshot):
        docker_layers.drop_snapshot(snapshot.location, backend.project)
        docker_layers.sweep(backend.project)
        return
    where = Path(snapshot.location)
    if where.parent.parent == backend.snapshots and where.is_dir():
        shutil.rmtree(where)
