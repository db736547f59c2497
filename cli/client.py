"""What the CLI talks to: the engine in-process, or a daemon over HTTP.

``cli → Client → (local: Engine in-process | remote: the daemon's API via httpx)``.
Both clients have the same methods and answer with the same JSON-shaped dicts — the
shapes of :mod:`branchdb.daemon.wire`, built by :mod:`branchdb.daemon.views`, which
the API returns too — so every command formats one answer the same way in either
mode. Remote mode is on when ``[server] url`` (or ``$BRANCHDB_SERVER``) is set
(``Context.client`` in :mod:`branchdb.cli.commands` chooses); see
:mod:`branchdb.cli.remote`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from branchdb.daemon import views
from branchdb.daemon.core.branchname import is_protected

if TYPE_CHECKING:
    from branchdb.daemon import wire
    from branchdb.daemon.config.project import Config
    from branchdb.daemon.core.engine import Engine

Progress = Callable[[str], None]
Json = dict[str, Any]


def no_progress(_: str) -> None:
    """A Progress callback that reports nothing."""


class Client(Protocol):
    """The branch-database verbs of the CLI. Errors are BranchdbError subclasses."""

    config: Config

    def up(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        reset_on_drift: bool | None = None,
        lock_timeout: float | None = None,
        progress: Progress = no_progress,
    ) -> wire.UpBranch:
        """Create if missing, apply the local migrations."""
        ...

    def use(self, branch: str) -> wire.Branch:
        """Counts as a use (refreshes last-used)."""
        ...

    def list_branches(self) -> list[wire.Branch]: ...

    def status(self, branch: str) -> wire.BranchStatus:
        """Pending migrations are those of the local files."""
        ...

    def migrate(
        self, branch: str, *, dry_run: bool = False, progress: Progress = no_progress
    ) -> wire.Migrate: ...

    def reset(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        force: bool = False,
        progress: Progress = no_progress,
    ) -> wire.ResetBranch:
        """The caller checks protection first."""
        ...

    def down(self, branch: str, *, force: bool = False) -> wire.DroppedBranch: ...

    def is_protected(self, branch: str) -> bool: ...

    def snapshot_create(
        self,
        name: str,
        source: str,
        *,
        rules: str | None = None,
        allow_unreviewed: bool = False,
        progress: Progress = no_progress,
    ) -> wire.CreatedSnapshot:
        """*rules*: a rules file, relative to branchdb.toml."""
        ...

    def snapshot_refresh(
        self, name: str, *, progress: Progress = no_progress
    ) -> wire.CreatedSnapshot: ...

    def snapshot_list(self) -> list[wire.Snapshot]: ...

    def snapshot_rm(self, ref: str) -> list[wire.Snapshot]: ...

    def gc(self, *, dry_run: bool, progress: Progress = no_progress) -> wire.Gc: ...

    def set_ttl(self, branch: str, ttl: str) -> wire.Ttl:
        """*ttl* is a duration, "never" or "default"."""
        ...

    def review(
        self, branch: str, *, against: str | None = None, drift: bool = False
    ) -> wire.SchemaReview:
        """The schema diff of *branch* against *against* (default: the default
        branch) and the lint of its migrations; with *drift*, its database against
        what its migrations produce (no lint)."""
        ...


def protected(config: Config, branch: str) -> bool:
    return is_protected(branch, config.branches.protected)


class LocalClient:
    """Embedded mode: the engine, in this process, on this machine's databases."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config

    def up(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        reset_on_drift: bool | None = None,
        lock_timeout: float | None = None,
        progress: Progress = no_progress,
    ) -> wire.UpBranch:
        res = self.engine.up(
            branch,
            fresh=fresh,
            from_snapshot=from_snapshot,
            reset_on_drift=reset_on_drift,
            lock_timeout=lock_timeout,
            progress=progress,
        )
        return views.up_dict(res)

    def use(self, branch: str) -> wire.Branch:
        return views.branch_dict(self.engine.use(branch))

    def list_branches(self) -> list[wire.Branch]:
        running = self.engine.running
        return [views.branch_dict(r, running(r)) for r in self.engine.listed()]

    def status(self, branch: str) -> wire.BranchStatus:
        from branchdb.daemon.gc.ttl import ttl_of

        st = self.engine.status(branch)
        return views.status_dict(
            st,
            protected=self.engine.is_protected(branch),
            ttl=ttl_of(self.engine, branch),
        )

    def migrate(
        self, branch: str, *, dry_run: bool = False, progress: Progress = no_progress
    ) -> wire.Migrate:
        res = self.engine.migrate(branch, dry_run=dry_run, progress=progress)
        return views.migrate_dict(res)

    def reset(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        force: bool = False,
        progress: Progress = no_progress,
    ) -> wire.ResetBranch:
        res = self.engine.reset(
            branch, fresh=fresh, from_snapshot=from_snapshot, progress=progress
        )
        return views.reset_dict(res)

    def down(self, branch: str, *, force: bool = False) -> wire.DroppedBranch:
        rec = self.engine.down(branch, force=force)
        return views.dropped_dict(rec)

    def is_protected(self, branch: str) -> bool:
        return self.engine.is_protected(branch)

    def snapshot_create(
        self,
        name: str,
        source: str,
        *,
        rules: str | None = None,
        allow_unreviewed: bool = False,
        progress: Progress = no_progress,
    ) -> wire.CreatedSnapshot:
        snap = self.engine.snapshot_create(
            name,
            source,
            rules_path=rules,
            allow_unreviewed=allow_unreviewed,
            progress=progress,
        )
        return views.created_snapshot_dict(snap)

    def snapshot_refresh(
        self, name: str, *, progress: Progress = no_progress
    ) -> wire.CreatedSnapshot:
        snap = self.engine.snapshot_refresh(name, progress=progress)
        return views.created_snapshot_dict(snap)

    def snapshot_list(self) -> list[wire.Snapshot]:
        return [views.snapshot_dict(s) for s in self.engine.snapshot_list()]

    def snapshot_rm(self, ref: str) -> list[wire.Snapshot]:
        return [views.snapshot_dict(s) for s in self.engine.snapshot_rm(ref)]

    def gc(self, *, dry_run: bool, progress: Progress = no_progress) -> wire.Gc:
        from branchdb.daemon.gc.collector import collect

        report = collect(self.engine, dry_run=dry_run, progress=progress)
        return views.gc_dict(report, dry_run=dry_run)

    def set_ttl(self, branch: str, ttl: str) -> wire.Ttl:
        from branchdb.daemon.gc.ttl import set_ttl

        return views.ttl_dict(set_ttl(self.engine, branch, ttl))

    def review(
        self, branch: str, *, against: str | None = None, drift: bool = False
    ) -> wire.SchemaReview:
        from branchdb.daemon.core.errors import GitError
        from branchdb.daemon.review import review
        from branchdb.daemon.vcs import repo, tree

        # The checked-out branch's migrations are on disk (committed or not); any
        # other branch's are read from its commit.
        files = None
        try:
            if branch != repo.current_branch(self.config.root):
                files = tree.checkout_migrations(self.config, branch)
        except GitError:
            pass  # detached or no repository: the directory on disk
        if drift:
            d = review.drift(self.engine, branch, files=files)
            return views.review_dict(review.Review(d, None))
        return views.review_dict(
            review.review(self.engine, branch, against, files=files)
        )
