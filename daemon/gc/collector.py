"""Garbage collection's run: plan (:mod:`.policy`), mark, wait, delete.

Collectable is not deleted: each candidate is first *marked* (``gc_seen_at``), and only
deleted by a run at least ``grace`` seconds later. Using the database after it was
marked (``last_used_at`` > mark) unmarks it: the branch is kept. "Used" is refreshed
by ``up``, ``url``, ``env``, API reads and, on server backends, by real connections
(see :mod:`.activity`). A protected branch is never collected.

Git facts ("merged", "deleted") are read from the daemon's fetched mirror of the
project's ``repository`` when it has one — the repository the webhooks read, fetched
first (bounded by :data:`FETCH_TIMEOUT`; a failed fetch is logged and that run judges
nothing "merged" or "deleted" from git) — else from the project folder's checkout.

Orphans (a database this store made, carrying this project's marker, with no
record) are decided in one place, :func:`_orphans`: never another store's, never a
database any record of the store names, nor one of a protected branch.

Deletions go through :meth:`~branchdb.daemon.core.context.ProjectContext.drop_branch`
(one branch at a time, under its lock) and are paced (``gc.pace``): after each drop
the run sleeps ``pace`` times that drop's duration, so a database server dropping
hundreds of databases keeps answering its other clients. Every deletion is logged
(``branchdb.gc`` logger: branch, reason, bytes freed), audited and counted in the
state store (persistent counters per project and reason, see :func:`totals`; served
at ``GET /metrics``). A run answers a :class:`~.results.GcReport`; a real run
also logs each newly marked database and one summary line.
"""

from __future__ import annotations

import logging
import time

from branchdb.daemon.core import branchname
from branchdb.daemon.core.context import Progress, ProjectContext, no_progress
from branchdb.daemon.core.errors import GitError, Refused, redact
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.gc import activity
from branchdb.daemon.gc.policy import Candidate, Policy, human_duration, plan
from branchdb.daemon.gc.results import GcReport, GcTotals, ReasonTotals
from branchdb.daemon.vcs.repo import BranchFacts

log = logging.getLogger("branchdb.gc")

#: The longest a run waits for the mirror's fetch (seconds) before planning without
#: git facts.
FETCH_TIMEOUT = 120.0


def totals(ctx: ProjectContext) -> GcTotals:
    """The project's persistent GC counters (kept in the state store, so they
    survive restarts): databases and bytes collected, by reason and in all; runs;
    the last run's time (epoch seconds, or None)."""
    raw = ctx.store.gc_counters(ctx.project).get(ctx.project, {})
    by_reason: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        kind, _, reason = name.partition(":")
        if kind in ("databases", "bytes") and reason:
            by_reason.setdefault(reason, {"databases": 0, "bytes": 0})[kind] = int(
                value
            )
    last_run_at = raw.get("last_run_at")
    return GcTotals(
        collected_databases=sum(r["databases"] for r in by_reason.values()),
        collected_bytes=sum(r["bytes"] for r in by_reason.values()),
        by_reason={k: ReasonTotals(**v) for k, v in sorted(by_reason.items())},
        runs=int(raw.get("runs", 0)),
        last_run_at=None if last_run_at is None else float(last_run_at),
    )


def collect(
    ctx: ProjectContext, *, dry_run: bool, progress: Progress = no_progress
) -> GcReport:
    """Plan garbage collection and, unless *dry_run*, act on it.

    A run marks newly collectable databases and deletes those marked at least
    ``branches.grace`` ago and unused since. A dry run marks and deletes nothing
    (it does record the server activity sample, see :mod:`.activity`). Safe to
    interrupt and re-run: each deletion is one branch, under that branch's lock.

    A real run is the project's only collector among every user of the state
    store (replicas sharing a PostgreSQL store): if another runs, raises Refused
    ("another collector is running") and changes nothing.
    """
    if dry_run:
        return _run(ctx, dry_run=True, progress=progress)
    with ctx.store.leader(f"gc\0{ctx.project}") as leading:
        if not leading:
            raise Refused(
                f"another collector is running for project {ctx.project!r}; "
                "this run was skipped"
            )
        return _run(ctx, dry_run=False, progress=progress)


def _run(ctx: ProjectContext, *, dry_run: bool, progress: Progress) -> GcReport:
    """Plan, then (unless *dry_run*) mark and delete. See the module docstring."""

    store, project, now = ctx.store, ctx.project, ctx.clock()
    b = ctx.config.branches
    policy = Policy(
        ctx.config.project.default_branch,
        b.protected,
        b.ttl,
        b.grace,
        b.max_branches,
        store.branch_ttls(project),
    )
    facts = _facts(ctx, policy.default_branch)
    records = ctx.list_branches()
    # Server backends: connections seen on a database since the last sample count
    # as a use (refreshes last-used in the store and in *records*).
    active = activity.refresh(ctx, records, now)
    owned = set(ctx.backend.list_owned())
    # Orphans: only what this store made (another store's are its own business).
    made = set(ctx.backend.list_owned(store=store.store_id))
    orphan_marks = store.gc_marks(project, "orphan")
    orphans = {d: orphan_marks.get(d, now) for d in _orphans(ctx, records, made, facts)}
    marks = store.gc_marks(project, "branch")
    if facts is not None and facts.default_sha is not None:
        facts.seed(store.merge_checks(project, facts.default_sha))
    candidates = plan(
        records,
        marks,
        orphans,
        facts,
        policy,
        now,
        store.closed_branches(project),
        store.open_branches(project),
    )
    if facts is not None and facts.default_sha is not None:
        # Persist the expensive squash/rebase answers (one git merge-tree each),
        # keyed by (tip, default tip): the next plan reuses them until main moves.
        fresh = facts.new_answers()
        if fresh:
            store.add_merge_checks(project, facts.default_sha, fresh)
    missing = tuple(
        r.branch for r in records if r.status == "ready" and r.database not in owned
    )
    if dry_run:
        return GcReport(
            tuple(candidates), missing, active=tuple(active), totals=totals(ctx)
        )
    # Only still-collectable branches keep their marks; orphans that vanished (or
    # got a record) lose theirs.
    new_marks: dict[str, float] = {}
    marked = 0
    for c in candidates:
        if c.marked_at is None or (c.branch is None and c.database not in orphan_marks):
            if c.marked_at is None:
                c.marked_at, c.due_at = now, now + policy.grace
            marked += 1
            log.info(
                "gc marked database %s of %s (reason=%s: %s); deleted after %s "
                "unless used",
                c.database,
                "an orphan" if c.branch is None else f"branch {c.branch!r}",
                c.reason,
                c.evidence,
                human_duration(policy.grace),
            )
        if c.branch is not None:
            new_marks[c.branch] = c.marked_at
    store.set_gc_marks(project, "branch", new_marks)
    store.set_gc_marks(project, "orphan", orphans)
    pace = ctx.config.gc.pace
    due = [c for c in candidates if c.due(now)]
    deleted: list[Candidate] = []
    for i, c in enumerate(due):
        started = time.monotonic()
        try:
            freed = _collect(ctx, c)
        except Refused as e:  # not provably ours any more: kept, with its record
            log.warning("gc kept %s: %s", c.database, e)
            freed = None
        if freed is not None:
            c.size_bytes = freed
            deleted.append(c)
            progress(f"deleted {c.branch or c.database} ({c.reason}), {freed} bytes")
        if pace > 0 and i + 1 < len(due):
            # Adaptive: a slow drop (busy server, big database, checkpoint) earns
            # a longer pause, so the server's other clients get their share.
            time.sleep(pace * (time.monotonic() - started))
    if deleted:
        gone = {c.branch for c in deleted} | {c.database for c in deleted}
        store.set_gc_marks(
            project, "branch", {k: v for k, v in new_marks.items() if k not in gone}
        )
        store.set_gc_marks(
            project, "orphan", {k: v for k, v in orphans.items() if k not in gone}
        )
    store.bump_gc_counters(project, {"runs": 1}, {"last_run_at": now})
    log.info(
        "gc of %s: %d collectable, %d newly marked, %d deleted, %d bytes freed%s",
        project,
        len(candidates),
        marked,
        len(deleted),
        sum(c.size_bytes for c in deleted),
        "" if facts is not None else " (no git facts this run)",
    )
    return GcReport(
        tuple(candidates),
        missing,
        tuple(deleted),
        active=tuple(active),
        totals=totals(ctx),
    )


def _facts(ctx: ProjectContext, default_branch: str) -> BranchFacts | None:
    """This run's git facts, or None: then no branch is judged "merged" or
    "deleted" from git (TTL, quota, orphans and the webhooks' marks still apply).

    With a mirror (the daemon's ``repository``), it is fetched first; a fetch that
    fails or takes longer than :data:`FETCH_TIMEOUT` is logged, never fatal.
    """
    if ctx.mirror is not None:
        try:
            ctx.mirror.fetch(timeout=FETCH_TIMEOUT)
        except (GitError, OSError) as e:
            log.warning(
                "gc of %s: fetching %s failed, so no branch is judged merged or "
                "deleted this run: %s",
                ctx.project,
                redact(ctx.mirror.url),
                redact(str(e)),
            )
            return None
    try:
        return BranchFacts(ctx.repository, default_branch)
    except GitError:
        return None  # not a git repository: only TTL, quota and webhooks apply


def _orphans(
    ctx: ProjectContext,
    records: list[BranchRecord],
    made: set[str],
    facts: BranchFacts | None,
) -> set[str]:
    """The databases of *made* (provably this project's, and made by this state
    store: ``list_owned(store=…)``) that are orphans: no record of this project
    names them, no record of the whole state store does (another project sharing
    the backend), and none is the database of a protected branch — the default
    branch, each literal ``branches.protected`` name, and every branch git knows
    that matches a protected pattern (a store that lost its records must never
    drop those).

    The one place orphans are decided (the marker checks live in the backend's
    ``list_owned``). Read-only.
    """
    left = made - {r.database for r in records}
    if not left:
        return left
    patterns = ctx.config.branches.protected
    names = {ctx.config.project.default_branch}
    names.update(p for p in patterns if not any(ch in p for ch in "*?["))
    if facts is not None:
        names.update(
            b
            for b in (*facts.local, *facts.remote)
            if branchname.is_protected(b, patterns)
        )
    backend = ctx.backend
    left -= {backend.database_name(b) for b in names}
    return {d for d in left if ctx.store.branch_by_database(backend.name, d) is None}


def _collect(ctx: ProjectContext, c: Candidate) -> int | None:
    """Delete one due candidate; None if it changed meanwhile (then it is kept)."""
    if c.branch is None:  # an orphan: drop_orphan re-checks it is unrecorded, ours
        return ctx.drop_orphan(
            c.database,
            detail=f"garbage collection: orphan {c.database}",
            count_as="orphan",
        )
    if ctx.is_protected(c.branch):
        return None  # the plan never proposes one; the configuration may have changed
    with ctx.lock(c.branch):
        rec = ctx.store.get_branch(ctx.project, c.branch)
        if rec is None or rec.database != c.database:
            return None
        if c.marked_at is not None and rec.last_used_at > c.marked_at:
            return None  # used again during the grace period: kept
        if activity.in_use(ctx, rec.database):
            # Someone is connected or was since the plan's sample: a use. Keep
            # it; the next run's sample refreshes its last-used time.
            log.info("gc kept %s of %r: it is in use", c.database, c.branch)
            return None
        size = ctx.drop_branch(
            rec, detail=f"gc {c.reason}: {c.evidence}", count_as=c.reason
        )
    log.info(
        "gc deleted database %s of branch %r (reason=%s: %s), freed %d bytes",
        c.database,
        c.branch,
        c.reason,
        c.evidence,
        size,
    )
    return size
