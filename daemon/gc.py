"""Garbage collection: which branch databases may go, and why. Planning is pure.

Policies (a protected branch is never collectable):

- ``merged``   the branch is merged into the default branch (merge commit,
               fast-forward, squash or rebase merge — see git_repo.BranchFacts),
               or its pull request was closed as merged (webhook);
- ``closed``   its pull request was closed without merging (webhook);
- ``deleted``  no local or remote-tracking branch of that name exists any more;
- ``idle``     unused for longer than the TTL (the project's ``branches.ttl``, or
               the branch's own, set with ``branchdb ttl``; ``never`` exempts it).
               "Used" is refreshed by ``up``, ``url``, ``env``, API reads and, on
               server backends, by real connections (see :mod:`.gc_activity`);
- ``over-quota`` beyond ``branches.max_branches``, least recently used first;
- ``orphan``   a database whose marker names this state store, with no record
               (a crash between create and record). What another store made, or
               what was made before stores had ids, is never an orphan.

Collectable is not deleted: each candidate is first *marked* (``gc_seen_at``), and only
deleted by a run at least ``grace`` seconds later. Using the database after it was
marked (``last_used_at`` > mark) unmarks it: the branch is kept.

Deletions are paced (``gc.pace``): after each drop the run sleeps ``pace`` times
that drop's duration, so a database server dropping hundreds of databases keeps
answering its other clients. Every deletion is logged (``branchdb.gc`` logger:
branch, reason, bytes freed) and counted in the state store (persistent counters
per project and reason, see :func:`totals`; served at ``GET /metrics``).
"""

from __future__ import annotations

import fnmatch
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from branchdb.daemon.errors import Refused
from branchdb.daemon.models import BranchRecord

if TYPE_CHECKING:
    from branchdb.daemon.engine import Engine, Progress
    from branchdb.daemon.git_repo import BranchFacts

log = logging.getLogger("branchdb.gc")


@dataclass
class Candidate:
    reason: str
    evidence: str
    database: str
    branch: str | None  # None for orphans
    marked_at: float | None  # when a GC run first saw it collectable
    due_at: float  # deletion allowed from then on
    size_bytes: int = 0

    def due(self, now: float) -> bool:
        return self.marked_at is not None and now >= self.due_at


@dataclass
class Policy:
    default_branch: str
    protected: tuple[str, ...]
    ttl: int | None
    grace: int
    max_branches: int | None
    #: branch -> its own TTL in seconds (None: never idle); others use ``ttl``.
    ttl_overrides: dict[str, int | None] = field(default_factory=dict)

    def ttl_for(self, branch: str) -> tuple[int | None, str]:
        """(TTL in seconds or None, "branch" or "project": where it comes from)."""
        if branch in self.ttl_overrides:
            return self.ttl_overrides[branch], "branch"
        return self.ttl, "project"


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.1f}s"


def is_protected(branch: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(branch, p) for p in patterns)


#: The reference of a closed mark that records a branch deleted on the remote (a
#: ``push`` with ``deleted`` or a ``delete`` event) rather than a closed pull request.
DELETED_ON_REMOTE = "branch deleted"


def _why(
    rec: BranchRecord,
    facts: BranchFacts | None,
    policy: Policy,
    now: float,
    closed: dict[str, dict[str, Any]],
) -> tuple[str, str] | None:
    pr = closed.get(rec.branch)
    if pr is not None and pr["reference"].startswith(DELETED_ON_REMOTE):
        return "deleted", f"{pr['reference']} (webhook)"
    if pr is not None:
        what = "merged" if pr["merged"] else "closed"
        ref = f" {pr['reference']}" if pr["reference"] else ""
        return what, f"pull request{ref} was closed ({what})"
    if facts is not None:
        if not facts.exists(rec.branch):
            return "deleted", f"no local or remote branch named {rec.branch!r}"
        how = facts.merged_into_default(rec.branch, rec.created_at)
        if how:
            return "merged", how
    ttl, whose = policy.ttl_for(rec.branch)
    if ttl is not None and now - rec.last_used_at > ttl:
        days = (now - rec.last_used_at) / 86400
        own = ", set for this branch" if whose == "branch" else ""
        return "idle", f"unused for {days:.1f} days (ttl {human_duration(ttl)}{own})"
    return None


def plan(
    records: list[BranchRecord],
    marks: dict[str, float],
    orphans: dict[str, float],
    facts: BranchFacts | None,
    policy: Policy,
    now: float,
    closed: dict[str, dict[str, Any]] | None = None,
) -> list[Candidate]:
    """Every collectable database, oldest mark first. Reads nothing, writes nothing.

    *marks* maps branch → when it was first seen collectable; *orphans* maps orphan
    database → when it was first seen. A mark older than the branch's last use is
    void (the branch became active again).
    """
    out: list[Candidate] = []
    live = [r for r in records if not is_protected(r.branch, policy.protected)]
    if facts is not None:
        facts.prefetch([r.branch for r in live if r.branch not in (closed or {})])
    chosen: set[str] = set()
    for rec in live:
        why = _why(rec, facts, policy, now, closed or {})
        if why is None:
            continue
        chosen.add(rec.branch)
        out.append(_candidate(rec, why, marks, policy))
    if policy.max_branches is not None:
        remaining = sorted(
            (r for r in live if r.branch not in chosen),
            key=lambda r: r.last_used_at,
        )
        kept_protected = len(records) - len(live)
        excess = len(remaining) + kept_protected - policy.max_branches
        for rec in remaining[: max(0, excess)]:
            why = (
                "over-quota",
                f"project over max_branches={policy.max_branches}; least recently used",
            )
            out.append(_candidate(rec, why, marks, policy))
    for database, seen in sorted(orphans.items()):
        out.append(
            Candidate(
                "orphan",
                "made by this state store (its marker says so) but has no record",
                database,
                None,
                seen,
                seen + policy.grace,
            )
        )
    return sorted(out, key=lambda c: (c.due_at, c.database))


def _candidate(
    rec: BranchRecord, why: tuple[str, str], marks: dict[str, float], policy: Policy
) -> Candidate:
    mark = marks.get(rec.branch)
    if mark is not None and rec.last_used_at > mark:
        mark = None  # used since it was marked: start over
    due = (mark if mark is not None else float("inf")) + policy.grace
    return Candidate(why[0], why[1], rec.database, rec.branch, mark, due)


@dataclass
class GcReport:
    candidates: list[Candidate]  # oldest due first
    missing: list[str]  # branches whose record has no database any more
    deleted: list[Candidate] = field(default_factory=list)
    #: branches whose server database was seen used since the last sample
    active: list[str] = field(default_factory=list)
    #: persistent per-project counters after this run (see :func:`totals`)
    totals: dict[str, Any] = field(default_factory=dict)


def totals(engine: Engine) -> dict[str, Any]:
    """The project's persistent GC counters (kept in the state store, so they
    survive restarts): databases and bytes collected, by reason and in all; runs;
    the last run's time (epoch seconds, or None)."""
    raw = engine.store.gc_counters(engine.project).get(engine.project, {})
    by_reason: dict[str, dict[str, int]] = {}
    for name, value in raw.items():
        kind, _, reason = name.partition(":")
        if kind in ("databases", "bytes") and reason:
            by_reason.setdefault(reason, {"databases": 0, "bytes": 0})[kind] = int(
                value
            )
    return {
        "collected_databases": sum(r["databases"] for r in by_reason.values()),
        "collected_bytes": sum(r["bytes"] for r in by_reason.values()),
        "by_reason": dict(sorted(by_reason.items())),
        "runs": int(raw.get("runs", 0)),
        "last_run_at": raw.get("last_run_at"),
    }


def count_deletion(engine: Engine, reason: str, size: int) -> None:
    engine.store.bump_gc_counters(
        engine.project, {f"databases:{reason}": 1, f"bytes:{reason}": size}, {}
    )


def run(engine: Engine, *, dry_run: bool, progress: Progress) -> GcReport:
    """Plan, then (unless *dry_run*) mark and delete. See the module docstring."""
    from branchdb.daemon import gc_activity
    from branchdb.daemon.errors import GitError
    from branchdb.daemon.git_repo import BranchFacts

    store, project, now = engine.store, engine.project, engine.clock()
    b = engine.config.branches
    policy = Policy(
        engine.config.project.default_branch,
        b.protected,
        b.ttl,
        b.grace,
        b.max_branches,
        store.branch_ttls(project),
    )
    try:
        facts: BranchFacts | None = BranchFacts(
            engine.config.root, policy.default_branch
        )
    except GitError:
        facts = None  # not a git checkout: only TTL, quota and webhooks apply
    records = engine.list_branches()
    # Server backends: connections seen on a database since the last sample count
    # as a use (refreshes last-used in the store and in *records*).
    active = gc_activity.refresh(engine, records, now)
    known = {r.database for r in records}
    owned = set(engine.backend.list_owned())
    # Orphans: only what this store made (another store's are its own business).
    made = set(engine.backend.list_owned(store=store.store_id))
    orphan_marks = store.gc_marks(project, "orphan")
    orphans = {d: orphan_marks.get(d, now) for d in made - known}
    marks = store.gc_marks(project, "branch")
    if facts is not None and facts.default_sha is not None:
        facts.seed(store.merge_checks(project, facts.default_sha))
    candidates = plan(
        records, marks, orphans, facts, policy, now, store.closed_branches(project)
    )
    if facts is not None and facts.default_sha is not None:
        # Persist the expensive squash/rebase answers (one git merge-tree each),
        # keyed by (tip, default tip): the next plan reuses them until main moves.
        fresh = facts.new_answers()
        if fresh:
            store.add_merge_checks(project, facts.default_sha, fresh)
    report = GcReport(
        candidates,
        [r.branch for r in records if r.status == "ready" and r.database not in owned],
        active=active,
    )
    if dry_run:
        report.totals = totals(engine)
        return report
    # Only still-collectable branches keep their marks; orphans that vanished (or
    # got a record) lose theirs.
    new_marks: dict[str, float] = {}
    for c in candidates:
        if c.branch is None:
            continue
        if c.marked_at is None:
            c.marked_at, c.due_at = now, now + policy.grace
        new_marks[c.branch] = c.marked_at
    store.set_gc_marks(project, "branch", new_marks)
    store.set_gc_marks(project, "orphan", orphans)
    pace = engine.config.gc.pace
    due = [c for c in candidates if c.due(now)]
    for i, c in enumerate(due):
        started = time.monotonic()
        try:
            freed = _collect(engine, c)
        except Refused as e:  # not provably ours any more: kept, with its record
            log.warning("gc kept %s: %s", c.database, e)
            freed = None
        if freed is not None:
            c.size_bytes = freed
            report.deleted.append(c)
            count_deletion(engine, c.reason, freed)
            progress(f"deleted {c.branch or c.database} ({c.reason}), {freed} bytes")
        if pace > 0 and i + 1 < len(due):
            # Adaptive: a slow drop (busy server, big database, checkpoint) earns
            # a longer pause, so the server's other clients get their share.
            time.sleep(pace * (time.monotonic() - started))
    if report.deleted:
        gone = {c.branch for c in report.deleted} | {c.database for c in report.deleted}
        store.set_gc_marks(
            project, "branch", {k: v for k, v in new_marks.items() if k not in gone}
        )
        store.set_gc_marks(
            project, "orphan", {k: v for k, v in orphans.items() if k not in gone}
        )
    store.bump_gc_counters(project, {"runs": 1}, {"last_run_at": now})
    report.totals = totals(engine)
    return report


def _collect(engine: Engine, c: Candidate) -> int | None:
    """Delete one due candidate; None if it changed meanwhile (then it is kept)."""
    from branchdb.daemon import gc_activity

    backend, store = engine.backend, engine.store
    if c.branch is None:  # an orphan: re-check it is still unrecorded and ours
        if store.branch_by_database(engine.config.database.backend, c.database):
            return None
        if c.database not in backend.list_owned(store=store.store_id):
            return None
        size = backend.size_bytes(c.database)
        backend.drop(c.database, {})
        engine.audit("delete", "", f"garbage collection: orphan {c.database}")
        log.info(
            "gc deleted orphan database %s (reason=orphan), freed %d bytes",
            c.database,
            size,
        )
        return size
    with engine.lock(c.branch):
        rec = store.get_branch(engine.project, c.branch)
        if rec is None or rec.database != c.database:
            return None
        if c.marked_at is not None and rec.last_used_at > c.marked_at:
            return None  # used again during the grace period: kept
        if gc_activity.in_use(engine, rec.database):
            # Someone is connected or was since the plan's sample: a use. Keep
            # it; the next run's sample refreshes its last-used time.
            log.info("gc kept %s of %r: it is in use", c.database, c.branch)
            return None
        size = backend.size_bytes(rec.database) if backend.exists(rec.database) else 0
        backend.drop(rec.database, rec.info)
        store.delete_branch(engine.project, rec.branch)
        store.clear_closed(engine.project, rec.branch)
        engine.audit("delete", rec.branch, f"gc {c.reason}: {c.evidence}")
    log.info(
        "gc deleted database %s of branch %r (reason=%s: %s), freed %d bytes",
        c.database,
        c.branch,
        c.reason,
        c.evidence,
        size,
    )
    return size
