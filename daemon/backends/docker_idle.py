"""Scale to zero on the docker backend: activity, stopping idle branches, waking.

Activity is read through each cluster's admin socket, on database ``postgres``
(never a session on ``app``, which would count as use): ``pg_stat_database.sessions``
of ``app`` (client sessions begun; autovacuum never moves it) and the client
sessions open now. Per branch folder::

    idle.json       {"counter", "since"}: the counter when it was first seen
                    unchanged with no session open (the idle clock's start)
    activity.json   {"counter"}: what it was when the branch was stopped (a
                    stopped branch is reported with it, and no session)

A stop is PostgreSQL's fast shutdown (the container's stop signal is SIGINT): the
container, its volume and its data stay; :func:`wake` starts the same container,
with the same port, and returns once the server takes connections.

Handing a URL out (``up``, ``url``, ``env``, the API) calls :func:`wake` even for a
running branch: it restarts the idle clock, since a client is about to connect.
Wake and stop take the branch folder's ``wake.lock`` (``flock``, so the daemon
and an embedded CLI exclude each other too) and a stop re-reads the clock under
it: a URL handed out while a stop was deciding is never left pointing at a
stopped server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import docker_cluster
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.core.errors import BackendError

if TYPE_CHECKING:
    from branchdb.daemon.backends.docker_backend import DockerBackend


def activity(
    backend: DockerBackend, databases: list[str] | None
) -> dict[str, tuple[int, int]]:
    out = {}
    for c in rt.containers(backend.project):
        name = rt.name_of(c)
        if not backend._mine(c) or (databases is not None and name not in databases):
            continue
        folder = backend._folder(c)
        if folder is None:
            continue
        if c.status == "running":
            with contextlib.suppress(Exception):
                out[name] = sample(folder, _port(c))
                continue
        out[name] = (_saved(folder), 0)
    return out


@contextlib.contextmanager
def _guard(folder: Path) -> Iterator[None]:
    """Hold the branch's ``wake.lock`` (waits; released when the block ends)."""
    with (folder / "wake.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def wake(backend: DockerBackend, database: str) -> bool:
    c = rt.find(database)
    if c is None or not backend._mine(c):
        return False
    folder = backend._folder(c)
    if folder is None:
        return False
    with _guard(folder):
        c.reload()
        if c.status == "running":  # a hand-out: the idle clock starts again
            seen = _read(folder / "idle.json")
            if "counter" in seen:
                _write(folder / "idle.json", {**seen, "since": time.time()})
            return False
        c.start()
        rt.wait_ready(folder / "run", _port(c), c).close()
        _write(folder / "idle.json", {"counter": _saved(folder), "since": time.time()})
    return True


def stop_idle(
    backend: DockerBackend, idle_for: float, now: float | None = None
) -> list[str]:
    """Stop every running branch with no client session open and none begun for
    *idle_for* seconds, measured from the first sample that saw it idle."""
    now = time.time() if now is None else now
    stopped = []
    for c in rt.containers(backend.project):
        folder = backend._folder(c)
        if not backend._mine(c) or c.status != "running" or folder is None:
            continue
        try:
            counter, open_now = sample(folder, _port(c))
        except Exception:
            continue  # starting or stopping: look again next time
        seen = _read(folder / "idle.json")
        if open_now or seen.get("counter") != counter:
            _write(folder / "idle.json", {"counter": counter, "since": now})
            continue
        if now - float(seen.get("since", now)) < idle_for:
            continue
        with _guard(folder):
            # A URL handed out since the sample restarted the clock: not idle.
            since = float(_read(folder / "idle.json").get("since", now))
            if now - since < idle_for:
                continue
            _write(folder / "activity.json", {"counter": counter})
            rt.stop(c)
        stopped.append(rt.name_of(c))
    return stopped


def sample(folder: Path, port: int) -> tuple[int, int]:
    """(sessions begun on ``app``, client sessions open on it now)."""
    import psycopg

    with psycopg.connect(
        rt.admin_conninfo(folder / "run", port), autocommit=True, connect_timeout=5
    ) as conn:
        row = conn.execute(
            "SELECT coalesce(s.sessions, 0), (SELECT count(*) FROM pg_stat_activity "
            "a WHERE a.datid = s.datid AND a.backend_type = 'client backend') "
            "FROM pg_stat_database s WHERE s.datname = %s",
            (docker_cluster.DATABASE,),
        ).fetchone()
    if row is None:
        raise BackendError(f"no database {docker_cluster.DATABASE} in {folder}")
    return int(row[0]), int(row[1])


def _port(c: Any) -> int:
    return int(rt.label(c, "port") or 0)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _saved(folder: Path) -> int:
    return int(_read(folder / "activity.json").get("counter", 0))
