"""The daemon's own timers and its start-up work, apart from the routes.

:func:`recover_all` runs crash recovery (:mod:`branchdb.daemon.core.recovery`) for
every project before the daemon serves; :func:`start_scheduler` starts APScheduler's
jobs: garbage collection of every project (:func:`branchdb.daemon.gc.collector.collect`,
the only collector among replicas sharing a store), scheduled snapshot refreshes, the
refill of the postgres warm pool (:func:`branchdb.daemon.core.spares.refill`) of each
project with ``[postgres] spares``, and stopping idle docker branches (``[docker]
stop_after``). Both are called from the application's lifespan (:mod:`.app`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from branchdb.daemon.api.deps import Daemon
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.errors import Refused
from branchdb.daemon.gc.collector import collect

log = logging.getLogger("branchdb.api")


def recover_all(daemon: Daemon) -> None:
    """Crash recovery of every project; errors are logged, never fatal."""
    from branchdb.daemon.core import recovery
    from branchdb.daemon.core.engine import Engine

    for p in daemon.projects.values():
        # A private engine: the per-thread ones belong to the request threads. With
        # a shared state store it must be that store: its records and locks.
        shared = daemon.shared_store() if daemon.settings.state_url else None
        engine = Engine(p.settings.config, store=shared)
        try:
            report = recovery.recover(engine)
            if report or report.busy:
                log.info(
                    "recovery of %s: %d interrupted creates undone, %d records of "
                    "missing databases forgotten, %d temp leftovers dropped, %d busy",
                    p.name,
                    len(report.cleaned),
                    len(report.forgotten),
                    len(report.temps),
                    len(report.busy),
                )
        except Exception:
            log.exception("crash recovery of project %s failed", p.name)
        finally:
            if shared is None:
                engine.store.close()


def start_scheduler(
    daemon: Daemon, interval: int, started: asyncio.Event | None = None
) -> Any:
    """APScheduler jobs: every project's GC each *interval* seconds (0: off),
    each ``[snapshots.NAME]`` with a ``schedule`` refreshed that often, and the
    warm pools of projects with ``[postgres] spares`` refilled every few seconds,
    idle docker branches stopped (``[docker] stop_after``);
    a round that comes before *started* is set (start-up recovery still running)
    is skipped.

    Each job runs one at a time (``max_instances=1``) in the thread pool; errors are
    logged, never fatal to the daemon. None when there is nothing to schedule.
    """
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler()

    def collect_all() -> None:
        for p in daemon.projects.values():
            try:
                # The collector logs each mark, each deletion and a summary.
                with acting("scheduler", "scheduled gc"):
                    collect(p.engine(), dry_run=False)
            except Refused as e:  # another replica is collecting: skip this round
                log.info("scheduled gc of project %s skipped: %s", p.name, e)
            except Exception:
                log.exception("scheduled gc of project %s failed", p.name)

    def in_pool(fn: Any) -> Any:
        async def job() -> None:
            if started is not None and not started.is_set():
                return  # never beside crash recovery: the next round runs
            await run_in_threadpool(fn)

        return job

    if interval > 0:
        scheduler.add_job(
            in_pool(collect_all),
            "interval",
            seconds=interval,
            max_instances=1,
            coalesce=True,
            id="gc",
        )
    for p in daemon.projects.values():
        for d in p.settings.config.snapshots.definitions.values():
            if d.schedule is None:
                continue

            def refresh(p: Any = p, name: str = d.name) -> None:
                try:
                    with acting("scheduler", f"scheduled refresh of {name}"):
                        snap = p.engine().snapshot_refresh(name)
                    log.info("refreshed snapshot %s of %s", snap.ref, p.name)
                except Exception:
                    log.exception("scheduled refresh of %s/%s failed", p.name, name)

            scheduler.add_job(
                in_pool(refresh),
                "interval",
                seconds=d.schedule,
                max_instances=1,
                coalesce=True,
                id=f"refresh:{p.name}:{d.name}",
            )
    pooled = [p for p in daemon.projects.values() if p.settings.config.postgres.spares]
    if pooled:
        from datetime import UTC, datetime

        from branchdb.daemon.core import spares

        def refill_all() -> None:
            for p in pooled:
                try:
                    with acting("scheduler", "warm pool refill"):
                        for w in spares.refill(p.engine()):
                            if w.built:
                                log.info(
                                    "made %d spares of %s/%s",
                                    w.built,
                                    p.name,
                                    w.snapshot,
                                )
                except Exception:
                    log.exception("refill of the warm pool of %s failed", p.name)

        scheduler.add_job(
            in_pool(refill_all),
            "interval",
            seconds=spares.REFILL_EVERY,
            next_run_time=datetime.now(UTC),  # fill at start, not in 5 s
            max_instances=1,
            coalesce=True,
            id="spares",
        )
    for p in daemon.projects.values():
        after = p.settings.config.docker.stop_after
        if p.settings.config.database.backend != "docker" or after is None:
            continue

        def stop_idle(p: Any = p) -> None:
            try:
                with acting("scheduler", "scale to zero"):
                    stopped = p.engine().stop_idle()
                if stopped:
                    log.info("stopped idle branches of %s: %s", p.name, stopped)
            except Exception:
                log.exception("stopping idle branches of %s failed", p.name)

        # The idle clock starts at the first sample that sees a branch idle.
        scheduler.add_job(
            in_pool(stop_idle),
            "interval",
            seconds=max(5, min(60, after // 10)),
            max_instances=1,
            coalesce=True,
            id=f"stop-idle:{p.name}",
        )
    if not scheduler.get_jobs():
        return None
    scheduler.start()
    return scheduler
