"""One call run in a thread, its result or exception handed back to the caller."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class Background:
    """Run *fn* in a thread; :meth:`result` returns its value or re-raises here."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._out: list[Any] = []
        self._err: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn())
            except BaseException as e:  # handed to the caller by result()
                self._err.append(e)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self.join()
        if self._err:
            raise self._err[0]
        return self._out[0]


def concurrently(jobs: list[tuple[Any, Callable[[Any], Any]]]) -> list[Any]:
    """fn(conn) for each (conn, fn) job, each connection in its own thread (the
    first in this one); the results in order. On an error the statements still
    running are cancelled (``conn.cancel()``) and the first error is raised."""
    if len(jobs) == 1:
        return [jobs[0][1](jobs[0][0])]
    running = [Background(functools.partial(fn, c)) for c, fn in jobs[1:]]
    try:
        first = jobs[0][1](jobs[0][0])
        return [first, *(b.result() for b in running)]
    except BaseException:
        for c, _fn in jobs:
            c.cancel()
        for b in running:
            b.join()
        raise
