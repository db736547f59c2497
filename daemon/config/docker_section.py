"""``[docker]``: the docker backend's settings (``[database] backend = "docker"``).

Every key has a default, so ``backend = "docker"`` alone works on a host whose data
directory is on btrfs or XFS (and, more slowly, on any other: ``clone``)::

    [docker]
    image = "postgres:15"          # $BRANCHDB_DOCKER_IMAGE wins
    dir = ".branchdb/docker"       # on btrfs/XFS ($BRANCHDB_DOCKER_DIR wins)
    clone = "auto"                 # reflink | overlay2 | auto ($BRANCHDB_DOCKER_CLONE)
    listen = "127.0.0.1"           # the address every branch's PostgreSQL binds
    host = "127.0.0.1"             # the host name put in URLs (default: listen)
    ports = "55000-55999"          # host ports handed to branches (one each)
    stop_after = "30m"             # idle branches are stopped (unset: never)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from branchdb.daemon.config import env
from branchdb.daemon.core.errors import ConfigError

DEFAULT_IMAGE = "postgres:15"
#: How a branch gets its data: a reflink clone of a data directory on ``dir``
#: (btrfs/XFS), Docker's own image layers (overlay2, or whatever graph driver the
#: daemon has), or ``auto``: reflink where ``dir`` supports it, else layers.
CLONES = ("auto", "reflink", "overlay2")
SCHEMA: dict[str, type] = {
    "image": str,
    "dir": str,
    "clone": str,
    "listen": str,
    "host": str,
    "ports": str,
    "stop_after": str,
}
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")


class DockerSection(NamedTuple):
    image: str = DEFAULT_IMAGE
    dir: Path | None = None  # None: <data_dir>/docker
    listen: str = "127.0.0.1"
    host: str | None = None  # None: listen (127.0.0.1 when listen is 0.0.0.0)
    ports: tuple[int, int] = (55000, 55999)
    stop_after: int | None = None  # seconds; None: never
    clone: str = "auto"  # one of CLONES

    @property
    def url_host(self) -> str:
        if self.host:
            return self.host
        return "127.0.0.1" if self.listen in ("0.0.0.0", "*") else self.listen


def parse(
    raw: Mapping[str, Any],
    root: Path,
    where: str,
    duration: Callable[[str, str, str], int],
) -> DockerSection:
    """Validate ``[docker]`` (keys already type-checked against :data:`SCHEMA`);
    *duration* parses ``"30m"`` (:func:`.project.parse_duration`)."""
    image = env.get("BRANCHDB_DOCKER_IMAGE") or raw.get("image", DEFAULT_IMAGE)
    if not _IMAGE.fullmatch(image):
        raise ConfigError(f"{where}: docker.image {image!r} is not an image reference")
    listen = raw.get("listen", "127.0.0.1")
    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise ConfigError(
            f"{where}: docker.listen {listen!r} must be an IP address (e.g. 127.0.0.1)"
        ) from None
    host = raw.get("host")
    if host is not None and not _HOST.fullmatch(host):
        raise ConfigError(f"{where}: docker.host {host!r} is not a host name")
    text = raw.get("ports", "55000-55999")
    m = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", text)
    if not m or not (1024 <= int(m[1]) <= int(m[2]) <= 65535):
        raise ConfigError(
            f"{where}: docker.ports {text!r} must be a range LOW-HIGH within "
            '1024-65535, e.g. "55000-55999"'
        )
    folder = env.get("BRANCHDB_DOCKER_DIR") or raw.get("dir")
    stop = raw.get("stop_after")
    from_env = env.get("BRANCHDB_DOCKER_CLONE")
    clone = from_env or raw.get("clone", "auto")
    if clone not in CLONES:
        said = (
            "BRANCHDB_DOCKER_CLONE" if from_env else f"{where}: docker.clone"
        )  # the value is wrong where it was written
        raise ConfigError(f"{said} {clone!r} must be one of {', '.join(CLONES)}")
    return DockerSection(
        image=image,
        dir=(root / folder).resolve() if folder else None,
        listen=listen,
        host=host,
        ports=(int(m[1]), int(m[2])),
        stop_after=duration(stop, "docker.stop_after", where) if stop else None,
        clone=clone,
    )
