"""One exception tree for branchdb.

::

    BranchdbError                    every error branchdb raises on purpose
    ├── ConfigError                  branchdb.toml missing, unknown key, bad value
    ├── GitError                     not a repository, detached HEAD, unreadable ref
    │   └── RepositoryUnavailable    the daemon could not fetch its repository (503)
    ├── NotFound                     no such branch database / snapshot
    ├── Refused                      a safe refusal: protected branch, foreign object,
    │                                confirmation needed, lock busy
    │   └── QuotaExceeded            the project is at branches.max_branches
    ├── BackendError                 the database server or file system said no
    │   ├── DatabaseError            a statement failed: the server's own message
    │   └── ServerUnavailable        the database server cannot be reached (503)
    └── MigrationError               anything about migrations
        ├── MigrationFailed          a statement failed; rolled back; names file + stmt
        ├── MigrationEdited          an applied migration's file changed
        └── MigrationDrift           the ledger and the branch's files disagree

The HTTP edge adds four more, defined where they are raised (daemon/api/deps.py):
Unauthorized (401), Forbidden (403), BadRequest (400), PayloadTooLarge (413).

Messages say what happened and what to do next. They never contain secrets: the edges
(CLI, API) redact URLs once more with :func:`redact` before showing anything.
"""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """Replace the password of each ``scheme://user:password@`` in *text* by ***."""
    return _URL_PASSWORD.sub(r"\g<pre>***@", text)


class BranchdbError(Exception):
    """Base of every error branchdb raises on purpose; ``str()`` is the user message."""

    #: HTTP status the API answers with; the CLI exits with ``exit_code``.
    http_status = 400
    exit_code = 1


class ConfigError(BranchdbError):
    """The configuration is missing or invalid; the message names the file and key."""

    exit_code = 2


class GitError(BranchdbError):
    """git could not tell the branch, or the directory is not a repository."""

    exit_code = 2


class RepositoryUnavailable(GitError):
    """The repository could not be fetched (unreachable, too slow): try again."""

    http_status = 503


class NotFound(BranchdbError):
    http_status = 404


class Refused(BranchdbError):
    """branchdb refused to do something unsafe; nothing was changed."""

    http_status = 409


class QuotaExceeded(Refused):
    """Creating one more branch database would pass ``branches.max_branches``."""

    http_status = 409


class BackendError(BranchdbError):
    """The database server or file system failed; nothing half-made is left behind."""

    http_status = 502


class DatabaseError(BackendError):
    """A statement failed; ``str()`` is the database's own message (no secrets)."""


class ServerUnavailable(BackendError):
    """The database server cannot be reached (down, refusing, not answering)."""

    http_status = 503


class MigrationError(BranchdbError):
    http_status = 422


class MigrationFailed(MigrationError):
    """A migration statement failed and its transaction was rolled back."""

    def __init__(
        self,
        file: str,
        statement_no: int,
        statement: str,
        db_error: str,
        *,
        rolled_back: bool = True,
    ) -> None:
        self.file = file
        self.statement_no = statement_no
        self.statement = statement
        self.db_error = db_error
        self.rolled_back = rolled_back
        head = " ".join(statement.split())
        if len(head) > 120:
            head = head[:117] + "..."
        tail = (
            "the migration was rolled back; the database is as it was before it"
            if rolled_back
            else "this statement cannot run in a transaction: statements before it "
            "in this migration stay applied"
        )
        super().__init__(
            f"migration {file} failed at statement {statement_no} ({head}): "
            f"{db_error.strip()} — {tail}"
        )


class MigrationEdited(MigrationError):
    """An applied migration's file no longer matches what was applied."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        names = ", ".join(files)
        super().__init__(
            f"applied migration changed since it was applied: {names}. Restore the "
            "file, or rebuild this branch's database with `branchdb reset` (its data "
            "is recreated from its source)"
        )


class Divergence:
    """One way the branch database's ledger disagrees with the branch's files."""

    # A plain class, not a NamedTuple: this module is on the hook's fast path and
    # must not import typing.
    __slots__ = ("detail", "kind", "migration")

    def __init__(self, kind: str, migration: str, detail: str) -> None:
        self.kind = kind  # "missing" (applied, not on branch) | "out-of-order"
        self.migration = migration
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.migration}: {self.detail}"

    def __repr__(self) -> str:
        return f"Divergence({self.kind!r}, {self.migration!r}, {self.detail!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Divergence) and (
            (self.kind, self.migration, self.detail)
            == (other.kind, other.migration, other.detail)
        )

    __hash__ = None  # type: ignore[assignment]


class MigrationDrift(MigrationError):
    """The ledger holds migrations the branch no longer has, or in another order."""

    #: The database's state conflicts with the request (a reset resolves it).
    http_status = 409

    def __init__(self, items: list[Divergence]) -> None:
        self.items = items
        lines = "; ".join(str(i) for i in items)
        super().__init__(
            f"migrations drifted from this branch's files ({lines}). Rebuild with "
            "`branchdb up --reset-on-drift` (or `branchdb reset`), or set "
            "[database] reset_on_drift = true"
        )


class SnapshotAhead(MigrationError):
    """A snapshot's ledger records migrations that the branch does not have.

    The team's tool migrated the snapshot's source (production) further than the
    branch's files go; rebuilding from the same snapshot cannot help.
    """

    http_status = 409

    def __init__(self, snapshot: str, drift: list[Divergence], advice: str) -> None:
        self.snapshot = snapshot
        self.items = drift
        names = ", ".join(i.migration for i in drift)
        super().__init__(
            f"snapshot {snapshot} is ahead of this branch: its migration ledger has "
            f"{names}, which this branch does not. {advice}"
        )
