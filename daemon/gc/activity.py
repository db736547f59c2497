"""Real connections count as use: activity sampled from a database server.

A backend that can see its databases' traffic declares ``samples_activity`` and
offers ``activity()``, mapping each of its databases to ``(activity counter,
client sessions open now)``. The counter must move with client use only: the
postgres backend counts client sessions begun (``pg_stat_database.sessions``), not
transactions, which autovacuum raises on every visit (its docstring says what was
measured on PostgreSQL 15). :func:`refresh` compares that with the previous sample
kept in the state store: a database with an open session, or whose counter changed
since the last sample, was used — its branch's ``last_used_at`` moves to the
sample time. The first sample of a database only sets the baseline (after an
upgrade that changed what is counted, the first comparison is one spurious use at
most). Backends without it (libsql files) are skipped: for them "used" means
``up``, ``url``, ``env`` and API reads.

Sampling happens at every GC plan (``branchdb gc``, ``--dry-run``, the daemon's
scheduled GC and ``GET .../gc``), so the scheduler's interval is the sampling
interval. A counter that moved backwards (statistics reset, server crash) also
counts as a use: when in doubt, keep.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from branchdb.daemon.core.models import BranchRecord

if TYPE_CHECKING:
    from branchdb.daemon.core.context import ProjectContext

log = logging.getLogger("branchdb.gc")


def refresh(ctx: ProjectContext, records: list[BranchRecord], now: float) -> list[str]:
    """Sample the server, record the sample, refresh last-used of used branches.

    Updates ``last_used_at`` in *records* too. Returns the branches seen used.
    Writes only to the state store; never touches a database.
    """
    if not ctx.backend.samples_activity or not records:
        return []
    seen = ctx.backend.activity()
    before = ctx.store.activity_samples(ctx.project)
    by_db = {r.database: r for r in records}
    used: dict[str, float] = {}
    for database, (counter, sessions) in seen.items():
        rec = by_db.get(database)
        if rec is None:
            continue
        previous = before.get(database)
        if sessions > 0 or (previous is not None and previous != counter):
            used[rec.branch] = now
            rec.last_used_at = max(rec.last_used_at, now)
            log.debug(
                "database %s of branch %r in use (%d sessions open, %s begun)",
                database,
                rec.branch,
                sessions,
                "?" if previous is None else counter - previous,
            )
    samples = {d: n for d, (n, _) in seen.items() if d in by_db}
    ctx.store.record_activity(ctx.project, samples, used, now)
    return sorted(used)


def in_use(ctx: ProjectContext, database: str) -> bool:
    """True when *database* has a client session open right now, or had one since
    the last sample (server backends; the last look before a drop)."""
    if not ctx.backend.samples_activity:
        return False
    seen = ctx.backend.activity([database])
    if database not in seen:
        return False
    counter, sessions = seen[database]
    before = ctx.store.activity_samples(ctx.project).get(database)
    return sessions > 0 or (before is not None and before != counter)
