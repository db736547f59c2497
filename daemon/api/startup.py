"""The daemon's start-up work, done while it already answers its probes.

Crash recovery (:func:`.scheduler.recover_all`) and the bootstrap admin token
(:func:`.tokens.bootstrap`) used to run before uvicorn opened its port: a long
recovery then looked like a dead process (liveness probes fail, Kubernetes restarts
the pod, recovery starts over). Now the port opens at once and :class:`Startup` runs
that work in the thread pool:

- ``/v1/health`` and ``/metrics`` answer throughout; ``/v1/ready`` answers 503
  ("recovery is running") until the work is done (:meth:`Startup.problem`);
- every other request waits at the :class:`StartupGate` until then, so no route ever
  runs beside recovery or before the bootstrap token is known (a webhook delivered
  meanwhile is answered late, not refused);
- a bootstrap that failed (the state store unreachable at start) is retried by each
  readiness check until it succeeds; until then the daemon is not ready.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from branchdb.daemon.api import tokens
from branchdb.daemon.api.deps import Daemon
from branchdb.daemon.api.scheduler import recover_all
from branchdb.daemon.core.errors import redact

log = logging.getLogger("branchdb.api")

#: Paths served while start-up work runs: the probes and the scrape.
OPEN_PATHS = frozenset({"/v1/health", "/v1/ready", "/metrics"})


class Startup:
    """Crash recovery, then the bootstrap token, in the background (start in the
    loop)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.done = asyncio.Event()
        self.bootstrap_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await run_in_threadpool(recover_all, self.daemon)  # logs its own errors
            await run_in_threadpool(self._bootstrap)
        finally:
            self.done.set()

    def _bootstrap(self) -> None:
        """Install the bootstrap token; remember why not (never raises)."""
        sha256 = self.daemon.settings.admin_token_sha256
        if not sha256:
            return
        try:
            # In the pool: the store's connection belongs to the thread that uses it.
            tokens.bootstrap(self.daemon.store(), sha256)
            self.bootstrap_error = None
        except Exception as e:  # reported by readiness, retried there
            self.bootstrap_error = redact(str(e)) or type(e).__name__
            log.warning("bootstrap admin token not installed yet: %s", e)

    def problem(self) -> str | None:
        """Why the daemon is not ready yet, or None (call from a pool thread)."""
        if not self.done.is_set():
            return "crash recovery is running"
        if self.bootstrap_error is not None:
            self._bootstrap()
            if self.bootstrap_error is not None:
                return f"bootstrap admin token: {self.bootstrap_error}"
        return None

    async def stop(self, timeout: float) -> None:
        """Wait up to *timeout* s for work still running (threads cannot be killed:
        recovery is safe to cut short, the next start runs it again)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)


class StartupGate:
    """Hold every request but :data:`OPEN_PATHS` until the app's :class:`Startup`
    (``app.state.startup``, made by the lifespan) is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            startup = getattr(scope["app"].state, "startup", None)
            if startup is not None and not startup.done.is_set():
                await startup.done.wait()
        await self.app(scope, receive, send)
