"""What garbage collection and the TTL verbs answer: frozen dataclasses.

Turned into JSON by :mod:`branchdb.daemon.views` (``gc --json``, ``GET /gc``,
``ttl --json``, the ``ttl`` of ``status``) and read by ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from branchdb.daemon.gc.policy import Candidate

__all__ = ["GcReport", "GcTotals", "ReasonTotals", "Ttl"]


@dataclass(frozen=True, slots=True)
class ReasonTotals:
    """Databases and bytes collected for one reason (``idle``, ``merged``…)."""

    databases: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class GcTotals:
    """A project's persistent GC counters (kept in the state store, so they survive
    restarts)."""

    collected_databases: int = 0
    collected_bytes: int = 0
    by_reason: Mapping[str, ReasonTotals] = field(default_factory=dict)
    #: real runs (dry runs do not count)
    runs: int = 0
    #: when the last real run ended (epoch seconds), or None
    last_run_at: float | None = None


@dataclass(frozen=True, slots=True)
class GcReport:
    """One GC run, or with a dry run its plan."""

    candidates: tuple[Candidate, ...]  # oldest due first
    missing: tuple[str, ...]  # branches whose record has no database any more
    deleted: tuple[Candidate, ...] = ()
    #: branches whose server database was seen used since the last sample
    active: tuple[str, ...] = ()
    #: the project's counters after this run
    totals: GcTotals = field(default_factory=GcTotals)


@dataclass(frozen=True, slots=True)
class Ttl:
    """A branch's idle TTL for garbage collection."""

    branch: str
    #: seconds; None: never collected for being idle
    ttl: int | None
    #: "branch" (its own, ``branchdb ttl``) or "project" (``branches.ttl``)
    ttl_source: str
    #: when it becomes collectable for being idle (epoch seconds), or None
    idle_after: float | None
    protected: bool
