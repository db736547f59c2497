"""Long work in the background: a job per call, polled at ``GET /v1/jobs/{id}``.

The table is in memory: jobs are lost when the daemon restarts (the branch records
they produced are not: those are in the state store). Finished jobs are kept until
the table holds ``keep`` of them. Jobs sharing a key (one branch of one project) run
one after the other, in the order they were started, so two webhook deliveries for one
branch are applied in arrival order. A request answered in place takes its
:meth:`JobTable.turn` in the same line: it runs after every job of its key started
before it (a CI PUT after the webhook's job), and a job started meanwhile runs after it.
Requests answered in place do not wait for each other (they ran side by side before
there was a line; the engine's branch lock still orders what they change), nor for a
*passable* job ahead of them (publishing a URL: it changes no database).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.concurrency import run_in_threadpool

from branchdb.daemon.core.errors import BranchdbError, Refused, redact

log = logging.getLogger("branchdb.api")

#: A JSON answer: a dict, or one of the typed shapes of branchdb.daemon.wire.
Body = Mapping[str, Any]
#: A job's work: runs in a thread, returns (HTTP status, JSON body).
Work = Callable[[], tuple[int, Body]]


class Job:
    def __init__(self, kind: str, project: str, branch: str | None) -> None:
        self.id = secrets.token_hex(8)
        self.kind = kind
        self.project = project
        self.branch = branch
        self.status = "running"  # running | succeeded | failed
        self.created_at = time.time()
        self.finished_at: float | None = None
        self.http_status: int | None = None
        self.result: Body | None = None
        self.error: dict[str, str] | None = None
        self.progress: list[str] = []  # the engine's progress lines, newest last

    def note(self, message: str) -> None:
        """Record a progress line (called from the worker thread)."""
        self.progress.append(redact(message))
        del self.progress[:-200]  # bounded: a long run keeps only its tail

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "project": self.project,
            "branch": self.branch,
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "http_status": self.http_status,
            "result": self.result,
            "error": self.error,
            "progress": list(self.progress),
        }


class _Place:
    """A place in a key's line: *ready* is set when its turn comes.

    An exclusive place's turn comes when it is first in line; a *shared* one's when
    every place before it is shared or *passable*.
    """

    def __init__(self, what: str, shared: bool, passable: bool) -> None:
        self.what = what  # "webhook:up job 3f2a…", shown to whoever waits behind
        self.shared = shared
        self.passable = passable
        self.ready = asyncio.get_running_loop().create_future()

    @property
    def blocks_shared(self) -> bool:
        return not (self.shared or self.passable)


class JobTable:
    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Each key's line, first place holding the turn; a key without one is absent.
        self._lines: dict[str, deque[_Place]] = {}
        #: Called with each job as it finishes (the metrics).
        self.on_finish: Callable[[Job], None] | None = None

    def counts(self) -> dict[str, int]:
        """How many jobs the table holds, by status."""
        out: dict[str, int] = {}
        for j in list(self._jobs.values()):
            out[j.status] = out.get(j.status, 0) + 1
        return out

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self, limit: int = 200) -> list[Job]:
        """The jobs the table holds, newest first (at most *limit*)."""
        jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
        return jobs[:limit]

    def start(
        self,
        kind: str,
        project: str,
        branch: str | None,
        work: Work,
        key: str = "",
        *,
        passable: bool = False,
    ) -> Job:
        """Run *work* in the thread pool; return its job at once (call in the loop).

        With *key*, the job takes its place in the key's line now, before this
        returns: whatever asks for the key's turn after this call runs after it
        (requests answered in place excepted if the job is *passable*).
        """
        job = Job(kind, project, branch)
        self._jobs[job.id] = job
        self._trim()
        what = f"{kind} job {job.id}"
        place = self._join(key, what, passable=passable) if key else None
        task = asyncio.get_running_loop().create_task(self._run(job, work, key, place))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def _join(
        self, key: str, what: str, shared: bool = False, passable: bool = False
    ) -> _Place:
        place = _Place(what, shared, passable)
        self._lines.setdefault(key, deque()).append(place)
        self._wake(key)
        return place

    def _leave(self, key: str, place: _Place) -> None:
        line = self._lines[key]
        line.remove(place)
        if line:
            self._wake(key)  # the turn passes on
        else:
            del self._lines[key]

    def _wake(self, key: str) -> None:
        """Set *ready* on every place of *key*'s line whose turn has come."""
        for i, place in enumerate(self._lines[key]):
            if (i == 0 or place.shared) and not place.ready.done():
                place.ready.set_result(None)
            if place.blocks_shared:
                break  # nothing behind it can go yet

    @asynccontextmanager
    async def turn(
        self, key: str, what: str, *, timeout: float, busy: str, shared: bool = True
    ) -> AsyncIterator[None]:
        """Hold *key*'s turn: after every job (and exclusive turn) that asked before.

        A *shared* turn waits only for the jobs ahead that are not passable. Waits
        at most *timeout* seconds, then raises Refused(*busy* plus what it waited
        behind). *what* names this holder to those who wait behind it.
        """
        place = self._join(key, what, shared)
        try:
            try:
                await asyncio.wait_for(asyncio.shield(place.ready), timeout)
            except TimeoutError:
                line = self._lines[key]
                ahead = list(line)[: line.index(place)]
                holder = next((p.what for p in ahead if p.blocks_shared), "a job")
                raise Refused(
                    f"{busy} (waited {timeout:.0f} s behind the {holder}); "
                    "try again in a moment"
                ) from None
            yield
        finally:
            self._leave(key, place)

    async def _run(self, job: Job, work: Work, key: str, place: _Place | None) -> None:
        try:
            if place is not None:
                await place.ready
            status, body = await run_in_threadpool(work)
            job.status, job.http_status, job.result = "succeeded", status, body
        except BranchdbError as e:
            job.status, job.http_status = "failed", e.http_status
            job.error = {"type": type(e).__name__, "message": redact(str(e))}
        except Exception as e:  # a bug: reported on the job, logged with traceback
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.http_status = "failed", 500
            job.error = {"type": "InternalError", "message": redact(str(e))}
        finally:
            job.finished_at = time.time()
            if self.on_finish is not None:
                self.on_finish(job)
            if place is not None:
                self._leave(key, place)

    def _trim(self) -> None:
        done = [j for j in self._jobs.values() if j.status != "running"]
        for j in done[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[j.id]

    async def drain(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for running jobs (on shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
