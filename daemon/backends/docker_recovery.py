"""What a killed daemon can leave behind on the docker backend, and its cleanup.

A create makes, in order: a labelled volume (its labels name the branch), the
clone folder, a temp container ``bdbt_<hex>``, and only then renames the container
to the branch's name. A snapshot build makes ``snapshots/<name>/.tmp-v<N>-<hex>/``
and a build container labelled with the snapshot, and renames the data directory
last. So everything a kill can leave is one of:

- a container named ``bdbt_*`` with this project's labels (a create or build);
- a volume no container uses (killed before its container existed);
- a ``.tmp-*`` folder under ``snapshots/<name>/`` (a build).

Each is removed under the lock of the branch or snapshot its labels (or path) name,
taken without waiting: a live create holds that lock, and its temps are reported
busy instead. A *sealed* branch container without a record is no temp: garbage
collection finds it through ``list_owned`` and drops it as an orphan.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import cow
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
    for c in every:
        name = rt.name_of(c)
        if not name.startswith(TMP):
            continue
        try:
            with _locked(ctx, _key(c)):
                backend.drop_leftovers(rt.label(c, "final") or "", "", {})
                rt.remove(c)  # a build container: its folder goes below
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
            try:
                with _locked(ctx, f"snapshot\0{folder.parent.name}"):
                    cow.remove_tree(folder)
                    out.dropped.append(folder.name)
            except Refused:
                out.busy.append(folder.name)
    return out


def _locked(ctx: ProjectContext, key: str | None) -> Any:
    return ctx.lock(key, timeout=0) if key else nullcontext()
