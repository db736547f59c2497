"""The warm pool, seen from the engine: clones of snapshots made ahead of time.

A backend that keeps spares has a ``spare_pool`` (:class:`~..backends.base.SparePool`);
its ``create`` hands one out by itself when one is ready, so ``up --from`` and
``reset`` need nothing from here. This module fills and trims the pool:

- :func:`warm`: ``branchdb snapshot warm NAME --spares N``, now, in this process;
- :func:`refill`: what the daemon's scheduler runs for each project with
  ``[postgres] spares = N``: spares of every snapshot name's newest version up to
  N, and spares of versions the state store no longer has dropped.

Spares are built under the snapshot name's ``spares`` lock
(:func:`~.naming.spares_lock`): one builder per snapshot, and crash recovery never
drops a spare a live builder is making. They are not branches: quotas and garbage
collection do not count them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from branchdb.daemon.core import naming
from branchdb.daemon.core.context import Progress, ProjectContext, no_progress
from branchdb.daemon.core.errors import NotFound, Refused
from branchdb.daemon.core.results import Warmed

if TYPE_CHECKING:
    from branchdb.daemon.backends.base import SparePool
    from branchdb.daemon.core.models import SnapshotRecord

log = logging.getLogger("branchdb.spares")

#: Seconds between two refills by the daemon (a check is one catalog query).
REFILL_EVERY = 5


def pool_of(ctx: ProjectContext) -> SparePool | None:
    """*ctx*'s backend's pool, or None when the backend keeps no spares."""
    pool: SparePool | None = getattr(ctx.backend, "spare_pool", None)
    return pool


def warm(
    ctx: ProjectContext,
    snapshot: SnapshotRecord,
    count: int,
    progress: Progress = no_progress,
) -> Warmed:
    """Build spares of *snapshot* until *count* are ready (blocking; waits for
    another builder of that snapshot). Raises Refused if the backend keeps none."""
    pool = pool_of(ctx)
    if pool is None:
        raise Refused(
            f"the {ctx.config.database.backend} backend keeps no spares: "
            'snapshot warm is for backend = "postgres"'
        )
    with ctx.lock(naming.spares_lock(snapshot.name), progress=progress):
        built = pool.warm(snapshot, count, progress)
        ready = pool.count(snapshot)
    if built:
        ctx.audit("snapshot.warm", "", f"{snapshot.ref}: {built} spares made")
    return Warmed(snapshot.ref, built, ready)


def refill(ctx: ProjectContext) -> list[Warmed]:
    """Fill the pool to ``[postgres] spares`` for each snapshot name's newest
    version; drop spares of versions the store no longer has. A snapshot whose
    builder is busy is skipped this time. Idempotent; [] when the pool is off."""
    count = ctx.config.postgres.spares
    pool = pool_of(ctx)
    if pool is None or count <= 0:
        return []
    snapshots = ctx.store.list_snapshots(ctx.project)
    pool.prune(snapshots)
    newest: dict[str, SnapshotRecord] = {}
    for s in snapshots:
        if s.backend == ctx.config.database.backend and (
            s.name not in newest or s.version > newest[s.name].version
        ):
            newest[s.name] = s
    out = []
    for snap in newest.values():
        try:
            with ctx.lock(naming.spares_lock(snap.name), timeout=0):
                built = pool.warm(snap, count)
        except Refused:
            continue  # someone is building spares of it right now
        except NotFound as e:  # its database is gone: the others still get theirs
            log.warning("spares of %s/%s: %s", ctx.project, snap.ref, e)
            continue
        if built:
            ctx.audit("snapshot.warm", "", f"{snap.ref}: {built} spares made")
        out.append(Warmed(snap.ref, built, count))
    return out
