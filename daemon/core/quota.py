"""Per-project quota on branch databases (``branches.max_branches``), at create time.

``branches.on_limit`` says what creating one database too many does:

- ``refuse`` (default): :class:`~.errors.QuotaExceeded` — nothing is created;
- ``evict``: the least recently used branch that is ready, not protected and not
  busy (its lock is free) is deleted first, logged and counted as an eviction
  (GC reason ``evicted``). With nothing evictable, it refuses too.

The check and the new record ("creating") happen under one project-wide lock, so
concurrent creates cannot pass the limit together. Garbage collection's
``over-quota`` policy still trims a project whose limit was lowered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from branchdb.daemon.core.errors import QuotaExceeded, Refused

if TYPE_CHECKING:
    from branchdb.daemon.core.context import Progress, ProjectContext
    from branchdb.daemon.core.models import BranchRecord

log = logging.getLogger("branchdb.gc")


@contextmanager
def admission(
    ctx: ProjectContext, branch: str, progress: Progress
) -> Iterator[list[str]]:
    """Make room for *branch*'s database, then hold the quota lock while the
    caller records it; yields the branches evicted. No-op without
    ``max_branches``. Raises QuotaExceeded."""
    limit = ctx.config.branches.max_branches
    evicted: list[str] = []
    if limit is None:
        yield evicted
        return
    with (
        ctx.file_lock("_quota"),
        # Replicas sharing a state store count the same records: hold its lock too.
        ctx.store.lock(f"quota\0{ctx.project}", label=f"{ctx.project} (quota)"),
    ):
        others = [r for r in ctx.list_branches() if r.branch != branch]
        if len(others) >= limit:
            _make_room(ctx, branch, others, limit, progress, evicted)
        yield evicted


def _make_room(
    ctx: ProjectContext,
    branch: str,
    others: list[BranchRecord],
    limit: int,
    progress: Progress,
    evicted: list[str],
) -> None:
    b = ctx.config.branches
    over = len(others) - limit + 1
    if b.on_limit != "evict":
        raise QuotaExceeded(
            f"project {ctx.project!r} is at its limit of {limit} branch "
            f"databases (branches.max_branches); delete one (`branchdb down "
            f'BRANCH`, `branchdb gc`) or set branches.on_limit = "evict"'
        )
    victims = sorted(
        (r for r in others if r.status == "ready" and not ctx.is_protected(r.branch)),
        key=lambda r: r.last_used_at,
    )
    for rec in victims:
        if over == 0:
            break
        if _evict(ctx, rec, branch, limit, progress):
            evicted.append(rec.branch)
            over -= 1
    if over > 0:
        raise QuotaExceeded(
            f"project {ctx.project!r} is at its limit of {limit} branch "
            "databases (branches.max_branches) and none can be evicted (protected "
            "or busy); delete one with `branchdb down BRANCH`"
        )


def _evict(
    ctx: ProjectContext,
    rec: BranchRecord,
    for_branch: str,
    limit: int,
    progress: Progress,
) -> bool:
    try:
        with ctx.lock(rec.branch, timeout=0):
            now = ctx.store.get_branch(ctx.project, rec.branch)
            if now is None or now.database != rec.database:
                return True  # gone meanwhile: room made all the same
            size = ctx.drop_branch(
                now,
                detail=f"evicted (least recently used) to create {for_branch!r} "
                f"within max_branches={limit}",
                count_as="evicted",
            )
    except Refused:
        return False  # busy: try the next least recently used
    log.info(
        "evicted database %s of branch %r (reason=evicted: least recently used, "
        "to create %r within max_branches=%d), freed %d bytes",
        rec.database,
        rec.branch,
        for_branch,
        limit,
        size,
    )
    progress(
        f"evicted {rec.branch} (least recently used) to stay within "
        f"max_branches={limit}"
    )
    return True
