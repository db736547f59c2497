"""One call run in a thread, its result or exception handed back to the caller."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
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


def pooled(conns: Sequence[Any], jobs: Sequence[Callable[[Any], Any]]) -> list[Any]:
    """Run each ``job(conn)`` on whichever of *conns* is free (one thread per
    connection, the first in this one); the results in the order of *jobs*.

    Work is taken as it frees up, so a slower core does fewer jobs instead of
    leaving the other idle at the end. On an error no new job starts, the
    statements still running are cancelled (``conn.cancel()``) and the first
    error is raised.
    """
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    lock = threading.Lock()
    queue = iter(enumerate(jobs))

    def work(conn: Any) -> None:
        while True:
            with lock:
                nxt = None if errors else next(queue, None)
            if nxt is None:
                return
            i, job = nxt
            try:
                results[i] = job(conn)
            except BaseException as e:  # raised below, after the others stopped
                with lock:
                    errors.append(e)
                for c in conns:
                    if c is not conn:
                        c.cancel()
                return

    helpers = [Background(functools.partial(work, c)) for c in conns[1:]]
    work(conns[0])
    for h in helpers:
        h.join()
    if errors:
        raise errors[0]
    return results
