"""Remote mode: the CLI's verbs as calls to a branchdb daemon's API (httpx).

On when ``[server] url`` (or ``$BRANCHDB_SERVER``) is set. The token comes from
``$BRANCHDB_TOKEN`` and is only ever sent in the Authorization header (never printed,
never logged). The project is the local ``branchdb.toml``'s ``project.name``; the
daemon must serve a project of that name.

Commands that apply migrations (``up``, ``migrate``, ``reset``, ``status``) upload the
local migrations directory as a tar.gz — the files as the local format sees them,
uncommitted ones included — so the daemon applies what embedded mode would. Long work
runs as a daemon job that is polled; its progress lines are shown on a terminal.

Every failure becomes a :class:`RemoteError` (one line, no traceback): the daemon's
JSON error message with the exit code embedded mode would use, or a transport problem
(server down, timeout) worded so the user knows what to check.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from branchdb.cli.client import Json, Progress, no_progress, protected
from branchdb.daemon.core import errors
from branchdb.daemon.core.errors import BranchdbError, ConfigError, MigrationError
from branchdb.daemon.migrations import files as migration_files

if TYPE_CHECKING:
    from branchdb.daemon import wire
    from branchdb.daemon.config.project import Config

#: Seconds to wait for one HTTP answer (jobs are polled, so this is never the
#: length of a migration).
TIMEOUT = 60.0
#: Longest wait for a background job before giving up on it (it keeps running).
JOB_TIMEOUT = 3600.0


class RemoteError(BranchdbError):
    """A failed call to the daemon: its error message, or why it was unreachable."""

    def __init__(self, message: str, exit_code: int = 1, http_status: int = 502):
        super().__init__(message)
        self.exit_code = exit_code
        self.http_status = http_status


def _exit_code(kind: str) -> int:
    """The exit code embedded mode uses for the daemon's error type *kind*."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, BranchdbError):
        return cls.exit_code
    if kind == "RulesError":  # outside errors.py, and not the default exit code
        from branchdb.daemon.sanitize.rules import RulesError

        return RulesError.exit_code
    return 1


def _check_url(url: str) -> str:
    """*url* without a trailing slash; ConfigError unless it is an http(s) URL."""
    try:
        parsed = httpx.URL(url)
        ok = parsed.scheme in ("http", "https") and bool(parsed.host)
    except (httpx.InvalidURL, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"server.url / BRANCHDB_SERVER must be an http:// or https:// URL of "
            f"a branchdb daemon, got {url!r}"
        )
    return url.rstrip("/")


def pack_migrations(config: Config) -> bytes | None:
    """The local migrations directory as a tar.gz, or None to upload nothing.

    None for ``format = "command"`` (the daemon runs the command on its own checkout).
    A project without a migrations directory uploads an empty archive: the branch
    has no migrations, whatever the daemon's copy holds. Raises ConfigError for a
    configured directory that does not exist, as embedded mode does, and
    MigrationError naming a file that cannot be read (a dangling link).
    """
    cfg = config.migrations
    if cfg.format == "command":
        return None
    folder = migration_files.migrations_dir(
        str(config.root), str(cfg.dir) if cfg.dir else None, cfg.format
    )
    if folder is not None and not os.path.isdir(folder):
        raise ConfigError(
            f"migrations.dir {cfg.dir} does not exist (looked in {folder})"
        )
    buf = io.BytesIO()
    # Fixed mtime and mode: the archive depends on the files' content alone.
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for rel in migration_files.list_files(folder) if folder else []:
            full = os.path.join(folder, rel)  # type: ignore[arg-type]
            try:
                with open(full, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise MigrationError(migration_files.unreadable(full, e)) from None
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class RemoteClient:
    """The :class:`~branchdb.cli.client.Client` verbs over the daemon's HTTP API."""

    def __init__(self, config: Config, token: str | None = None) -> None:
        assert config.server.url
        self.config = config
        self.server = _check_url(config.server.url)
        self.project = config.project.name
        token = token if token is not None else os.environ.get("BRANCHDB_TOKEN", "")
        headers = {"User-Agent": "branchdb-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.server, headers=headers, timeout=TIMEOUT
        )

    # ------------------------------------------------------------ plumbing
    def _path(self, *parts: str) -> str:
        base = f"/v1/projects/{quote(self.project, safe='')}"
        return base + "".join("/" + quote(p, safe="/@") for p in parts)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.ConnectError:
            raise RemoteError(
                f"cannot reach the branchdb server at {self.server} (connection "
                "refused or unknown host): is `branchdb serve` running? "
                "(server.url / BRANCHDB_SERVER)"
            ) from None
        except httpx.TimeoutException:
            raise RemoteError(
                f"the branchdb server at {self.server} did not answer in time"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise RemoteError(
                f"talking to the branchdb server at {self.server} failed: "
                f"{type(e).__name__}: {e}"
            ) from None
        if r.status_code >= 400:
            raise self._error(r.status_code, r)
        return r.json()

    def _error(self, status: int, r: httpx.Response | None, body: Any = None) -> Any:
        if r is not None:
            try:
                body = r.json()
            except ValueError:
                text = r.text.strip().splitlines()[0][:200] if r.text.strip() else ""
                return RemoteError(
                    f"the branchdb server at {self.server} answered HTTP {status}"
                    + (f": {text}" if text else ""),
                    http_status=status,
                )
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return RemoteError(
                f"the branchdb server at {self.server} answered HTTP {status}",
                http_status=status,
            )
        kind, message = str(err.get("type", "")), str(err.get("message", ""))
        if status == 401:
            message = (
                f"the branchdb server at {self.server} refused the token: {message}; "
                "set BRANCHDB_TOKEN to a valid token (`branchdb token create`)"
            )
        elif status == 403:
            message = f"the branchdb server at {self.server} refused: {message}"
        elif status == 404 and message.startswith("no project "):
            message = (
                f"{message} (server {self.server}); project.name in "
                f"{self.config.path} must name a project the daemon serves"
            )
        return RemoteError(message, _exit_code(kind), status)

    def _long(
        self,
        method: str,
        path: str,
        progress: Progress,
        params: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        """Start a background job (``wait=false``) and poll it to its end."""
        job = self._call(method, path, params={**(params or {}), "wait": "false"}, **kw)
        shown = 0
        delay = 0.02
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            lines = job.get("progress") or []
            for line in lines[shown:]:
                progress(line)
            shown = max(shown, len(lines))
            if job["status"] != "running":
                break
            if time.monotonic() > deadline:
                raise RemoteError(
                    f"gave up waiting for job {job['id']} on {self.server} "
                    "(it keeps running there)"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
            job = self._call("GET", f"/v1/jobs/{job['id']}")
        if job["status"] == "failed":
            raise self._error(job.get("http_status") or 500, None, job)
        return job["result"]

    def _upload(self) -> dict[str, Any]:
        data = pack_migrations(self.config)
        if data is None:
            return {}
        return {"content": data, "headers": {"Content-Type": "application/gzip"}}

    @staticmethod
    def _flags(**kw: Any) -> dict[str, Any]:
        """Query parameters: None and False (the API's defaults) left out."""
        out = {}
        for k, v in kw.items():
            if v is None or v is False:
                continue
            out[k] = "true" if v is True else v
        return out

    # --------------------------------------------------------------- verbs
    def up(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        reset_on_drift: bool | None = None,
        lock_timeout: float | None = None,
        progress: Progress = no_progress,
    ) -> wire.UpBranch:
        params = self._flags(
            fresh=fresh, reset_on_drift=reset_on_drift, **{"from": from_snapshot}
        )
        path = self._path("branches", branch)
        result: wire.UpBranch = self._long(
            "PUT", path, progress, params, **self._upload()
        )
        return result

    def review(
        self, branch: str, *, against: str | None = None, drift: bool = False
    ) -> wire.SchemaReview:
        params: dict[str, Any] = {"format": "json"}
        if against:
            params["against"] = against
        if drift:
            params["drift"] = "true"
        path = self._path("branches", branch, "diff")
        result: wire.SchemaReview = self._call("GET", path, params=params)
        return result

    def use(self, branch: str) -> wire.Branch:
        result: wire.Branch = self._call("GET", self._path("branches", branch))
        return result

    def list_branches(self) -> list[wire.Branch]:
        result: list[wire.Branch] = self._call("GET", self._path("branches"))
        return result

    def status(self, branch: str) -> wire.BranchStatus:
        path = self._path("branches", branch, "status")
        result: wire.BranchStatus = self._call("POST", path, **self._upload())
        return result

    def migrate(
        self, branch: str, *, dry_run: bool = False, progress: Progress = no_progress
    ) -> wire.Migrate:
        path = self._path("branches", branch, "migrate")
        params = self._flags(dry_run=dry_run)
        result: wire.Migrate = self._long(
            "POST", path, progress, params, **self._upload()
        )
        return result

    def reset(
        self,
        branch: str,
        *,
        fresh: bool = False,
        from_snapshot: str | None = None,
        force: bool = False,
        progress: Progress = no_progress,
    ) -> wire.ResetBranch:
        path = self._path("branches", branch, "reset")
        params = self._flags(fresh=fresh, force=force, **{"from": from_snapshot})
        result: wire.ResetBranch = self._long(
            "POST", path, progress, params, **self._upload()
        )
        return result

    def down(self, branch: str, *, force: bool = False) -> wire.DroppedBranch:
        params = self._flags(force=force)
        result: wire.DroppedBranch = self._call(
            "DELETE", self._path("branches", branch), params=params
        )
        return result

    def set_ttl(self, branch: str, ttl: str) -> wire.Ttl:
        path = self._path("branches", branch)
        result: wire.Ttl = self._call("PATCH", path, json={"ttl": ttl})
        return result

    def is_protected(self, branch: str) -> bool:
        # The local branchdb.toml's patterns; the daemon checks its own as well.
        return protected(self.config, branch)

    def snapshot_create(
        self,
        name: str,
        source: str,
        *,
        rules: str | None = None,
        allow_unreviewed: bool = False,
        progress: Progress = no_progress,
    ) -> wire.CreatedSnapshot:
        body: Json = {"name": name, "source": source}
        if rules is not None:
            # Relative to branchdb.toml, as in embedded mode; sent as text.
            path = self.config.root / rules
            try:
                body["rules"] = path.read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(
                    f"cannot read rules file {path}: {e.strerror}"
                ) from None
            body["rules_name"] = str(path)  # what the daemon's errors call it
        if allow_unreviewed:
            body["allow_unreviewed"] = True
        result: wire.CreatedSnapshot = self._long(
            "POST", self._path("snapshots"), progress, json=body
        )
        return result

    def snapshot_refresh(
        self, name: str, *, progress: Progress = no_progress
    ) -> wire.CreatedSnapshot:
        result: wire.CreatedSnapshot = self._long(
            "POST", self._path("snapshots"), progress, json={"name": name}
        )
        return result

    def snapshot_list(self) -> list[wire.Snapshot]:
        result: list[wire.Snapshot] = self._call("GET", self._path("snapshots"))
        return result

    def snapshot_rm(self, ref: str) -> list[wire.Snapshot]:
        path = f"{self._path('snapshots')}/{quote(ref, safe='@')}"
        result: list[wire.Snapshot] = self._call("DELETE", path)
        return result

    def gc(self, *, dry_run: bool, progress: Progress = no_progress) -> wire.Gc:
        path = self._path("gc")
        if dry_run:
            result: wire.Gc = self._call("GET", path)
        else:
            result = self._call("POST", path, timeout=JOB_TIMEOUT)
        return result
