"""What a killed daemon can leave behind on the docker backend, and its cleanup.

A create makes, in order: a labelled volume (its labels name the branch), the
clone folder, a temp container ``bdbt_<hex>``, and only then renames the container
to the branch's name. A snapshot build makes ``snapshots/<name>/.tmp-v<N>-<hex>/``
and a build container labelled with the snapshot, and renames the data directory
last. So everything a kill can leave is one of:

- a container named ``bdbt_*`` with this project's labels (a create or build);
- a volume no container uses (killed before its container existed);
- a build of the empty cluster under ``base/`` (its labelled container and
  folder), removed when no build holds ``base/.lock``;
- a ``.tmp-*`` folder under ``snapshots/<name>/`` (a build), and with layered
  clones its stopped build container ``bdbt_*``, whose ``dir`` label names the
  folder (the pair is one temp, reported by the container's name);
- with layered clones, a snapshot image committed (the seal) but never recorded
  (killed before the record was written): an image labelled with this project and
  this store whose version the store does not know; and a dangling snapshot image
  no container uses any more (``snapshot rm`` untagged it while a branch ran).

Each is removed under the lock of the branch or snapshot its labels (or path) name,
taken without waiting: a live create holds that lock, and its temps are reported
busy instead. A *sealed* branch container without a record is no temp: garbage
collection finds it through ``list_owned`` and drops it as an orphan.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import cow, docker_cluster, docker_layers
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.backends.base import Recovered
from branchdb.daemon.core.errors import Refused

if TYPE_CHECKING:
    from branchdb.daemon.backends.docker_backend import DockerBackend
    from branchdb.daemon.core.context import ProjectContext


def _key(obj: Any) -> str | None:
    """The lock key of what *obj*'s labels say it was made for."""
    kind = rt.label(obj, "kind")
    if kind == "branch":
        return rt.label(obj, "branch")
    if kind == "snapshot":
        return f"snapshot\0{rt.label(obj, 'snapshot')}"
    return None


def recover(backend: DockerBackend, ctx: ProjectContext) -> Recovered:
    TMP, VOLUME = rt.TMP, rt.VOLUME
    out = Recovered([], [])
    every = rt.containers(backend.project)
    used = {rt.label(c, "volume") for c in every}
    claimed = set()
    for c in every:
        name = rt.name_of(c)
        if not name.startswith(TMP):
            continue
        build = _build_folder(backend, c)
        if build is not None:
            claimed.add(build)
        try:
            with _locked(ctx, _key(c)):
                backend.drop_leftovers(rt.label(c, "final") or "", "", {})
                rt.remove(c)  # a reflink build's folder goes below
                if build is not None:
                    cow.remove_tree(build)
                out.dropped.append(name)
        except Refused:
            out.busy.append(name)
    for v in rt.volumes(backend.project):
        if v.name in used or not v.name.startswith(VOLUME):
            continue
        temp = TMP + v.name.removeprefix(VOLUME)
        try:
            with _locked(ctx, _key(v)):
                backend.drop_leftovers(rt.label(v, "final") or "", "", {})
                out.dropped.append(temp)
        except Refused:
            out.busy.append(temp)
    if backend.snapshots.is_dir():
        for folder in sorted(backend.snapshots.glob("*/.tmp-*")):
            if folder in claimed:
                continue
            try:
                with _locked(ctx, f"snapshot\0{folder.parent.name}"):
                    cow.remove_tree(folder)
                    out.dropped.append(folder.name)
            except Refused:
                out.busy.append(folder.name)
    _unrecorded_images(backend, ctx, out)
    docker_layers.sweep(backend.project)
    _base_builds(backend.root / "base")
    return out


def _base_builds(folder: Path) -> None:
    """Remove what a killed build of an empty cluster (directory or image) left,
    if no build holds ``base/.lock`` now (shared by every project on this
    ``dir``: not reported as this project's temps)."""
    import fcntl
    import os

    if not folder.is_dir():
        return
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a build runs: it cleans up after itself
        docker_cluster.remove_base_builds(folder)
    finally:
        os.close(fd)


def _build_folder(backend: DockerBackend, c: Any) -> Path | None:
    """The ``snapshots/<name>/.tmp-*`` folder of a layered build container."""
    where = Path(rt.label(c, "dir") or "/")
    if rt.label(c, "kind") != "snapshot" or not where.name.startswith(".tmp-"):
        return None
    return where if where.parent.parent == backend.snapshots else None


def _unrecorded_images(
    backend: DockerBackend, ctx: ProjectContext, out: Recovered
) -> None:
    """Remove this project's and store's snapshot images that no record names,
    each under its snapshot's lock (a live create holds it until it records)."""
    flt = {
        "label": [f"{rt.LABEL}project={backend.project}", f"{rt.LABEL}kind=snapshot"]
    }
    for img in rt.client().images.list(filters=flt):
        name, version = rt.label(img, "snapshot"), rt.label(img, "version")
        if not (name and version and version.isdigit() and img.tags):
            continue
        if (rt.label(img, "store") or "") != (backend.store_id or ""):
            continue  # another store's: its own recovery decides
        if _recorded(ctx, name, int(version)):
            continue
        try:
            with _locked(ctx, f"snapshot\0{name}"):
                if _recorded(ctx, name, int(version)):  # by the create that held it
                    continue
                for tag in img.tags:
                    docker_layers.drop_snapshot(tag, backend.project)
                out.dropped.append(str(img.tags[0]))
        except Refused:
            out.busy.append(str(img.tags[0]))


def _recorded(ctx: ProjectContext, name: str, version: int) -> bool:
    return version in {s.version for s in ctx.store.list_snapshots(ctx.project, name)}


def _locked(ctx: ProjectContext, key: str | None) -> Any:
    return ctx.lock(key, timeout=0) if key else nullcontext()
