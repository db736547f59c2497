"""``GET /metrics``: Prometheus text exposition (format 0.0.4) for every project.

Served metrics (label ``project``; collected counts also by ``reason``)::

    branchdb_branches                          gauge   branch databases on record
    branchdb_gc_collected_databases_total      counter databases deleted by GC or
                                                       eviction, by reason
    branchdb_gc_collected_bytes_total          counter bytes those held, by reason
    branchdb_gc_runs_total                     counter GC runs (not dry runs)
    branchdb_gc_last_run_timestamp_seconds     gauge   end of the last GC run

The counters are persistent: they live in the state store (see
:func:`branchdb.daemon.gc.collector.totals`), so a daemon restart does not reset
them. Needs a
``read`` token (Prometheus: ``authorization: {credentials: TOKEN}``); a token limited
to projects gets only those projects' samples (the same families, fewer labels).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api.deps import DaemonDep, ReadToken
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.gc.collector import totals

router = APIRouter(tags=["health"])

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "branchdb_branches": ("gauge", "Branch databases on record."),
    "branchdb_gc_collected_databases_total": (
        "counter",
        "Databases deleted by garbage collection or quota eviction.",
    ),
    "branchdb_gc_collected_bytes_total": (
        "counter",
        "Bytes held by the databases garbage collection deleted.",
    ),
    "branchdb_gc_runs_total": ("counter", "Garbage-collection runs (not dry runs)."),
    "branchdb_gc_last_run_timestamp_seconds": (
        "gauge",
        "When the last garbage-collection run ended (Unix time).",
    ),
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(projects: dict[str, tuple[int, dict[str, Any]]]) -> str:
    """Exposition text for project -> (branch count, :func:`gc.totals`)."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for project, (count, counters) in sorted(projects.items()):
        p = f'project="{_label(project)}"'
        samples["branchdb_branches"].append(f"{{{p}}} {count}")
        for reason, n in counters["by_reason"].items():
            lab = f'{{{p},reason="{_label(reason)}"}}'
            samples["branchdb_gc_collected_databases_total"].append(
                f"{lab} {n['databases']}"
            )
            samples["branchdb_gc_collected_bytes_total"].append(f"{lab} {n['bytes']}")
        samples["branchdb_gc_runs_total"].append(f"{{{p}}} {counters['runs']}")
        if counters["last_run_at"] is not None:
            samples["branchdb_gc_last_run_timestamp_seconds"].append(
                f"{{{p}}} {counters['last_run_at']:.3f}"
            )
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{s}" for s in samples[name]]
    return "\n".join(lines) + "\n"


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics: branches, GC runs, databases and bytes collected",
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        **errors(401, 403),
    },
)
async def metrics(token: ReadToken, daemon: DaemonDep) -> PlainTextResponse:
    def collect() -> dict[str, tuple[int, dict[str, Any]]]:
        out = {}
        for p in daemon.projects.values():
            if not token.reaches(p.name):
                continue  # a token limited to projects sees only theirs
            engine = p.engine()
            out[p.name] = (len(engine.list_branches()), totals(engine))
        return out

    text = render(await run_in_threadpool(collect))
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
