"""This process's metrics: each daemon owns a ``prometheus_client`` registry.

Nothing is registered at import time: :class:`Metrics` is built with the daemon
(:class:`~.deps.Daemon`), the adapters record into it (the HTTP middleware of
:mod:`.app`, the job table, the webhooks, the engine's ``observer``), and
``GET /metrics`` (:mod:`.metrics`) renders it beside the persistent counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from branchdb.daemon.api.jobs import Job, JobTable

#: Seconds: an API read (~ms) up to a clone of a large snapshot (minutes).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Jobs(Collector):
    """Jobs in the table by status, read at scrape time."""

    def __init__(self, jobs: JobTable) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "branchdb_jobs",
            "Background jobs in this process by status.",
            labels=["status"],
        )
        counts = self.jobs.counts()
        for status in ("running", "succeeded", "failed"):
            fam.add_metric([status], counts.get(status, 0))
        yield fam


class Metrics:
    """This process's metrics, in its own registry; the adapters record into it."""

    def __init__(self, jobs: JobTable) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "branchdb_http_request_duration_seconds",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.operations = Histogram(
            "branchdb_operation_duration_seconds",
            "Branch database operations by kind and backend.",
            ["operation", "backend"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "branchdb_jobs_finished",
            "Background jobs finished, by kind and outcome.",
            ["kind", "status"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "branchdb_webhook_deliveries",
            "Webhook deliveries by provider and outcome (accepted, duplicate, "
            "ignored; refused ones are 4xx in the request histogram).",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_Jobs(jobs))

    def operation(self, operation: str, backend: str, seconds: float) -> None:
        """The engine's observer (:attr:`Engine.observer`): one timed operation."""
        self.operations.labels(operation, backend).observe(seconds)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request (the application's middleware)."""
        self.requests.labels(method, route, str(status)).observe(seconds)

    def job_finished(self, job: Job) -> None:
        """The job table's ``on_finish``."""
        self.jobs_finished.labels(job.kind, job.status).inc()


class Timing:
    """ASGI middleware: every HTTP request's duration into :attr:`Metrics.requests`,
    labelled with the route *template* (``/v1/projects/{project}/branches/{branch}``,
    never the branch name: bounded label values) and the answer's status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # if the application fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request(
                scope["method"], template, status, time.monotonic() - started
            )
