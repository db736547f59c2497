"""What the engine's verbs answer: one frozen dataclass per answer.

Adapters turn these into JSON with :mod:`branchdb.daemon.views` (the one definition of
each wire shape, :mod:`branchdb.daemon.wire`); nothing else builds those dicts. A new
fact about a branch goes here as a field with a default, then into its wire shape and
view (``tests/test_wire.py`` fails until it does).

Frozen means the answer is not rebound after the engine returns it; the
:class:`~.models.BranchRecord` inside is the store's mutable record, shared on purpose
(the engine keeps updating it while it works). Sequences are tuples.

The checkout hook's fast path never imports this module (``dataclasses`` pulls in
``inspect``, ~7 ms): it prints its one answer from :mod:`~branchdb.daemon.views`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.models import BranchRecord

if TYPE_CHECKING:
    from branchdb.daemon.sanitize.detect import Finding

__all__ = ["MigrateResult", "SnapshotCheck", "Status", "UpResult", "Warmed"]


@dataclass(frozen=True, slots=True)
class UpResult:
    """What ``up`` (and ``reset``) did."""

    record: BranchRecord
    created: bool = False
    reset: bool = False
    #: migration names applied by this call, in order
    applied: tuple[str, ...] = ()
    #: the fast path: the database existed and nothing was pending
    up_to_date: bool = False
    #: branches evicted (least recently used) to stay within branches.max_branches
    evicted: tuple[str, ...] = ()
    #: format "command": the command that ran and the tool's ledger before/after
    command: dict[str, Any] | None = None
    #: True on a backend that scales to zero (up and reset leave it running);
    #: None on the others, which never stop a database
    running: bool | None = None


@dataclass(frozen=True, slots=True)
class MigrateResult:
    """What ``migrate`` applied, or with *dry_run* what it would apply."""

    record: BranchRecord
    applied: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    """A branch's record plus live facts, read without changing anything."""

    record: BranchRecord
    #: whether the backend still has the database
    exists: bool
    size_bytes: int = 0
    #: migrations the branch's files have and its database has not applied
    pending: tuple[str, ...] = ()
    #: why *pending* could not be computed (drift, an edited migration…), or None
    problem: str | None = None
    #: what the tool's own ledger says is applied (None: not readable)
    applied: tuple[str, ...] | None = None
    #: the tool's ledger in one line
    ledger: str | None = None
    #: format "command": the command that migrates
    command: str | None = None
    #: whether its server runs now (``scales_to_zero`` backends; else None)
    running: bool | None = None


@dataclass(frozen=True, slots=True)
class SnapshotCheck:
    """The PII detector on a snapshot source: every finding, and those no rule
    covers (all of them when no rules were given)."""

    findings: tuple[Finding, ...]
    unreviewed: tuple[Finding, ...]
    #: the bounds of the sample judged (rows, value size, time; tables given up)
    limits: str = ""


@dataclass(frozen=True, slots=True)
class Warmed:
    """Spares of one snapshot version after a fill (``snapshot warm``)."""

    snapshot: str  # NAME@VERSION
    built: int  # made by this call
    ready: int  # ready to be handed out now
