"""What routes receive through ``Annotated`` dependencies: the daemon, a project's
engine, the caller's token. Built once by ``create_app``; nothing at import time.

SQLite connections belong to the thread that opened them, and routes run engine calls
in a thread pool: each pool thread therefore gets its own Engine (and state-store
connection) per project, made on first use. Engines are cheap to build and share
nothing but files, which the engine already serialises with its per-branch lock.
With ``[state] url`` every engine and the daemon share one thread-safe PostgreSQL
store instead (opened on first use, closed when the app stops).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api import tokens
from branchdb.daemon.api.jobs import JobTable
from branchdb.daemon.api.settings import DaemonSettings, ProjectSettings
from branchdb.daemon.api.telemetry import Metrics
from branchdb.daemon.core import branchname
from branchdb.daemon.core.context import Observer
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.errors import BranchdbError, NotFound, Refused
from branchdb.daemon.migrations.base import MigrationFiles
from branchdb.daemon.store import open_store
from branchdb.daemon.store.base import Store
from branchdb.daemon.vcs import tree as git_tree
from branchdb.daemon.vcs.repo import heads_of
from branchdb.daemon.vcs.tree import Mirror


# These exist only at the HTTP edge, so they live here rather than in errors.py.
class Unauthorized(BranchdbError):
    """No token, an unknown token, or a webhook signature that does not verify."""

    http_status = 401


class Forbidden(BranchdbError):
    """A valid token whose scope does not allow the call."""

    http_status = 403


class BadRequest(BranchdbError):
    """A request the API cannot read (malformed JSON, missing header)."""

    http_status = 400


class PayloadTooLarge(BranchdbError):
    """A request body over the daemon's limit (see :mod:`.bodylimit`)."""

    http_status = 413


class ProjectRuntime:
    """One served project: its settings, per-thread engines, its repository mirror."""

    def __init__(
        self,
        settings: ProjectSettings,
        data_dir: Path,
        shared_store: Callable[[], Store] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._shared_store = shared_store
        self._observer = observer
        self._local = threading.local()
        self.mirror = (
            Mirror(data_dir / "mirrors" / f"{settings.name}.git", settings.repository)
            if settings.repository
            else None
        )

    def engine(self) -> Engine:
        """This thread's engine for the project (call it inside the thread pool)."""
        engine: Engine | None = getattr(self._local, "engine", None)
        if engine is None:
            store = self._shared_store() if self._shared_store else None
            mirror, config = self.gc_mirror, self.settings.config
            # Git facts (GC, the default head a create records) come from the
            # mirror when repository is set, else from the project folder.
            where = mirror.path if mirror is not None else config.root
            engine = self._local.engine = Engine(
                config,
                store=store,
                mirror=mirror,
                heads=heads_of(where, config.project.default_branch),
            )
            engine.observer = self._observer
        return engine

    @property
    def gc_mirror(self) -> Mirror | None:
        """The mirror git facts are read from (GC, the head recorded at create):
        with ``repository`` set, the one the webhooks read; else None (the
        project folder's own checkout)."""
        return self.mirror if self.settings.repository_set else None

    def committed_migrations(
        self, branch: str, sha: str | None = None
    ) -> MigrationFiles | None:
        """*branch*'s migrations as committed in the project's repository.

        Fetches the mirror first (callers arriving together share one fetch), then
        reads the branch's tip, or *sha* on its history. None when the project has
        no repository: its directory on disk is then the only source, whatever the
        branch. Blocks (git): call it in the thread pool. Raises NotFound (a branch
        or commit the repository does not have), Refused (*sha* off the branch, or
        given without a repository), RepositoryUnavailable (the fetch failed).
        """
        if self.mirror is None:
            if sha is not None:
                raise Refused(
                    f"project {self.name!r} has no repository to read commit {sha} "
                    "from; set repository in the daemon config"
                )
            return None
        commit = self.mirror.branch_commit(branch, sha, forks=self.settings.allow_forks)
        return git_tree.migrations_at(
            self.settings.config, self.mirror, commit, self.settings.subdir
        )


class Daemon:
    """Everything the app holds: settings, projects, the job table, the state store."""

    def __init__(self, settings: DaemonSettings) -> None:
        self.settings = settings
        self._shared: Store | None = None
        self._shared_lock = threading.Lock()
        shared = self.shared_store if settings.state_url else None
        self.jobs = JobTable()
        self.metrics = Metrics(self.jobs)
        self.jobs.on_finish = self.metrics.job_finished
        self.projects = {
            name: ProjectRuntime(
                p, settings.data_dir, shared, observer=self.metrics.operation
            )
            for name, p in settings.projects.items()
        }
        self.tokens = TokenCache()
        self._local = threading.local()

    def shared_store(self) -> Store:
        """The PostgreSQL state store of ``[state] url``, opened on first use."""
        with self._shared_lock:
            if self._shared is None:
                self._shared = open_store(
                    self.settings.state_url,
                    self.settings.data_dir / "state.db",
                    self.settings.state_schema,
                )
            return self._shared

    def store(self) -> Store:
        """The daemon's state store (tokens, deliveries): the shared one, else this
        thread's connection to the SQLite file in the daemon's data directory."""
        if self.settings.state_url:
            return self.shared_store()
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = open_store(
                None, self.settings.data_dir / "state.db"
            )
        return store

    def close(self) -> None:
        """Close the shared store (per-thread SQLite connections die with threads)
        and stop the sqld this daemon's projects run themselves, if any."""
        with self._shared_lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
        for p in self.projects.values():
            config = p.settings.config
            if config.database.backend == "sqld" and config.libsql.managed:
                from branchdb.daemon.backends.sqld_process import ManagedSqld

                ManagedSqld(config.data_dir).stop()

    def project(self, name: str) -> ProjectRuntime:
        found = self.projects.get(name)
        if found is None:
            raise NotFound(f"no project {name!r} is served here")
        return found


async def get_daemon(request: Request) -> Daemon:
    daemon: Daemon = request.app.state.daemon
    return daemon


DaemonDep = Annotated[Daemon, Depends(get_daemon)]


async def get_project(project: str, daemon: DaemonDep) -> ProjectRuntime:
    return daemon.project(project)


ProjectDep = Annotated[ProjectRuntime, Depends(get_project)]


async def valid_branch(
    branch: Annotated[
        str,
        PathParam(
            description="the git branch name; may contain slashes (feature/x)",
            json_schema_extra={"pattern": branchname.BRANCH_PATTERN},
        ),
    ],
) -> str:
    """The ``{branch}`` path parameter, refused (400) if git could never name it so."""
    return branchname.validate(branch)


BranchDep = Annotated[str, Depends(valid_branch)]

_bearer = HTTPBearer(auto_error=False, description="a token from `branchdb token`")


class TokenCache:
    """The token table in memory, re-read from the state store at most every *ttl*
    seconds, and at once when a presented token is not in it (a token made a moment
    ago works at once; a revoked one stops working within *ttl*).

    It saves the hot path (GET of a branch) a thread-pool round trip and a query.
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._rows: list[dict[str, object]] | None = None
        self._read_at = 0.0

    async def verify(self, daemon: Daemon, presented: str) -> tokens.Token | None:
        if presented.startswith(tokens.PREFIX) and len(presented) <= 200:
            fresh = time.monotonic() - self._read_at <= self.ttl
            if self._rows is not None and fresh:
                found = tokens.match(self._rows, presented)
                if found is not None:
                    return found
            self._rows = await run_in_threadpool(lambda: daemon.store().list_tokens())
            self._read_at = time.monotonic()
        return tokens.match(self._rows or [], presented)

    async def by_digest(
        self, daemon: Daemon, token_id: str, sha256: str
    ) -> tokens.Token | None:
        """The token *token_id* if it still exists with digest *sha256* (a
        dashboard session's check: a revoked token ends its sessions within
        *ttl*); None otherwise."""
        if self._rows is None or time.monotonic() - self._read_at > self.ttl:
            self._rows = await run_in_threadpool(lambda: daemon.store().list_tokens())
            self._read_at = time.monotonic()
        return tokens.by_digest(self._rows or [], token_id, sha256)


def check_project(token: tokens.Token, project: str) -> None:
    """Forbidden unless *token* may act on *project* (see :mod:`.tokens`)."""
    if not token.reaches(project):
        raise Forbidden(
            f"token {token.name!r} is limited to project(s) "
            f"{', '.join(token.projects)}; not {project[:100]!r}"
        )


def _require(scope: str) -> object:
    async def check(
        request: Request,
        daemon: DaemonDep,
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> tokens.Token:
        if cred is None:
            raise Unauthorized("missing bearer token (Authorization: Bearer bdb_...)")
        token = await daemon.tokens.verify(daemon, cred.credentials)
        if token is None:
            raise Unauthorized("invalid or revoked token")
        if not token.allows(scope):
            raise Forbidden(
                f"token {token.name!r} has scope {token.scope!r}; this needs {scope!r}"
            )
        # Every route under /v1/projects/{project} is checked here, so a route
        # added later cannot forget it. Routes without a project (jobs, metrics,
        # the project list) filter or check by the token themselves.
        project = request.path_params.get("project")
        if project is not None:
            check_project(token, project)
        return token

    return check


ReadToken = Annotated[tokens.Token, Depends(_require("read"))]
CiToken = Annotated[tokens.Token, Depends(_require("ci"))]
AdminToken = Annotated[tokens.Token, Depends(_require("admin"))]
