"""Host ports for the docker backend's branches (``[docker] ports``).

Each branch's PostgreSQL listens on its own host port (host networking). The port
is written into the container's labels when the container is created, under a file
lock, so two creates never pick the same one; ``reset`` asks for the branch's old
port back so that its URL stays the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.core.errors import Refused


class Ports:
    def __init__(self, span: tuple[int, int], listen: str, root: Path) -> None:
        self.span = span
        self.listen = listen
        self.root = root

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held from :meth:`allocate` until the container carrying the port exists."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".ports.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def in_use(self) -> set[int]:
        """Ports labelled on any branchdb container (any project: ports are the
        host's)."""
        used = set()
        for c in rt.containers():
            with contextlib.suppress(TypeError, ValueError):
                used.add(int(rt.label(c, "port") or ""))
        return used

    def free(self, port: int) -> bool:
        family = socket.AF_INET6 if ":" in self.listen else socket.AF_INET
        with socket.socket(family) as s:
            # As PostgreSQL binds: connections it closed may linger in TIME_WAIT.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.listen, port))
            except OSError:
                return False
        return True

    def allocate(self, wanted: int | None) -> int:
        """A port of the range no branchdb container holds and nothing listens on;
        *wanted* (a reset's old port) when it is free. Raises Refused when none is."""
        used = self.in_use()
        if wanted and wanted not in used and self.free(wanted):
            return wanted
        low, high = self.span
        candidates = list(range(low, high + 1))
        random.shuffle(candidates)  # two daemons rarely race for the same one
        for port in candidates:
            if port not in used and self.free(port):
                return port
        raise Refused(
            f"no free port left in [docker] ports {low}-{high}: widen the range or "
            "delete branches"
        )
