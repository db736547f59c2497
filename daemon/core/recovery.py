"""Crash recovery: clean up the provisioning a killed process left half done.

How a branch database is made (:meth:`Engine._create`, ``reset``): under the branch's
lock, the record is first written with status ``creating``, the backend builds the
database under a temp name (libsql ``branches/.tmp-<db>-<random>``, PostgreSQL
``bdbt_<digest>_<random>`` marked ``kind: tmp``), renames it to its final name, and
only then is the record written ``ready``. A process killed at any point (SIGKILL,
OOM, power cut) leaves a ``creating`` record, maybe a temp database, maybe the final
one; it never leaves a ``ready`` record for a database that is not complete.

:func:`recover` (run by the daemon at startup, before it serves, and safe to run at
any time) puts every project back into a consistent state:

- a branch whose lock is held is being worked on by a live process: left alone;
- a ``creating`` record: its database (final name, only if it carries this project's
  marker), its temp leftovers and its login role are dropped, and the record is
  deleted; the next create call builds the branch from scratch;
- a ``ready`` record whose database no longer exists: deleted (a create rebuilds it);
- temp databases and files of this project that no live create owns: dropped;
  PostgreSQL temps that still have sessions connected are left alone.

Never touched: anything without branchdb's marker or outside its layout, and
complete databases under a final name without a record (orphans are garbage
collection's business, after its grace period: they may belong to another state
store pointed at the same server).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from branchdb.daemon.core.context import ProjectContext
from branchdb.daemon.core.errors import Refused

log = logging.getLogger("branchdb.recovery")


@dataclass
class RecoveryReport:
    """What :func:`recover` did for one project."""

    cleaned: list[str] = field(default_factory=list)  # creating records undone
    forgotten: list[str] = field(default_factory=list)  # ready, database missing
    temps: list[str] = field(default_factory=list)  # temp databases/files dropped
    busy: list[str] = field(default_factory=list)  # skipped: a live process works

    def __bool__(self) -> bool:
        return bool(self.cleaned or self.forgotten or self.temps)


def recover(ctx: ProjectContext) -> RecoveryReport:
    """Make *ctx*'s project consistent after a crash. Idempotent.

    Raises whatever the backend raises when it cannot be reached (the caller logs
    it); every branch is handled under its own lock, taken without waiting.
    """
    report = RecoveryReport()
    owned = set(ctx.backend.list_owned())  # one look instead of one per record
    for rec in ctx.list_branches():
        if rec.status == "ready" and rec.database in owned:
            continue
        try:
            with ctx.lock(rec.branch, timeout=0):
                _fix_record(ctx, rec.branch, report)
        except Refused:
            report.busy.append(rec.branch)
    temps = ctx.backend.recover_temps(ctx)
    report.temps += temps.dropped
    report.busy += temps.busy
    for what, names in (
        ("interrupted create undone", report.cleaned),
        ("record of a missing database forgotten", report.forgotten),
        ("temp leftover dropped", report.temps),
    ):
        for name in names:
            log.warning("recovery of %s: %s: %s", ctx.project, what, name)
    return report


def _fix_record(ctx: ProjectContext, branch: str, report: RecoveryReport) -> None:
    # Re-read under the lock: the record may have changed since it was listed.
    rec = ctx.store.get_branch(ctx.project, branch)
    if rec is None:
        return
    if rec.status == "ready":
        if not ctx.backend.exists(rec.database):
            # drop_branch still removes what is left (its role, if any).
            ctx.drop_branch(
                rec, detail=f"recovery: {rec.database} was missing; record forgotten"
            )
            report.forgotten.append(branch)
        return
    rec.info = ctx.backend.drop_leftovers(rec.database, rec.branch, dict(rec.info))
    ctx.drop_branch(rec, detail=f"recovery: interrupted create of {rec.database}")
    report.cleaned.append(branch)
