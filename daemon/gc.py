"""Garbage collection: which branch databases may go, and why. Planning is pure.

Policies (a protected branch is never collectable):

- ``merged``   the branch is merged into the default branch (merge commit,
               fast-forward, squash or rebase merge — see git_repo.BranchFacts);
- ``deleted``  no local or remote-tracking branch of that name exists any more;
- ``idle``     unused for longer than the TTL;
- ``over-quota`` beyond ``branches.max_branches``, least recently used first;
- ``orphan``   a database carrying branchdb's marker with no record (a crash
               between create and record).

Collectable is not deleted: each candidate is first *marked* (``gc_seen_at``), and only
deleted by a run at least ``grace`` seconds later. Using the database after it was
marked (``last_used_at`` > mark) unmarks it: the branch is kept.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from branchdb.daemon.git_repo import BranchFacts
from branchdb.daemon.models import BranchRecord


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


def is_protected(branch: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(branch, p) for p in patterns)


def _why(
    rec: BranchRecord, facts: BranchFacts | None, policy: Policy, now: float
) -> tuple[str, str] | None:
    if facts is not None:
        if not facts.exists(rec.branch):
            return "deleted", f"no local or remote branch named {rec.branch!r}"
        how = facts.merged_into_default(rec.branch, rec.created_at)
        if how:
            return "merged", how
    if policy.ttl is not None and now - rec.last_used_at > policy.ttl:
        days = (now - rec.last_used_at) / 86400
        return "idle", f"unused for {days:.1f} days (ttl {policy.ttl / 86400:g} days)"
    return None


def plan(
    records: list[BranchRecord],
    marks: dict[str, float],
    orphans: dict[str, float],
    facts: BranchFacts | None,
    policy: Policy,
    now: float,
) -> list[Candidate]:
    """Every collectable database, oldest mark first. Reads nothing, writes nothing.

    *marks* maps branch → when it was first seen collectable; *orphans* maps orphan
    database → when it was first seen. A mark older than the branch's last use is
    void (the branch became active again).
    """
    out: list[Candidate] = []
    live = [r for r in records if not is_protected(r.branch, policy.protected)]
    chosen: set[str] = set()
    for rec in live:
        why = _why(rec, facts, policy, now)
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
                "carries branchdb's marker but has no record",
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
