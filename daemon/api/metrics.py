"""``GET /metrics``: Prometheus exposition through ``prometheus_client``.

Two kinds of metrics, one page:

- **Persistent** (read from the state store at each scrape, so a restart or another
  replica does not reset them; label ``project``, collected counts also ``reason``)::

    branchdb_branches                              gauge    branch databases on record
    branchdb_gc_collected_databases_total          counter  deleted by GC or eviction
    branchdb_gc_collected_bytes_total              counter  bytes those held
    branchdb_gc_runs_total                         counter  GC runs (not dry runs)
    branchdb_gc_last_run_timestamp_seconds         gauge    end of the last GC run

- **This process** (since it started; sum over replicas in PromQL)::

    branchdb_http_request_duration_seconds         histogram  method, route (the route
                                                              template), status
    branchdb_operation_duration_seconds            histogram  operation (create, clone,
                                                              migrate, reset), backend
    branchdb_jobs                                  gauge      background jobs by status
                                                              (running, now)
    branchdb_jobs_finished_total                   counter    kind, status
    branchdb_webhook_deliveries_total              counter    provider, outcome

Needs a ``read`` token (Prometheus: ``authorization: {credentials: TOKEN}``); a token
limited to projects gets only those projects' persistent samples. The process's
metrics live in :mod:`.telemetry`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api.deps import DaemonDep, ReadToken
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.gc.collector import totals
from branchdb.daemon.gc.results import GcTotals

if TYPE_CHECKING:
    from branchdb.daemon.api.telemetry import Metrics

router = APIRouter(tags=["health"])

#: The text format every Prometheus reads (generate_latest writes it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Persistent(Collector):
    """The state store's counters of the projects a token may see."""

    def __init__(self, projects: dict[str, tuple[int, GcTotals]]) -> None:
        self.projects = projects

    def collect(self) -> Iterable[Metric]:
        branches = GaugeMetricFamily(
            "branchdb_branches", "Branch databases on record.", labels=["project"]
        )
        dbs = CounterMetricFamily(
            "branchdb_gc_collected_databases",
            "Databases deleted by garbage collection or quota eviction.",
            labels=["project", "reason"],
        )
        size = CounterMetricFamily(
            "branchdb_gc_collected_bytes",
            "Bytes held by the databases garbage collection deleted.",
            labels=["project", "reason"],
        )
        runs = CounterMetricFamily(
            "branchdb_gc_runs",
            "Garbage-collection runs (not dry runs).",
            labels=["project"],
        )
        last = GaugeMetricFamily(
            "branchdb_gc_last_run_timestamp_seconds",
            "When the last garbage-collection run ended (Unix time).",
            labels=["project"],
        )
        for project, (count, counters) in sorted(self.projects.items()):
            branches.add_metric([project], count)
            for reason, n in counters.by_reason.items():
                dbs.add_metric([project, reason], n.databases)
                size.add_metric([project, reason], n.bytes)
            runs.add_metric([project], counters.runs)
            if counters.last_run_at is not None:
                last.add_metric([project], counters.last_run_at)
        return [branches, dbs, size, runs, last]


def render(projects: dict[str, tuple[int, GcTotals]], process: Metrics) -> bytes:
    """The exposition page: *projects* (name -> (branch count, gc totals)) and this
    process's metrics."""
    persistent = CollectorRegistry()
    persistent.register(_Persistent(projects))
    return generate_latest(persistent) + generate_latest(process.registry)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics: branches, GC, requests, operations, jobs, webhooks",
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        **errors(401, 403),
    },
)
async def metrics(token: ReadToken, daemon: DaemonDep) -> Response:
    def collect() -> dict[str, tuple[int, GcTotals]]:
        out = {}
        for p in daemon.projects.values():
            if not token.reaches(p.name):
                continue  # a token limited to projects sees only theirs
            engine = p.engine()
            out[p.name] = (len(engine.list_branches()), totals(engine))
        return out

    body = render(await run_in_threadpool(collect), daemon.metrics)
    return Response(body, media_type=CONTENT_TYPE)
