"""Which branch databases may go, and why. Pure: reads nothing, writes nothing.

Policies (a protected branch is never collectable):

- ``merged``   the branch has work of its own (its tip is not reachable from the
               default branch's head recorded when its database was made) and the
               default branch contains it (merge commit, fast-forward, squash or
               rebase merge — see vcs.repo.BranchFacts), or its pull request was
               closed as merged (webhook);
- ``closed``   its pull request was closed without merging (webhook);
- ``deleted``  no local or remote-tracking branch of that name exists any more and
               no pull request of that branch is open (webhook), or git could not
               name a branch so (a record made before the one branch-name rule,
               :mod:`branchdb.daemon.core.branchname`, which no API call or webhook
               can reach);
- ``idle``     unused for longer than the TTL (the project's ``branches.ttl``, or
               the branch's own, set with ``branchdb ttl``; ``never`` exempts it);
- ``over-quota`` beyond ``branches.max_branches``, least recently used first;
- ``orphan``   a database whose marker names this state store, with no record
               (a crash between create and record). What another store made, or
               what was made before stores had ids, is never an orphan.

A candidate's mark (when a run first saw it collectable) and the grace period decide
when it is due; :mod:`.collector` acts on the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core import branchname
from branchdb.daemon.core.branchname import is_protected
from branchdb.daemon.core.models import BranchRecord

if TYPE_CHECKING:
    from collections.abc import Collection

    from branchdb.daemon.vcs.repo import BranchFacts


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
        return effective_ttl(branch, self.ttl, self.ttl_overrides)


def effective_ttl(
    branch: str, default: int | None, overrides: dict[str, int | None]
) -> tuple[int | None, str]:
    """*branch*'s idle TTL (seconds; None: never idle) and where it comes from:
    ``"branch"`` (its own, ``branchdb ttl``) or ``"project"`` (``branches.ttl``)."""
    if branch in overrides:
        return overrides[branch], "branch"
    return default, "project"


def human_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.1f}s"


#: The reference of a closed mark that records a branch deleted on the remote (a
#: ``push`` with ``deleted`` or a ``delete`` event) rather than a closed pull request.
DELETED_ON_REMOTE = "branch deleted"


def _why(
    rec: BranchRecord,
    facts: BranchFacts | None,
    policy: Policy,
    now: float,
    closed: dict[str, dict[str, Any]],
    open_prs: Collection[str],
) -> tuple[str, str] | None:
    if not branchname.is_valid(rec.branch):
        return "deleted", "git could not name a branch so (invalid branch name)"
    pr = closed.get(rec.branch)
    if pr is not None and pr["reference"].startswith(DELETED_ON_REMOTE):
        return "deleted", f"{pr['reference']} (webhook)"
    if pr is not None:
        what = "merged" if pr["merged"] else "closed"
        ref = f" {pr['reference']}" if pr["reference"] else ""
        return what, f"pull request{ref} was closed ({what})"
    if facts is not None:
        if not facts.exists(rec.branch):
            if rec.branch in open_prs:
                return None  # e.g. a fork's pull request: no branch of ours
            return "deleted", f"no local or remote branch named {rec.branch!r}"
        how = facts.merged_into_default(rec.branch, rec.created_at, rec.default_heads)
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
    open_prs: Collection[str] = (),
) -> list[Candidate]:
    """Every collectable database, oldest mark first. Reads nothing, writes nothing.

    *marks* maps branch → when it was first seen collectable; *orphans* maps orphan
    database → when it was first seen. A mark older than the branch's last use is
    void (the branch became active again). *closed* and *open_prs* are the
    webhooks' pull-request states (closed marks; branches with one open).
    """
    out: list[Candidate] = []
    live = [r for r in records if not is_protected(r.branch, policy.protected)]
    if facts is not None:
        facts.prefetch([r.branch for r in live if r.branch not in (closed or {})])
    chosen: set[str] = set()
    for rec in live:
        why = _why(rec, facts, policy, now, closed or {}, open_prs)
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
