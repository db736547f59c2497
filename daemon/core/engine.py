"""The one orchestrator: decides what happens to a branch's database.

Every CLI command, API route and scheduled job is a thin caller of a method here. The
engine never prints: it reports progress through an optional callback and answers with
the frozen dataclasses of :mod:`.results` (or the store's records). Mutating methods
take a per-branch lock (an ``flock`` on a file under the data directory, plus the
state store's lock when the store is shared by replicas), so two ``branchdb up`` for
one branch end with one database. Every create, reset, delete, migrate and snapshot
create/delete is written to the audit log, attributed to the actor of
:mod:`branchdb.daemon.core.audit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from branchdb.daemon.backends import STAT_EXISTS
from branchdb.daemon.core import branchname, naming, quota
from branchdb.daemon.core.context import Progress, ProjectContext, no_progress
from branchdb.daemon.core.errors import (
    ConfigError,
    DatabaseError,
    MigrationDrift,
    NotFound,
    Refused,
    SnapshotAhead,
    redact,
)
from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
from branchdb.daemon.core.results import (
    MigrateResult,
    SnapshotCheck,
    Status,
    UpResult,
    Warmed,
)
from branchdb.daemon.migrations import files as migration_files
from branchdb.daemon.migrations import project as project_migrations
from branchdb.daemon.migrations.base import MigrationFiles

if TYPE_CHECKING:
    from branchdb.daemon.backends.base import Sleeper
    from branchdb.daemon.core.dbsession import DbSession
    from branchdb.daemon.sanitize.rules import Rules

__all__ = ["Engine", "MigrateResult", "Progress", "SnapshotCheck", "Status", "UpResult"]


class Engine(ProjectContext):
    """Branch databases of one project (one ``branchdb.toml``): the branch verbs over
    a :class:`~.context.ProjectContext`."""

    def database_name(self, branch: str) -> str:
        """The database name *branch* gets on this project's backend."""
        return self.backend.database_name(branch)

    # ------------------------------------------------------------- migrations
    def migration_source(
        self, files: MigrationFiles | None = None
    ) -> tuple[str, MigrationFiles] | None:
        """The format name and files of this project's migrations, or None."""
        return project_migrations.source(self.config, files)

    def fingerprint(self, files: MigrationFiles | None = None) -> str:
        """Hash of everything that decides what ``migrate`` would do (cheap)."""
        return project_migrations.fingerprint(self.config, files)

    # ---------------------------------------------------------------- sources
    def resolve_snapshot(self, ref: str) -> SnapshotRecord:
        """``NAME`` (latest version) or ``NAME@N`` → the snapshot record."""
        name, _, version = ref.partition("@")
        versions = self.store.list_snapshots(self.project, name)
        if version:
            versions = [s for s in versions if str(s.version) == version]
        if not versions:
            raise NotFound(
                f"snapshot {ref!r} does not exist; create it with "
                f"`branchdb snapshot create {name} --source ...`"
            )
        return versions[-1]

    def _source_for(
        self, fresh: bool, from_snapshot: str | None
    ) -> SnapshotRecord | None:
        if fresh:
            return None
        ref = from_snapshot or self.config.database.from_snapshot
        return self.resolve_snapshot(ref) if ref else None

    # --------------------------------------------------------------------- up
    def up(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        reset_on_drift: bool | None = None,
        lock_timeout: float | None = None,
        progress: Progress = no_progress,
        files: MigrationFiles | None = None,
        confirm_exists: bool = False,
    ) -> UpResult:
        """Make sure *branch* has a database with all its migrations applied.

        *files*: the migrations to apply instead of the project's directory on disk
        (a git tree at a commit, for webhooks).

        Idempotent: when the database exists and the migrations did not change since
        they were last applied, this only refreshes ``last_used`` (the hook's fast
        path: no database connection, no heavy import). On backends whose existence
        check is a server round trip the fast path trusts the record, unless
        *confirm_exists* (the daemon: it hands the URL to someone else); a database
        found missing is created again. Raises MigrationFailed (the failing
        migration rolled back, the database still usable), MigrationEdited,
        MigrationDrift (unless *reset_on_drift*), ServerUnavailable.
        """
        branchname.validate(branch)
        if fresh and from_snapshot:
            raise Refused("choose one of --fresh and --from")
        fp = self.fingerprint(files)
        now = self.clock()
        rec = self.store.get_branch(self.project, branch)
        if (
            rec is not None
            and rec.status == "ready"
            and rec.fingerprint == self._with_ledger(rec, fp)
            and not (fresh or from_snapshot)
            and (
                self.backend.exists(rec.database)
                if confirm_exists
                else self._cheap_exists(rec)
            )
        ):
            self.store.touch_branch(self.project, branch, now)
            rec.last_used_at = max(rec.last_used_at, now)
            self.wake(rec)
            return UpResult(
                record=self._hand_out(rec), up_to_date=True, running=self._awake()
            )

        source = self.migration_source(files)
        evicted: list[str] = []  # by the quota admission of a create
        with self.lock(branch, timeout=lock_timeout, progress=progress):
            rec = self.store.get_branch(self.project, branch)
            created = False
            if (
                rec is not None
                and rec.status == "ready"
                and self.backend.exists(rec.database)
            ):
                if fresh or from_snapshot:
                    wanted = self._source_for(fresh, from_snapshot)
                    want = "fresh" if wanted is None else f"snapshot:{wanted.ref}"
                    if want != rec.source:
                        raise Refused(
                            f"{branch!r} already has a database (from {rec.source}); "
                            f"run `branchdb reset {branch}"
                            + (" --fresh`" if fresh else f" --from {from_snapshot}`")
                            + " to rebuild it"
                        )
            else:
                rec, evicted = self._create(branch, rec, fresh, from_snapshot, progress)
                created = True
            do_reset = (
                self.config.database.reset_on_drift
                if reset_on_drift is None
                else reset_on_drift
            )
            ran: dict[str, Any] = {}
            try:
                applied = self._migrate_locked(rec, source, fp, progress, ran)
            except BaseException as e:
                if created:  # a create is done only when its migrations are
                    self._abandon_create(rec, e)
                if not isinstance(e, MigrationDrift) or not do_reset:
                    raise
                drift = e
                progress(f"migrations drifted ({drift.items[0]}); rebuilding")
                rec = self._reset_locked(rec, self._record_source(rec), progress)
                self.audit("reset", branch, f"migrations drifted: {drift.items[0]}")
                try:
                    applied = self._migrate_locked(rec, source, fp, progress, ran)
                except MigrationDrift as again:
                    raise self._snapshot_ahead(rec, again) from None
                self._audit_applied(branch, applied)
                return UpResult(
                    record=self._hand_out(rec, locked=True),
                    created=created,
                    reset=True,
                    applied=tuple(applied),
                    evicted=tuple(evicted),
                    command=ran or None,
                    running=self._awake(),
                )
            self._audit_applied(branch, applied)
            self.wake(rec)
            return UpResult(
                record=self._hand_out(rec, locked=True),
                created=created,
                applied=tuple(applied),
                evicted=tuple(evicted),
                command=ran or None,
                running=self._awake(),
            )

    def _awake(self) -> bool | None:
        """``UpResult.running`` after an up or reset (which start a stopped
        database): True where the backend scales to zero, else None."""
        return True if self.backend.scales_to_zero else None

    def _abandon_create(self, rec: BranchRecord, error: BaseException) -> None:
        """Undo a create whose first migration run failed, then say why.

        The database and its record go (never a ``ready`` branch that cannot be
        brought up); the next ``up`` creates it again. Drift right after a clone
        means the snapshot is ahead of the branch: raises SnapshotAhead.
        """
        try:
            self.drop_branch(rec, detail=f"create failed: {redact(str(error))[:200]}")
        except Exception:  # the original error matters more; GC finds the rest
            rec.status = "creating"  # unsealed: rebuilt, never reused
            self.store.put_branch(rec)
        if isinstance(error, MigrationDrift):
            raise self._snapshot_ahead(rec, error) from None

    def _snapshot_ahead(self, rec: BranchRecord, drift: MigrationDrift) -> Exception:
        """SnapshotAhead when *rec* was just cloned from a snapshot, else *drift*."""
        if not rec.source.startswith("snapshot:"):
            return drift
        ref = rec.source.removeprefix("snapshot:")
        name, _, version = ref.partition("@")
        older = [
            s.ref
            for s in self.store.list_snapshots(self.project, name)
            if version and s.version < int(version)
        ]
        advice = (
            f"The team's tool migrated its source further than this branch's files "
            f"go. Rebase this branch onto {self.config.project.default_branch} to "
            "get those migrations"
            + (
                f", or clone an older version: `branchdb up --from {older[-1]}`."
                if older
                else " (there is no older version of this snapshot)."
            )
        )
        return SnapshotAhead(ref, drift.items, advice)

    def _audit_applied(
        self, branch: str, applied: list[str], always: bool = False
    ) -> None:
        if applied or always:
            what = ", ".join(applied) if applied else "nothing pending"
            self.audit("migrate", branch, f"applied: {what}")

    def _with_ledger(
        self, rec: BranchRecord, fp: str, session: DbSession | None = None
    ) -> str:
        """*fp* plus the fingerprint of the database's ledger where reading it is
        cheap (a local SQLite file: ~1 ms; PostgreSQL: one query over the standard
        library's sockets, ~10 ms, no psycopg), so that ``up`` and the hook notice a
        ledger changed by the team's tool; else *fp* alone. An open PostgreSQL
        *session* is asked instead: no second connection (each one counts as
        activity for GC)."""
        tables = self.config.migrations.ledger_tables
        if rec.url.startswith(("postgres://", "postgresql://")):
            from branchdb.daemon.migrations import pg_ledger

            if not pg_ledger.supported(rec.url):
                return fp  # TLS or a socket: the hook cannot read it either
            if session is not None and session.dialect == "postgres":
                try:
                    rows = session.execute(pg_ledger.fingerprint_query(tables))
                except DatabaseError:
                    return fp
                pg = str(rows[0][0])[:32] if rows and rows[0][0] else None
            else:
                pg = pg_ledger.ledger_fingerprint(rec.url, tables)
            return migration_files.with_ledger(fp, pg)
        if self.config.database.backend not in STAT_EXISTS:
            return fp
        import sqlite3

        from branchdb.daemon.backends.libsql_layout import libsql_path

        path = libsql_path(str(self.config.data_dir), rec.database)
        try:
            ledger = migration_files.sqlite_ledger_fingerprint(path, tables)
        except (OSError, sqlite3.Error):
            return migration_files.with_ledger(fp, "unreadable")
        return migration_files.with_ledger(fp, ledger)

    def _cheap_exists(self, rec: BranchRecord) -> bool:
        # Only backends whose existence check is a stat() are asked on the fast
        # path; a server round-trip (or just importing psycopg, ~120 ms) would cost
        # more than the hook's whole budget.
        if self.config.database.backend in STAT_EXISTS:
            return self.backend.exists(rec.database)
        return True

    def _create(
        self,
        branch: str,
        old: BranchRecord | None,
        fresh: bool,
        from_snapshot: str | None,
        progress: Progress,
    ) -> tuple[BranchRecord, list[str]]:
        """Build *branch*'s database; (its ready record, branches evicted for it)."""
        database = self.database_name(branch)
        other = self.store.branch_by_database(self.config.database.backend, database)
        if other is not None and (other.project, other.branch) != (
            self.project,
            branch,
        ):
            raise Refused(
                f"database name {database} is already used by branch {other.branch!r}"
            )
        snapshot = self._source_for(fresh, from_snapshot)
        now = self.clock()
        rec = BranchRecord(
            project=self.project,
            branch=branch,
            database=database,
            backend=self.config.database.backend,
            source="fresh" if snapshot is None else f"snapshot:{snapshot.ref}",
            status="creating",
            created_at=now,
            last_used_at=now,
            info=old.info if old else {},
            # The merge rule: a tip reachable from these has no work of its own.
            default_heads=self.default_heads(),
        )
        with quota.admission(self, branch, progress) as evicted:
            if self.backend.exists(database):
                # A database with our marker but no ready record: a crash between
                # create and record. It is ours; rebuild it.
                self.backend.drop(database, rec.info)
            self.store.put_branch(rec)
        progress(
            f"creating {database} "
            + ("(fresh)" if snapshot is None else f"from snapshot {snapshot.ref}")
        )
        try:
            with self.timed("create" if snapshot is None else "clone"):
                rec.info = self.backend.create(
                    database, branch=branch, snapshot=snapshot, info=rec.info
                )
        except BaseException:
            self.store.delete_branch(self.project, branch)
            raise
        rec.url = str(rec.info.get("url", ""))
        rec.status = "ready"
        self.store.put_branch(rec)
        self.audit("create", branch, f"{database} from {rec.source}")
        return rec, evicted

    def _migrate_locked(
        self,
        rec: BranchRecord,
        source: tuple[str, MigrationFiles] | None,
        fp: str,
        progress: Progress,
        ran: dict[str, Any] | None = None,
    ) -> list[str]:
        if source is None:  # nothing to apply: do not even open the database
            rec.fingerprint = self._with_ledger(rec, fp)
            rec.last_used_at = max(rec.last_used_at, self.clock())
            self.store.put_branch(rec)
            return []
        session = self.backend.connect(rec.database, rec.info)
        try:
            try:
                with self.timed("migrate"):
                    done, _, applied = project_migrations.run(
                        self.config,
                        rec,
                        session,
                        source,
                        dry_run=False,
                        progress=progress,
                        outcome=ran,
                    )
            except BaseException:
                # Whatever did apply before the failure is in the ledger; forget
                # the fingerprint so the next `up` plans again.
                rec.fingerprint = ""
                self.store.put_branch(rec)
                raise
            fingerprint = self._with_ledger(rec, fp, session)
        finally:
            session.close()
        rec.applied = applied
        rec.fingerprint = fingerprint
        rec.last_used_at = max(rec.last_used_at, self.clock())
        self.store.put_branch(rec)
        return [m.name for m in done]

    # ------------------------------------------------------- other verbs
    def url(self, branch: str) -> str:
        """The branch's connection URL; counts as a use (refreshes last-used)."""
        return self.use(branch).url

    def use(self, branch: str) -> BranchRecord:
        """The branch's record, counted as a use (refreshes last-used)."""
        rec = self.get(branch)
        now = self.clock()
        self.store.touch_branch(self.project, branch, now)
        rec.last_used_at = max(rec.last_used_at, now)
        self.wake(rec)
        return self._hand_out(rec)

    def listed(self) -> list[BranchRecord]:
        """Every branch, as a list hands them out (``ls``, ``GET …/branches``):
        with credentials re-signed where they are past half their lifetime, so a
        script reading tokens from the list gets working ones. Not a use."""
        return [self._hand_out(rec) for rec in self.list_branches()]

    def _hand_out(self, rec: BranchRecord, *, locked: bool = False) -> BranchRecord:
        """*rec*, with credentials fit to be handed out: a backend whose tokens
        expire (optional ``credentials_stale``/``refresh_credentials``) re-signs
        one with less than half its lifetime left, and the record keeps it.
        Without *locked* the branch lock is tried without waiting; whoever holds
        it hands out fresh credentials itself, so a busy lock just returns
        *rec*."""
        stale = getattr(self.backend, "credentials_stale", None)
        if stale is None or rec.status != "ready" or not stale(rec.database, rec.info):
            return rec
        if locked:
            refresh = self.backend.refresh_credentials  # type: ignore[attr-defined]
            rec.info = refresh(rec.database, rec.info)
            self.store.put_branch(rec)
            return rec
        try:
            with self.lock(rec.branch, timeout=0):
                return self._hand_out(self.get(rec.branch), locked=True)
        except Refused:
            return rec

    def wake(self, rec: BranchRecord) -> None:
        """Start *rec*'s database if its backend stopped it for being idle
        (``scales_to_zero``); returns once it takes connections."""
        if self.backend.scales_to_zero and rec.status == "ready":
            cast("Sleeper", self.backend).wake(rec.database, rec.info)

    def stop_idle(self) -> list[str]:
        """Stop the branches idle for ``[docker] stop_after`` (the scheduler runs
        this); the branches stopped. Nothing on backends that never stop one."""
        after = self.config.docker.stop_after
        if not self.backend.scales_to_zero or after is None:
            return []
        stopped = cast("Sleeper", self.backend).stop_idle(after, self.clock())
        out = []
        for database in stopped:
            rec = self.store.branch_by_database(self.backend.name, database)
            branch = rec.branch if rec else database
            self.audit("stop", branch, f"{database} idle for {after}s: stopped")
            out.append(branch)
        return out

    def running(self, rec: BranchRecord) -> bool | None:
        """Whether *rec*'s database is running now; None if its backend never
        stops one (read-only)."""
        if not self.backend.scales_to_zero:
            return None
        return cast("Sleeper", self.backend).state(rec.database) == "running"

    def pull_request_closed(self, branch: str, *, merged: bool, reference: str) -> None:
        """Record that *branch*'s pull request was closed (a hint for GC).

        Idempotent; :meth:`pull_request_opened` clears it. The database itself is
        left to garbage collection and its grace period.
        """
        self.store.mark_closed(self.project, branch, merged, self.clock(), reference)

    def pull_request_opened(self, branch: str, *, reference: str = "") -> None:
        """Record that *branch* has an open pull request (GC never judges it
        "deleted"), forgetting a closed mark (reopened). Idempotent."""
        self.store.mark_open(self.project, branch, self.clock(), reference)

    def migrate(
        self,
        branch: str,
        *,
        dry_run: bool = False,
        progress: Progress = no_progress,
        files: MigrationFiles | None = None,
    ) -> MigrateResult:
        """Apply the branch's pending migrations (or list them with *dry_run*).

        *files*: the migrations instead of the directory on disk (as for ``up``).
        """
        rec = self.get(branch)
        source = self.migration_source(files)
        if not dry_run:
            with self.lock(branch, progress=progress):
                rec = self.get(branch)
                applied = self._migrate_locked(
                    rec, source, self.fingerprint(files), progress
                )
                self._audit_applied(branch, applied, always=True)
            return MigrateResult(record=rec, applied=tuple(applied))
        session = self.backend.connect(rec.database, rec.info)
        try:
            _, pending, _ = project_migrations.run(
                self.config, rec, session, source, dry_run=True, progress=progress
            )
        finally:
            session.close()
        return MigrateResult(
            record=rec, pending=tuple(m.name for m in pending), dry_run=True
        )

    def status(self, branch: str, *, files: MigrationFiles | None = None) -> Status:
        """Record plus live facts: whether the database exists, its size, pending
        migrations. Read-only; a failure to plan is reported in ``problem``, not
        raised (status must always answer). Raises NotFound."""
        rec = self.get(branch)
        command = (
            self.config.migrations.command
            if self.config.migrations.format == "command"
            else None
        )
        if not self.backend.exists(rec.database):
            return Status(record=rec, exists=False, command=command)
        size = self.backend.size_bytes(rec.database)
        running = self.running(rec)
        if running is False:  # read-only: status never starts a stopped branch
            return Status(
                rec,
                exists=True,
                size_bytes=size,
                running=False,
                problem="stopped while idle ([docker] stop_after); `branchdb up` "
                "or `branchdb url` starts it",
                command=command,
            )
        try:
            session = self.backend.connect(rec.database, rec.info)
            try:
                applied, pending, ledger = project_migrations.inspect(
                    self.config, rec, session, self.migration_source(files)
                )
            finally:
                session.close()
        except Exception as e:  # reported, not raised: status must always answer
            return Status(
                rec,
                exists=True,
                size_bytes=size,
                problem=str(e),
                command=command,
                running=running,
            )
        # The tool's ledger is the truth: its team may have run the tool.
        return Status(
            rec,
            exists=True,
            size_bytes=size,
            pending=tuple(pending),
            applied=None if applied is None else tuple(applied),
            ledger=ledger,
            command=command,
            running=running,
        )

    def reset(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        progress: Progress = no_progress,
        files: MigrationFiles | None = None,
    ) -> UpResult:
        """Recreate *branch*'s database from its source and re-apply migrations.

        Keeps the database name and credentials, so the URL stays the same.
        *files*: the migrations instead of the directory on disk (as for ``up``).
        """
        source = self.migration_source(files)
        with self.lock(branch, progress=progress):
            rec = self.get(branch)
            snapshot = (
                self._source_for(fresh, from_snapshot)
                if fresh or from_snapshot
                else self._record_source(rec)
            )
            rec = self._reset_locked(rec, snapshot, progress)
            self.audit("reset", branch, f"{rec.database} from {rec.source}")
            applied = self._migrate_locked(
                rec, source, self.fingerprint(files), progress
            )
            self._audit_applied(branch, applied)
        return UpResult(
            record=rec, reset=True, applied=tuple(applied), running=self._awake()
        )

    def _reset_locked(
        self, rec: BranchRecord, snapshot: SnapshotRecord | None, progress: Progress
    ) -> BranchRecord:
        what = "a fresh database" if snapshot is None else snapshot.ref
        progress(f"recreating {rec.database} from {what}")
        with self.timed("reset"):
            # A backend that frees the name without waiting for the drop has a
            # ``retire`` (postgres: backends/pg_retire.py); the others drop.
            retire = getattr(self.backend, "retire", self.backend.drop)
            retire(rec.database, rec.info)
            rec.status = "creating"
            rec.applied = {}
            rec.fingerprint = ""
            rec.source = "fresh" if snapshot is None else f"snapshot:{snapshot.ref}"
            self.store.put_branch(rec)
            rec.info = self.backend.create(
                rec.database, branch=rec.branch, snapshot=snapshot, info=rec.info
            )
        rec.url = str(rec.info.get("url", rec.url))
        rec.status = "ready"
        self.store.put_branch(rec)
        return rec

    def _record_source(self, rec: BranchRecord) -> SnapshotRecord | None:
        if not rec.source.startswith("snapshot:"):
            return None
        ref = rec.source.removeprefix("snapshot:")
        try:
            return self.resolve_snapshot(ref)
        except NotFound:
            # The pinned version is gone; fall back to the newest of that name.
            return self.resolve_snapshot(ref.partition("@")[0])

    def down(self, branch: str, *, force: bool = False) -> BranchRecord:
        """Drop *branch*'s database and forget it. Protected branches need *force*.

        Every record keyed by the branch goes with it (a later database of the
        same name starts clean). Raises NotFound, Refused (also when the database
        is still there, not provably branchdb's or made by another state store:
        the record is then kept).
        """
        if self.is_protected(branch) and not force:
            raise Refused(
                f"{branch!r} is protected (branches.protected); pass --force to drop it"
            )
        with self.lock(branch):
            rec = self.get(branch)
            self.drop_branch(rec, detail=f"dropped {rec.database}", force=force)
        return rec

    # -------------------------------------------------------------- snapshots
    def snapshot_create(
        self,
        name: str,
        source: str,
        *,
        rules_path: str | None = None,
        rules: Rules | None = None,
        allow_unreviewed: bool = False,
        progress: Progress = no_progress,
    ) -> SnapshotRecord:
        """Copy *source* (only read) into version N+1 of snapshot *name*.

        With *rules_path* (relative to the project root), or *rules* already parsed
        (the daemon parses the text a client sent), the copy is sanitized, fail
        closed: columns that look personal and have no rule refuse the snapshot
        unless *allow_unreviewed* (recorded in the snapshot's info); a verifier
        proves no original value of a masked column survived. Nothing is published
        on failure.
        """
        try:
            naming.snapshot_key(name)
        except ValueError as e:
            raise Refused(str(e)) from None
        if rules is None and rules_path is not None:  # fails before any copying
            from branchdb.daemon.sanitize.rules import load_rules

            rules = load_rules(self.config.root / rules_path)
        with self.lock(f"snapshot\0{name}"):
            version = self.store.next_snapshot_version(self.project, name)
            progress(f"copying {redact(source)} into snapshot {name}@{version}")
            snap = self.backend.snapshot_create(
                name,
                version,
                source,
                progress=progress,
                rules=rules,
                allow_unreviewed=allow_unreviewed,
            )
            self.store.put_snapshot(snap)
            self.audit("snapshot.create", "", f"{snap.ref} from {redact(source)}")
            self._prune_snapshots(name, progress)
        return snap

    def _prune_snapshots(self, name: str, progress: Progress) -> None:
        """Keep the newest ``snapshots.keep`` versions of *name*, and any in use."""
        versions = self.store.list_snapshots(self.project, name)
        in_use = {r.source for r in self.list_branches()}
        for old in versions[: -self.config.snapshots.keep]:
            if f"snapshot:{old.ref}" in in_use:
                continue  # a branch still clones from it (and `reset` may need it)
            progress(f"removing old version {old.ref}")
            self.backend.snapshot_drop(old)
            self.store.delete_snapshot(self.project, old.name, old.version)
            self.audit(
                "snapshot.delete", "", f"{old.ref} (beyond snapshots.keep, pruned)"
            )

    def snapshot_refresh(
        self, name: str, *, progress: Progress = no_progress
    ) -> SnapshotRecord:
        """Rebuild snapshot *name* from its ``[snapshots.NAME]`` definition."""
        d = self.config.snapshots.definitions.get(name)
        if d is None:
            raise NotFound(
                f"no [snapshots.{name}] definition in {self.config.path}; "
                "add source (or source_env) and rules there"
            )
        source = d.source
        if d.source_env is not None:
            source = os.environ.get(d.source_env)
            if not source:
                raise ConfigError(
                    f"snapshots.{name}.source_env: ${d.source_env} is not set"
                )
        assert source is not None
        return self.snapshot_create(
            name,
            source,
            rules_path=d.rules,
            allow_unreviewed=d.allow_unreviewed,
            progress=progress,
        )

    def snapshot_check(
        self, source: str, rules_path: str | None = None
    ) -> SnapshotCheck:
        """The PII detector's findings on *source*, and those *rules_path* does not
        cover; read-only. Raises NotFound (no such file), RulesError."""
        from branchdb.daemon.sanitize import check

        rules = None
        if rules_path is not None:
            from branchdb.daemon.sanitize.rules import load_rules

            rules = load_rules(self.config.root / rules_path)
        if source.startswith(("postgres://", "postgresql://")):
            from branchdb.daemon.backends.pg_session import connect

            conn = connect(source, what="snapshot source")
            try:
                findings, unreviewed, limits = check.check_postgres(conn, rules)
            finally:
                conn.close()
        else:
            path = Path(source.removeprefix("file:")).expanduser()
            if not path.is_file():
                raise NotFound(f"snapshot source {path} does not exist")
            findings, unreviewed, limits = check.check_sqlite(path, rules)
        return SnapshotCheck(tuple(findings), tuple(unreviewed), limits)

    def snapshot_warm(
        self, ref: str, spares: int, progress: Progress = no_progress
    ) -> Warmed:
        """Make spares of snapshot *ref* (``NAME`` or ``NAME@N``) until *spares*
        are ready: see :func:`.spares.warm`."""
        from branchdb.daemon.core import spares as pool

        return pool.warm(self, self.resolve_snapshot(ref), spares, progress)

    def snapshot_list(self) -> list[SnapshotRecord]:
        return self.store.list_snapshots(self.project)

    def snapshot_rm(self, ref: str) -> list[SnapshotRecord]:
        """Remove ``NAME`` (every version) or ``NAME@N``; refuse versions in use."""
        name, _, version = ref.partition("@")
        snaps = self.store.list_snapshots(self.project, name)
        if version:
            snaps = [s for s in snaps if str(s.version) == version]
        if not snaps:
            raise NotFound(f"snapshot {ref!r} does not exist")
        users = {
            r.source.removeprefix("snapshot:"): r.branch for r in self.list_branches()
        }
        for s in snaps:
            if s.ref in users:
                raise Refused(
                    f"snapshot {s.ref} is the source of branch {users[s.ref]!r}; "
                    f"drop or reset that branch first"
                )
        for s in snaps:
            self.backend.snapshot_drop(s)
            self.store.delete_snapshot(self.project, s.name, s.version)
            self.audit("snapshot.delete", "", s.ref)
        return snaps
