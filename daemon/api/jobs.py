"""Long work in the background: a job per call, polled at ``GET /v1/jobs/{id}``.

The table is in memory: jobs are lost when the daemon restarts (the branch records
they produced are not: those are in the state store). Finished jobs are kept until
the table holds ``keep`` of them. Jobs sharing a key (one branch of one project) run
one after the other, in the order they were started, so two webhook deliveries for one
branch are applied in arrival order.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from branchdb.daemon.core.errors import BranchdbError, redact

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


class JobTable:
    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}  # jobs holding or awaiting each lock
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

    def start(
        self, kind: str, project: str, branch: str | None, work: Work, key: str = ""
    ) -> Job:
        """Run *work* in the thread pool; return its job at once (call in the loop)."""
        job = Job(kind, project, branch)
        self._jobs[job.id] = job
        self._trim()
        task = asyncio.get_running_loop().create_task(self._run(job, work, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Work, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock()) if key else None
        self._users[key] = self._users.get(key, 0) + 1
        try:
            if lock is not None:
                async with lock:
                    status, body = await run_in_threadpool(work)
            else:
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
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                self._locks.pop(key, None)

    def _trim(self) -> None:
        done = [j for j in self._jobs.values() if j.status != "running"]
        for j in done[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[j.id]

    async def drain(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for running jobs (on shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
