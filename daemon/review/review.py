"""The engine entry points of schema review, over a :class:`ProjectContext`.

- :func:`diff`: the schema difference between two real databases — a branch's and
  the default branch's (or another branch's, or a snapshot's: a snapshot is sealed,
  so a scratch clone of it is read and dropped);
- :func:`drift`: a branch's database against what its migrations produce (applied
  to a scratch database made like the branch's: fresh or from its snapshot) — what
  ``up --reset-on-drift`` would throw away;
- :func:`lint`: the branch's migrations the base has not applied, linted
  (:mod:`.lint`);
- :func:`review`: diff and lint together (the CLI, the API, pull requests).

Read-only on every database it did not make: catalogs are read over the branch's
own credentials, in read-only transactions on PostgreSQL; no row is ever read.
Scratch databases are made through the backend (marked like every database it
makes), under their own lock, and dropped before returning.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.context import Progress, ProjectContext, no_progress
from branchdb.daemon.core.errors import ConfigError, NotFound, Refused
from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
from branchdb.daemon.migrations import get_format
from branchdb.daemon.migrations import project as project_migrations
from branchdb.daemon.migrations.base import read_text
from branchdb.daemon.review import lint as linting
from branchdb.daemon.review.model import SchemaDiff, sort_key

if TYPE_CHECKING:
    from branchdb.daemon.migrations.base import MigrationFiles

#: The prefix of scratch branches' names (never a user's: git refuses neither, but
#: the engine's records never hold one; GC treats a leftover as an orphan).
SCRATCH = "branchdb-scratch/"


@dataclass(frozen=True)
class LintResult:
    """Findings on the migrations *head* has and *base* has not applied.

    ``linted``: those migrations' names; ``skipped``: why nothing could be linted
    (``format = "command"``: branchdb never sees the SQL), else None.
    """

    base: str
    head: str
    linter: str  # "squawk" | "branchdb-sqlite" | "none"
    linted: tuple[str, ...]
    findings: tuple[linting.Finding, ...]
    skipped: str | None = None


@dataclass(frozen=True)
class Review:
    diff: SchemaDiff
    lint: LintResult | None = field(default=None)


# ----------------------------------------------------------------- targets
def _snapshot(ctx: ProjectContext, ref: str) -> SnapshotRecord | None:
    name, at, version = ref.removeprefix("snapshot:").rpartition("@")
    if not at or not version.isdigit():
        if not ref.startswith("snapshot:"):
            return None
        name, version = ref.removeprefix("snapshot:"), ""
    found = ctx.store.list_snapshots(ctx.project, name)
    if version:
        found = [s for s in found if s.version == int(version)]
    if not found:
        if ref.startswith("snapshot:"):
            raise NotFound(f"snapshot {ref.removeprefix('snapshot:')!r} does not exist")
        return None
    return found[-1]


def resolve(ctx: ProjectContext, ref: str | None) -> BranchRecord | SnapshotRecord:
    """``--against``: a branch with a database (default: the default branch), or a
    snapshot ``NAME@N`` (``snapshot:NAME`` for its newest version). NotFound else."""
    ref = ref or ctx.config.project.default_branch
    snap = _snapshot(ctx, ref)
    if snap is not None:
        return snap
    try:
        return ctx.get(ref)
    except NotFound:
        raise NotFound(
            f"branch {ref!r} has no database to compare with; run `branchdb up "
            f"{ref}` first (or name a snapshot as NAME@N)"
        ) from None


def _label(target: BranchRecord | SnapshotRecord) -> str:
    if isinstance(target, SnapshotRecord):
        return f"snapshot {target.ref}"
    return f"branch {target.branch}"


# ----------------------------------------------------------------- reading
@contextmanager
def scratch(
    ctx: ProjectContext,
    snapshot: SnapshotRecord | None,
    progress: Progress = no_progress,
) -> Iterator[BranchRecord]:
    """A database made for reading and dropped on exit (fresh, or a clone of
    *snapshot*); its record is never stored."""
    branch = SCRATCH + secrets.token_hex(5)
    database = ctx.backend.database_name(branch)
    with ctx.lock(branch):
        progress(f"making scratch database {database}")
        info = ctx.backend.create(database, branch=branch, snapshot=snapshot, info={})
        now = ctx.clock()
        rec = BranchRecord(
            project=ctx.project,
            branch=branch,
            database=database,
            backend=ctx.config.database.backend,
            source="fresh" if snapshot is None else f"snapshot:{snapshot.ref}",
            status="ready",
            created_at=now,
            last_used_at=now,
            url=str(info.get("url", "")),
            info=info,
        )
        try:
            yield rec
        finally:
            ctx.backend.drop(database, info)


@contextmanager
def _schema(ctx: ProjectContext, rec: BranchRecord) -> Iterator[Any]:
    """*rec*'s database schema: a ``results`` inspector (PostgreSQL) or a
    :class:`~.sqlite_schema.Schema`; and its server's major version."""
    if ctx.backend.dialect == "postgres":
        from branchdb.daemon.backends.pg_session import connect
        from branchdb.daemon.review import pg_schema

        conn = connect(rec.url, what="branch database")
        try:
            # Belt and braces: nothing here writes, and nothing can.
            conn.execute("SET default_transaction_read_only = on")
            yield pg_schema.inspect(conn), conn.info.server_version // 10000
        finally:
            conn.close()
        return
    from branchdb.daemon.review import sqlite_schema

    session = ctx.backend.connect(rec.database, rec.info)
    try:
        yield sqlite_schema.read(session), None
    finally:
        session.close()


@contextmanager
def _opened(
    ctx: ProjectContext, target: BranchRecord | SnapshotRecord, progress: Progress
) -> Iterator[Any]:
    if isinstance(target, SnapshotRecord):
        with scratch(ctx, target, progress) as rec, _schema(ctx, rec) as s:
            yield s
    else:
        with _schema(ctx, target) as s:
            yield s


def _compare(
    ctx: ProjectContext, base: Any, head: Any, base_label: str, head_label: str
) -> SchemaDiff:
    if ctx.backend.dialect == "postgres":
        from branchdb.daemon.review import pg_schema

        changes = pg_schema.changes(base, head)
        sql: str | None = pg_schema.sql(base, head) if changes else ""
        ignored: tuple[str, ...] = ("privileges (each branch has its own role)",)
        dialect = "postgres"
    else:
        from branchdb.daemon.review import sqlite_schema

        changes = sqlite_schema.changes(base, head)
        sql = sqlite_schema.sql(base, head) if changes else ""
        ignored, dialect = (), "sqlite"
    return SchemaDiff(
        dialect=dialect,
        base=base_label,
        head=head_label,
        changes=tuple(sorted(changes, key=sort_key)),
        sql=sql,
        ignored=ignored,
    )


# ------------------------------------------------------------ entry points
def diff(
    ctx: ProjectContext,
    branch: str,
    against: str | None = None,
    *,
    progress: Progress = no_progress,
) -> SchemaDiff:
    """The schema difference from *against* (default: the default branch's
    database) to *branch*'s. Raises NotFound (either has no database)."""
    head = ctx.get(branch)
    base = resolve(ctx, against)
    if isinstance(base, BranchRecord) and base.branch == head.branch:
        raise Refused(f"{branch!r} compared with itself; pass --against")
    with _opened(ctx, base, progress) as (b, _), _opened(ctx, head, progress) as (h, _):
        return _compare(ctx, b, h, _label(base), _label(head))


def drift(
    ctx: ProjectContext,
    branch: str,
    *,
    files: MigrationFiles | None = None,
    progress: Progress = no_progress,
) -> SchemaDiff:
    """*branch*'s database against what its migrations (*files*, default the
    directory on disk) produce on a scratch database made like the branch's. A
    ``+`` is what only the database has: what ``up --reset-on-drift`` throws away."""
    rec = ctx.get(branch)
    source = project_migrations.source(ctx.config, files)
    snapshot = (
        _snapshot(ctx, rec.source) if rec.source.startswith("snapshot:") else None
    )
    with scratch(ctx, snapshot, progress) as tmp:
        session = ctx.backend.connect(tmp.database, tmp.info)
        try:
            project_migrations.run(
                ctx.config, tmp, session, source, dry_run=False, progress=progress
            )
        finally:
            session.close()
        with _schema(ctx, tmp) as (b, _), _schema(ctx, rec) as (h, _):
            return _compare(
                ctx, b, h, f"the migrations of {branch}", f"the database of {branch}"
            )


def _where(ctx: ProjectContext, files: MigrationFiles) -> str:
    """The migrations directory as annotations name it: repository-relative for a
    git tree, else relative to the project root."""
    sub = getattr(files, "subdir", None)
    if isinstance(sub, str):
        return sub
    root = getattr(files, "root", None)
    if isinstance(root, Path):
        try:
            return root.resolve().relative_to(ctx.config.root.resolve()).as_posix()
        except ValueError:
            return root.name
    return ""


def lint(
    ctx: ProjectContext,
    branch: str,
    against: str | None = None,
    *,
    files: MigrationFiles | None = None,
) -> LintResult:
    """Lint *branch*'s migrations (*files*, default the directory on disk) that
    the database of *against* (default: the default branch) has not applied.

    Raises NotFound (*against* has no database), ConfigError (squawk missing or
    failing, migrations unreadable).
    """
    base_ref = against or ctx.config.project.default_branch
    base = resolve(ctx, base_ref)
    applied = set(base.applied) if isinstance(base, BranchRecord) else set()
    label = _label(base)
    source = project_migrations.source(ctx.config, files)
    dialect = ctx.backend.dialect
    linter = "squawk" if dialect == "postgres" else "branchdb-sqlite"
    if source is None:
        return LintResult(label, f"branch {branch}", linter, (), ())
    name, tree = source
    fmt = get_format(name)
    if fmt.runs_command:
        return LintResult(
            label,
            f"branch {branch}",
            "none",
            (),
            (),
            skipped='format = "command": the team\'s tool applies the migrations; '
            "branchdb does not see their SQL",
        )
    mine = [m for m in fmt.load(tree) if m.key not in applied]
    where = _where(ctx, tree)
    pg_version = None
    if dialect == "postgres" and mine and isinstance(base, BranchRecord):
        with _schema(ctx, base) as (_, version):
            pg_version = version
    findings: list[linting.Finding] = []
    for m in mine:
        path = f"{where}/{m.name}" if where else m.name
        try:
            text = read_text(tree, m.name)
        except Exception:  # a migration assembled from several files
            text = m.sql
        if dialect == "postgres":
            findings += linting.squawk(
                m, path, text, pg_version=pg_version, cwd=ctx.config.root
            )
        else:
            findings += linting.sqlite(m, path, text)
    return LintResult(
        label, f"branch {branch}", linter, tuple(m.name for m in mine), tuple(findings)
    )


def review(
    ctx: ProjectContext,
    branch: str,
    against: str | None = None,
    *,
    files: MigrationFiles | None = None,
    progress: Progress = no_progress,
) -> Review:
    """:func:`diff` and :func:`lint` of *branch* against *against*."""
    d = diff(ctx, branch, against, progress=progress)
    try:
        found = lint(ctx, branch, against, files=files)
    except ConfigError as e:
        found = LintResult(d.base, d.head, "none", (), (), skipped=str(e))
    return Review(d, found)
