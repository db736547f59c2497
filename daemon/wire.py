"""The JSON shapes of branchdb's answers: one definition each, as TypedDicts.

Every shape is written here once and used three ways:

- :mod:`branchdb.daemon.views` builds them from the engine's results; mypy checks
  each view's dict against its shape (a missing, extra or mistyped key fails
  ``.ci/typecheck``). The CLI's ``--json``, the hook's fast path and the API all
  print those views.
- :mod:`branchdb.daemon.api.schemas` generates the API's pydantic models (the OpenAPI
  components of the same names) from them.
- The CLI's clients are typed with them, so a command reading a key that is not in
  the shape fails type checking.

``tests/test_wire.py`` checks that every field of an engine result reaches its shape
and that the views answer exactly these keys. Nothing on the checkout hook's path
imports this module (``typing`` is not free there): :mod:`.views` names it only for
the type checker.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Branch(TypedDict):
    """A branch database (``ls --json``, ``GET .../branches/{branch}``)."""

    branch: str
    database: str
    backend: str
    url: str
    source: str  # "fresh" or "snapshot:NAME@N"
    status: str  # "creating" | "ready"
    created_at: str  # ISO 8601, UTC, seconds
    last_used_at: str
    migrations_applied: int
    strategy: str | None  # how it was cloned (backend-specific), None if unknown
    #: a libsql server (sqld) branch's JWT, opening that branch's database only;
    #: None on other backends (their credentials are in ``url``)
    auth_token: str | None
    #: whether its server runs now, on a backend that stops idle branches
    #: (``[docker] stop_after``); None: not asked, or the backend never stops one
    running: bool | None


class UpBranch(Branch):
    """What ``up`` did (``up --json``, ``PUT .../branches/{branch}``)."""

    created: bool
    reset: bool  # rebuilt because its migrations drifted
    up_to_date: bool  # nothing to do
    applied: list[str]  # migrations applied by this call
    evicted: list[str]  # branches evicted to stay within branches.max_branches
    command: (
        dict[str, Any] | None
    )  # format "command": what ran, the ledger before/after


class ResetBranch(Branch):
    """A branch database rebuilt from its source (``reset --json``)."""

    applied: list[str]


class DroppedBranch(Branch):
    """The record of a branch database just dropped (``down --json``)."""

    dropped: bool  # always true


class Migrate(TypedDict):
    """What ``migrate`` applied, or with ``dry_run`` would apply."""

    branch: str
    dry_run: bool
    applied: list[str]
    pending: list[str]


class Snapshot(TypedDict):
    """One version of a snapshot (``snapshot ls --json``)."""

    name: str
    version: int
    ref: str  # NAME@VERSION
    backend: str
    location: str
    source: str  # where it was copied from, credentials redacted
    size_bytes: int
    created_at: str


class CreatedSnapshot(Snapshot):
    """A new snapshot version, with its sanitize summary (None if not sanitized)."""

    sanitize: dict[str, Any] | None


class Ttl(TypedDict):
    """A branch's idle TTL for garbage collection (``branchdb ttl --json``)."""

    branch: str
    ttl: int | None  # seconds; None: never collected for being idle
    ttl_source: str  # "branch" (its own) or "project" (branches.ttl)
    idle_after: str | None
    protected: bool


class BranchStatus(Branch):
    """A branch database with live facts (``status --json``)."""

    exists: bool
    size_bytes: int
    pending: list[str]
    migrations_applied: int  # per the tool's ledger when readable, else the record
    applied: list[str] | None  # per the tool's ledger; None: not readable
    ledger: str | None  # the tool's ledger in one line
    command: str | None  # format "command": the command that migrates
    problem: str | None  # why pending could not be computed, secrets redacted
    protected: bool
    ttl: Ttl


class GcCandidate(TypedDict):
    """A database garbage collection may delete, why, and when."""

    branch: str | None  # None for an orphan (a database without a record)
    database: str
    policy: str  # merged, closed, deleted, idle, over-quota, orphan
    evidence: str
    marked_at: str | None  # when a run first saw it collectable
    due_at: str | None  # deletion allowed from then on
    deleted: bool  # by this run
    freed_bytes: int


class GcReasonTotals(TypedDict):
    databases: int
    bytes: int


class GcTotals(TypedDict):
    """The project's persistent GC counters."""

    collected_databases: int
    collected_bytes: int
    by_reason: dict[str, GcReasonTotals]
    runs: int
    last_run_at: str | None


class Gc(TypedDict):
    """A garbage-collection run, or its plan (``gc --json``, ``/gc``)."""

    dry_run: bool
    candidates: list[GcCandidate]
    missing: list[str]  # branches whose record has no database any more
    active: list[str]  # branches whose server database was seen used
    freed_bytes: int
    totals: GcTotals


class AuditEntry(TypedDict):
    """One line of the audit log (``GET .../audit``), newest first."""

    id: int
    at: float  # unix time
    project: str
    branch: str  # "" for snapshot actions
    action: str
    actor: str  # token:<id>, github:<delivery>, cli:<user>, scheduler
    reason: str  # why, as the actor said
    detail: str  # what was done


class Finding(TypedDict):
    """A column that looks personal or secret (``snapshot check --json``)."""

    column: str  # TABLE.COLUMN
    category: str
    reason: str
    suggestion: str  # a rule for the rules file's [tables.TABLE] section
    has_rule: bool | None  # None when no rules file was given


class SchemaChange(TypedDict):
    """One schema object added, removed or changed from the base to the branch."""

    kind: str  # table, column, index, foreign key, primary key, unique, view, …
    change: str  # "added" | "removed" | "changed"
    name: str  # qualified: public.users.email
    before: str | None  # its definition in the base (None when added)
    after: str | None  # its definition in the branch (None when removed)


class SchemaDiff(TypedDict):
    """The schema difference between two databases (never their data)."""

    dialect: str  # "postgres" | "sqlite"
    base: str  # "branch main", "snapshot prod@3", "the migrations of X"
    head: str
    changes: list[SchemaChange]
    #: statements turning the base's schema into the branch's ("" when equal)
    sql: str | None
    ignored: list[str]  # what is not compared, and why


class LintFinding(TypedDict):
    """One problem a linter found in one migration file."""

    path: str  # the file, relative to the repository (or project) root
    migration: str
    line: int  # 1-based
    end_line: int
    rule: str  # squawk's rule name, or sqlite-*
    level: str  # "warning" | "error"
    message: str
    help: str | None


class SchemaLint(TypedDict):
    """The lint of the branch's migrations that the base has not applied."""

    base: str
    head: str
    linter: str  # "squawk" | "branchdb-sqlite" | "none"
    linted: list[str]  # the migrations linted
    findings: list[LintFinding]
    skipped: str | None  # why nothing was linted, else None


class SchemaReview(TypedDict):
    """``branchdb diff --json``, ``GET .../branches/{branch}/diff``."""

    diff: SchemaDiff
    lint: SchemaLint | None
