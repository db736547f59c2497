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

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from branchdb.daemon.errors import QuotaExceeded, Refused

if TYPE_CHECKING:
    from branchdb.daemon.engine import Engine, Progress
    from branchdb.daemon.models import BranchRecord

log = logging.getLogger("branchdb.gc")


@contextmanager
def admission(engine: Engine, branch: str, progress: Progress) -> Iterator[list[str]]:
    """Make room for *branch*'s database, then hold the quota lock while the
    caller records it; yields the branches evicted. No-op without
    ``max_branches``. Raises QuotaExceeded."""
    limit = engine.config.branches.max_branches
    evicted: list[str] = []
    if limit is None:
        yield evicted
        return
    locks = engine.config.data_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / "_quota.lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Replicas sharing a state store count the same records: hold its lock too.
        with engine.store.lock(
            f"quota\0{engine.project}", label=f"{engine.project} (quota)"
        ):
            others = [r for r in engine.list_branches() if r.branch != branch]
            if len(others) >= limit:
                _make_room(engine, branch, others, limit, progress, evicted)
            yield evicted
    finally:
        os.close(fd)


def _make_room(
    engine: Engine,
    branch: str,
    others: list[BranchRecord],
    limit: int,
    progress: Progress,
    evicted: list[str],
) -> None:
    b = engine.config.branches
    over = len(others) - limit + 1
    if b.on_limit != "evict":
        raise QuotaExceeded(
            f"project {engine.project!r} is at its limit of {limit} branch "
            f"databases (branches.max_branches); delete one (`branchdb down "
            f'BRANCH`, `branchdb gc`) or set branches.on_limit = "evict"'
        )
    victims = sorted(
        (
            r
            for r in others
            if r.status == "ready" and not engine.is_protected(r.branch)
        ),
        key=lambda r: r.last_used_at,
    )
    for rec in victims:
        if over == 0:
            break
        if _evict(engine, rec, branch, limit, progress):
            evicted.append(rec.branch)
            over -= 1
    if over > 0:
        raise QuotaExceeded(
            f"project {engine.project!r} is at its limit of {limit} branch "
            "databases (branches.max_branches) and none can be evicted (protected "
            "or busy); delete one with `branchdb down BRANCH`"
        )


def _evict(
    engine: Engine, rec: BranchRecord, for_branch: str, limit: int, progress: Progress
) -> bool:
    from branchdb.daemon import gc

    try:
        with engine.lock(rec.branch, timeout=0):
            now = engine.store.get_branch(engine.project, rec.branch)
            if now is None or now.database != rec.database:
                return True  # gone meanwhile: room made all the same
            backend = engine.backend
            there = backend.exists(rec.database)
            size = backend.size_bytes(rec.database) if there else 0
            backend.drop(rec.database, now.info)
            engine.store.delete_branch(engine.project, rec.branch)
            engine.store.clear_closed(engine.project, rec.branch)
    except Refused:
        return False  # busy: try the next least recently used
    gc.count_deletion(engine, "evicted", size)
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
