"""What the engine, GC and API need from a state store, whichever one it is.

Two stores implement :class:`Store`: :class:`~.sqlite_store.SqliteStore` (the
embedded default, one file, one connection per thread) and
:class:`~.postgres_store.PostgresStore` (``[state] url``: shared by daemon replicas,
thread-safe). Their queries are written once in :class:`~.sql_store.SqlStore`; the
schema once in :mod:`.schema`. Both pass the contract suite in
tests/test_store_contract.py.

Capabilities are attributes, not ``isinstance`` checks: ``shared`` is True when other
processes on other machines may use the same store (then :meth:`Store.lock` and
:meth:`Store.leader` really exclude them; the SQLite store relies on the engine's
file locks and answers with no-ops).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

from branchdb.daemon.core.models import BranchRecord, SnapshotRecord

#: Actions the audit log records.
AUDIT_ACTIONS = (
    "create",
    "reset",
    "delete",
    "migrate",
    "snapshot.create",
    "snapshot.delete",
)


class AuditEntry(NamedTuple):
    """One line of the audit log. ``id`` is 0 until the store assigned one."""

    at: float
    project: str
    branch: str  # "" for snapshot actions
    action: str  # one of AUDIT_ACTIONS
    actor: str  # "token:<id>", "github:<delivery>", "cli:<user>", "scheduler", ...
    reason: str = ""  # why, as the caller said (webhook event, gc policy...)
    detail: str = ""  # what the engine did (source, migrations applied, snapshot)
    id: int = 0


class Store(Protocol):
    """Branch, snapshot, token, delivery, GC and audit records of one installation.

    Writes are atomic (one transaction each). Methods never raise for a missing row
    unless they say so; they answer None, False or an empty collection.
    """

    #: True when other machines may share this store (see the module docstring).
    shared: bool

    @property
    def store_id(self) -> str:
        """A random id made once, with the store's schema; every replica sharing the
        store reads the same one. Backends write it into the markers of what they
        create, so that garbage collection counts as orphans only what its own
        store made (another store on the same server keeps its databases)."""
        ...

    def close(self) -> None: ...

    # branches
    def get_branch(self, project: str, branch: str) -> BranchRecord | None: ...
    def branch_by_database(
        self, backend: str, database: str
    ) -> BranchRecord | None: ...
    def list_branches(self, project: str) -> list[BranchRecord]: ...
    def put_branch(self, rec: BranchRecord) -> None: ...
    def touch_branch(self, project: str, branch: str, when: float) -> None: ...
    def delete_branch(self, project: str, branch: str) -> None:
        """Delete the record and every record keyed by (project, branch): TTL
        override, closed- and open-pull-request marks, GC mark; one transaction."""
        ...

    # snapshots
    def list_snapshots(
        self, project: str, name: str | None = None
    ) -> list[SnapshotRecord]: ...
    def next_snapshot_version(self, project: str, name: str) -> int: ...
    def put_snapshot(self, rec: SnapshotRecord) -> None: ...
    def delete_snapshot(self, project: str, name: str, version: int) -> None: ...

    # gc marks
    def gc_marks(self, project: str, kind: str) -> dict[str, float]: ...
    def set_gc_marks(
        self, project: str, kind: str, marks: dict[str, float]
    ) -> None: ...

    # api tokens
    def put_token(
        self,
        token_id: str,
        name: str,
        scope: str,
        sha256: str,
        when: float,
        projects: Sequence[str] = (),
    ) -> None: ...
    def list_tokens(self) -> list[dict[str, Any]]: ...
    def delete_token(self, token_id: str) -> bool: ...
    def touch_token(self, token_id: str, when: float) -> None: ...

    # webhook deliveries
    def claim_delivery(
        self, provider: str, delivery: str, project: str, event: str, when: float
    ) -> bool: ...
    def finish_delivery(
        self,
        provider: str,
        delivery: str,
        status: str,
        detail: str = "",
        *,
        project: str,
    ) -> None: ...
    def delivery(
        self, provider: str, delivery: str, *, project: str
    ) -> dict[str, Any] | None: ...

    # closed pull requests
    def mark_closed(
        self, project: str, branch: str, merged: bool, when: float, reference: str
    ) -> None: ...
    def clear_closed(self, project: str, branch: str) -> None: ...
    def closed_branches(self, project: str) -> dict[str, dict[str, Any]]: ...

    # open pull requests (a closed mark replaces an open one, and vice versa)
    def mark_open(
        self, project: str, branch: str, when: float, reference: str
    ) -> None: ...
    def open_branches(self, project: str) -> dict[str, str]: ...

    # audit log
    def add_audit(self, entry: AuditEntry) -> None: ...
    def list_audit(
        self,
        project: str,
        *,
        branch: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]: ...

    # garbage collection's state (gc_state.py)
    def set_branch_ttl(self, project: str, branch: str, ttl: int | None) -> None: ...
    def clear_branch_ttl(self, project: str, branch: str) -> None: ...
    def branch_ttls(self, project: str) -> dict[str, int | None]: ...
    def activity_samples(self, project: str) -> dict[str, int]: ...
    def record_activity(
        self,
        project: str,
        samples: dict[str, int],
        used: dict[str, float],
        when: float,
    ) -> None: ...
    def gc_counters(
        self, project: str | None = None
    ) -> dict[str, dict[str, float]]: ...
    def bump_gc_counters(
        self, project: str, add: dict[str, float], put: dict[str, float]
    ) -> None: ...
    def merge_checks(self, project: str, default_sha: str) -> dict[str, bool]: ...
    def add_merge_checks(
        self, project: str, default_sha: str, answers: dict[str, bool]
    ) -> None: ...

    # cross-process exclusion
    def lock(
        self,
        name: str,
        *,
        label: str = "",
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> AbstractContextManager[None]:
        """Hold the lock *name* against every user of the store; wait for it.

        Raises Refused (naming *label*) after *timeout* seconds; calls *on_wait*
        once if it must wait.
        """
        ...

    def leader(self, name: str) -> AbstractContextManager[bool]:
        """Try to become the only holder of *name*; yields False (at once) if taken."""
        ...
