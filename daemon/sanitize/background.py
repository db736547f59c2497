"""One call run in a thread, its result or exception handed back to the caller."""

from __future__ import annotations

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
