"""The Docker Engine as the docker backend uses it (the ``docker`` SDK, never the CLI).

Every container and volume branchdb makes carries labels under ``branchdb.``
(:data:`LABEL`): ``project``, ``kind`` (``branch``, ``snapshot``, ``base``),
``final`` (the name it gets once complete), ``branch`` or ``snapshot``, ``store``,
``port``, ``dir``. Labels are fixed at creation and only the Docker API can set them:
a branch's own database role cannot forge or erase one. Nothing without
``branchdb.project`` is ever stopped, renamed or removed.

PostgreSQL runs on host networking (``network_mode="host"``; this also works where
dockerd runs with ``--bridge=none --iptables=false``) with ``-p PORT -c
listen_addresses=ADDR``, so each branch listens on its own host port and nothing
is published through a proxy. The server's Unix socket directory is bind-mounted
from the host: branchdb administers each cluster through it (local ``trust``, a
directory only root and the cluster's own user can enter), so no superuser password
is shared between clusters or kept anywhere but in the branch's own record.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import BackendError, ConfigError, ServerUnavailable

if TYPE_CHECKING:
    import docker
    import psycopg
    from docker.models.containers import Container

LABEL = "branchdb."
TMP = "bdbt_"  # a container being built
VOLUME = "bdbv_"  # a branch's data volume
PGDATA = "/var/lib/postgresql/data"
SOCKET_DIR = "/var/run/postgresql"
SUPERUSER = "postgres"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60

_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_client: docker.DockerClient | None = None
_client_pid = 0
_users: dict[str, tuple[int, int]] = {}


def client() -> docker.DockerClient:
    """This process's Docker client (a forked child makes its own: the parent's
    pooled connections are not safe to share)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        import docker

        try:
            _client = docker.from_env(timeout=120)
            _client.ping()
        except docker.errors.DockerException as e:
            raise ServerUnavailable(
                f"cannot reach the Docker Engine ({e}); is dockerd running and "
                "DOCKER_HOST (default /var/run/docker.sock) right?"
            ) from None
        _client_pid = os.getpid()
    return _client


def labels(project: str, kind: str, final: str, **extra: Any) -> dict[str, str]:
    out = {"project": project, "kind": kind, "final": final, **extra}
    return {LABEL + k: str(v) for k, v in out.items() if v is not None}


def label(obj: Any, key: str) -> str | None:
    got = (obj.attrs.get("Config") or {}).get("Labels") or obj.attrs.get("Labels")
    return (got or {}).get(LABEL + key)


def name_of(container: Container) -> str:
    return str(container.name or "").lstrip("/")


def find(name: str) -> Container | None:
    """The container called exactly *name*, or None."""
    import docker

    if not _CONTAINER_NAME.fullmatch(name):
        return None  # e.g. an image reference: no container can have it
    try:
        found = client().containers.get(name)
    except docker.errors.NotFound:
        return None
    return found if name_of(found) == name else None


def containers(project: str | None = None) -> list[Container]:
    """Every container carrying branchdb's labels (of *project*, if given)."""
    key = LABEL + "project" + (f"={project}" if project else "")
    return list(client().containers.list(all=True, filters={"label": key}))


def volumes(project: str) -> list[Any]:
    return list(client().volumes.list(filters={"label": f"{LABEL}project={project}"}))


def ensure_image(image: str) -> Any:
    """The local image *image*, pulled once if missing."""
    import docker

    try:
        return client().images.get(image)
    except docker.errors.ImageNotFound:
        pass
    try:
        return client().images.pull(image)
    except docker.errors.DockerException as e:
        raise ConfigError(
            f"docker image {image!r} is not on this host and cannot be pulled ({e}); "
            "build or load it, or set [docker] image"
        ) from None


def image_user(image: str) -> tuple[int, int]:
    """(uid, gid) of the ``postgres`` user inside *image* (asked once per image)."""
    img = ensure_image(image)
    if img.id not in _users:
        out = client().containers.run(
            img.id,
            entrypoint=["sh", "-c", "id -u postgres; id -g postgres"],
            user="0",
            network_mode="none",
            remove=True,
        )
        uid, gid = (int(x) for x in out.decode().split())
        _users[img.id] = (uid, gid)
    return _users[img.id]


def make_run_dir(path: Path, uid: int, gid: int) -> None:
    """The host directory a cluster puts its socket in (only root and its user)."""
    path.mkdir(mode=0o700)
    os.chown(path, uid, gid)
    if len(str(path / ".s.PGSQL.65535")) > 107:
        raise ConfigError(
            f"{path} is too long for a Unix socket path (107 bytes): give [docker] "
            "dir a shorter path"
        )


def run_postgres(
    image: str,
    name: str,
    marks: dict[str, str],
    *,
    lap: Callable[[str], None] = lambda _step: None,
    **how: Any,
) -> Container:
    """:func:`create_postgres` (*how*: its keywords) and start it."""
    container = create_postgres(image, name, marks, **how)
    lap("create")
    container.start()
    lap("start")
    return container


def create_postgres(
    image: str,
    name: str,
    marks: dict[str, str],
    *,
    data: dict[str, Any] | None,
    run_dir: Path | dict[str, Any],
    user: str,
    port: int,
    listen: str,
    settings: tuple[str, ...] = (),
    pgdata: str = PGDATA,
    network: str = "host",
    entrypoint: list[str] | None = None,
) -> Container:
    """Create (not start) a PostgreSQL container on host networking; *data* is
    the mount for its data directory (a labelled volume, or a bind of a build
    dir), which need not exist before the start; None: the data directory
    *pgdata* lives in the container's own writable layer (layered clones).
    *run_dir*: the host folder for its socket, or a mount (a labelled volume).
    ``listen=""``: socket only; *settings*: more ``name=value`` for this run of
    the server only; *entrypoint*: instead of the image's."""
    from docker.types import Mount

    api = client().api

    def mount(target: str, spec: dict[str, Any]) -> Mount:
        if spec.get("type") == "volume":
            # Never copy the image's folder into the volume (Docker does, into
            # an empty one): a clone is still being made while dockerd creates
            # this, and a socket folder starts empty.
            spec = {**spec, "no_copy": True}
        return Mount(target, **spec)

    run = run_dir if isinstance(run_dir, dict) else {"source": str(run_dir)}
    mounts = [mount(SOCKET_DIR, {"type": "bind", **run})]
    if data is not None:
        mounts.insert(0, mount(pgdata, data))
    command = ["postgres", "-p", str(port), "-c", f"listen_addresses={listen}"]
    for setting in settings:
        command += ["-c", setting]
    # The low-level call: the high-level one inspects the new container once more,
    # a round trip on the path every new branch waits for.
    made = api.create_container(
        image,
        command=command,
        name=name,
        labels=marks,
        user=user,
        environment={"PGDATA": pgdata},
        entrypoint=entrypoint,
        stop_signal="SIGINT",  # PostgreSQL's fast shutdown: clean, and quick
        host_config=api.create_host_config(network_mode=network, mounts=mounts),
    )
    container: Container = client().containers.prepare_model(
        {"Id": made["Id"], "Name": "/" + name}
    )
    return container


def admin_conninfo(run_dir: Path, port: int, dbname: str = "postgres") -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        "", host=str(run_dir), port=str(port), user=SUPERUSER, dbname=dbname
    )


def wait_ready(
    run_dir: Path, port: int, container: Container, timeout: float = READY_TIMEOUT
) -> psycopg.Connection[Any]:
    """An autocommit superuser connection through the socket, once the server
    takes connections. Raises BackendError (with the log's tail) if the container
    exits or the server is not ready within *timeout*."""
    import psycopg

    conninfo = admin_conninfo(run_dir, port)
    deadline = time.monotonic() + timeout
    checked = time.monotonic()
    while True:
        if (run_dir / f".s.PGSQL.{port}").exists():
            try:
                return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as e:
                if "starting up" not in str(e) and time.monotonic() > deadline:
                    raise _failed(container, str(e)) from None
        now = time.monotonic()
        if now > deadline:
            raise _failed(container, "not ready in time")
        if now - checked > 0.5:  # a crashed server never makes its socket
            checked = now
            container.reload()
            if container.status in ("exited", "dead"):
                raise _failed(container, "the container exited")
        time.sleep(0.005)


def _failed(container: Container, why: str) -> BackendError:
    with contextlib.suppress(Exception):
        tail = container.logs(tail=15).decode(errors="replace").strip()
        why += f"; its log ends:\n{tail}"
    return BackendError(f"PostgreSQL in container {name_of(container)}: {why}")


def stop(container: Container, timeout: int = STOP_TIMEOUT) -> int:
    """Stop *container* with PostgreSQL's fast shutdown; its exit code."""
    container.stop(timeout=timeout)
    result = container.wait(timeout=timeout + 10)
    return int(result.get("StatusCode", -1))


def remove(container: Container | None) -> None:
    """Remove *container* (killed if running); gone already is fine."""
    import docker

    if container is None:
        return
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True, v=False)


def remove_volume(name: str) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        client().volumes.get(name).remove(force=True)


def create_volume(name: str, device: Path, marks: dict[str, str]) -> None:
    """A labelled volume that bind-mounts the host directory *device* (made later:
    the local driver resolves it at mount time)."""
    client().volumes.create(
        name,
        driver="local",
        driver_opts={"type": "none", "o": "bind", "device": str(device)},
        labels=marks,
    )


class Lap:
    """Records the seconds since the previous lap under each name."""

    def __init__(self, into: dict[str, float]) -> None:
        into.clear()
        self.into = into
        self.mark = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.into[name] = now - self.mark
        self.mark = now
