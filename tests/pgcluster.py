"""A throwaway PostgreSQL cluster for tests and benches: temp dir, free port, torn down.

``start_cluster()`` runs ``initdb`` + ``pg_ctl start`` (as the ``postgres`` OS user when
we are root, since both refuse to run as root). Authentication is set up so that
per-branch passwords are really checked::

    local  all  all                     trust          admin tooling over the socket
    host   all  postgres  127.0.0.1/32  trust          the admin URL
    host   all  all       127.0.0.1/32  scram-sha-256  every other role

``pg_cluster`` is a session-scoped fixture (re-exported by tests/conftest.py). When the
binaries are missing it skips, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("BRANCHDB_PG_BIN", "/usr/lib/postgresql/15/bin"))
_HBA = """\
local   all   all                      trust
host    all   postgres   127.0.0.1/32  trust
host    all   all        127.0.0.1/32  scram-sha-256
"""


def _as_postgres() -> bool:
    return os.geteuid() == 0


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    if _as_postgres():
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    root: Path
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str, user: str = "postgres", password: str = "") -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage); :meth:`resume` ends it."""
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "stop",
                "-w",
                "-D",
                str(self.datadir),
                "-m",
                "fast",
            ]
        )

    def resume(self) -> None:
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.datadir),
                "-l",
                str(self.root / "server.log"),
            ]
        )

    def pgbench(self, dbname: str, scale: int) -> int:
        """Create *dbname* filled by ``pgbench -i -s scale`` (scale 70: ~1 GiB,
        for the benchmarks); its size in bytes."""
        _run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
              "-U", "postgres", dbname])  # fmt: skip
        _run([str(PG_BIN / "pgbench"), "-q", "-i", "-s", str(scale), "-h",
              "127.0.0.1", "-p", str(self.port), "-U", "postgres", dbname])  # fmt: skip
        import psycopg

        with psycopg.connect(self.url(dbname)) as c:
            row = c.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(
                [str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast"]
            )
        shutil.rmtree(self.root, ignore_errors=True)


def available() -> bool:
    return (PG_BIN / "initdb").is_file() and (PG_BIN / "pg_ctl").is_file()


def start_cluster(
    tmp_root: Path | None = None, *, fsync: bool = False, settings: str = ""
) -> Cluster:
    """Start a fresh cluster in a new directory under *tmp_root* (default /tmp).

    ``fsync=False`` (tests) trades durability for speed; benchmarks pass True.
    """
    if not available():
        raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}")
    base = tmp_root or Path(tempfile.gettempdir())
    # pytest's own tmp dirs are 0700 root-owned: the postgres user could not reach them.
    root = Path(tempfile.mkdtemp(prefix="branchdb-pg-", dir=base))
    os.chmod(root, 0o755)
    if _as_postgres():
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(root=root, port=free_port())
    try:
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(cluster.datadir),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=trust",
                "--no-sync",
            ]
        )
        conf = (
            f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\n"
            f"unix_socket_directories = '{root}'\nfsync = {'on' if fsync else 'off'}\n"
            "password_encryption = 'scram-sha-256'\nmax_connections = 100\n"
            f"{settings}\n"
        )
        hba = _HBA
        for name, text in (("postgresql.auto.conf", conf), ("pg_hba.conf", hba)):
            path = cluster.datadir / name
            path.write_text(text)
            if _as_postgres():
                shutil.chown(path, "postgres", "postgres")
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(cluster.datadir),
                "-l",
                str(root / "server.log"),
            ]
        )
    except BaseException:
        cluster.stop()
        raise
    _wait_ready(cluster)
    return cluster


def _wait_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", cluster.port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not accept connections on {cluster.port}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster for the whole test session."""
    if not available():
        msg = f"PostgreSQL binaries not found in {PG_BIN}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
