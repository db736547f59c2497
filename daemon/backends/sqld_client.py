"""Talking to sqld: its admin API, and Hrana over HTTP for one namespace.

sqld chooses the namespace of a request by the first label of its ``Host`` header
(``libsql-server/src/http/user/db_factory.rs``), so the daemon reaches any namespace
through the one server URL it is configured with, setting ``Host`` itself; clients
elsewhere use the public URL (``{namespace}.db.example.com``) and DNS.

The session speaks Hrana 2 over HTTP (``POST /v2/pipeline``) with httpx rather than
through libsql-client: libsql-client 0.3 cannot set a ``Host`` header (its aiohttp
session is built inside the client), and over ``http://`` it has no transactions.
Hrana's *baton* keeps one server-side stream across requests, so a transaction
(``BEGIN IMMEDIATE`` … ``COMMIT``) spans several pipeline calls on the same
connection, exactly as it does on a file.
"""

from __future__ import annotations

import atexit
import base64
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from branchdb.daemon.backends.sqlite_session import migration_lock
from branchdb.daemon.core.dbsession import Row
from branchdb.daemon.core.errors import (
    BackendError,
    DatabaseError,
    Refused,
    ServerUnavailable,
)

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_shared: httpx.Client | None = None
_shared_lock = threading.Lock()


def client() -> httpx.Client:
    """One HTTP client per process (thread-safe; keeps connections alive). Building
    an ``httpx.Client`` costs ~50 ms (its TLS context): never one per request."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = httpx.Client(timeout=TIMEOUT, trust_env=False)
            atexit.register(_shared.close)
        return _shared


def _unreachable(what: str, url: str, e: Exception) -> ServerUnavailable:
    return ServerUnavailable(
        f"sqld {what} at {url} is not reachable ({type(e).__name__}: {e}); is sqld "
        "running? (a managed one is started by the daemon; a team one by its team)"
    )


def _error_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:300]
    err = body.get("error") if isinstance(body, dict) else None
    return str(err if err is not None else body)[:300]


class Admin:
    """sqld's admin API (``--admin-listen-addr``): namespaces by name."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return client().request(method, self.url + path, **kw)
        except httpx.HTTPError as e:
            raise _unreachable("admin API", self.url, e) from None

    def exists(self, namespace: str) -> bool:
        r = self._call("GET", f"/v1/namespaces/{namespace}/config")
        if r.status_code == 404:
            return False
        if r.status_code != 200:
            raise BackendError(
                f"sqld admin API {self.url} refused to describe namespace "
                f"{namespace}: HTTP {r.status_code} {_error_text(r)}"
            )
        return True

    def create(self, namespace: str, body: dict[str, Any] | None = None) -> None:
        r = self._call("POST", f"/v1/namespaces/{namespace}/create", json=body or {})
        if r.status_code == 200:
            return
        text = _error_text(r)
        if "already exists" in text:
            raise Refused(f"sqld namespace {namespace} already exists on {self.url}")
        raise BackendError(
            f"sqld admin API {self.url} refused to create namespace {namespace}: "
            f"HTTP {r.status_code} {text}"
        )

    def delete(self, namespace: str) -> None:
        """Delete *namespace* (idempotent: an absent one is fine)."""
        r = self._call("DELETE", f"/v1/namespaces/{namespace}")
        if r.status_code not in (200, 404):
            raise BackendError(
                f"sqld admin API {self.url} refused to delete namespace {namespace}: "
                f"HTTP {r.status_code} {_error_text(r)}"
            )

    def set_jwt_key(self, namespace: str, pem: str) -> None:
        """Replace *namespace*'s own JWT key (its other settings kept): every token
        signed with the old key is refused from now on."""
        r = self._call("GET", f"/v1/namespaces/{namespace}/config")
        if r.status_code == 200:
            body = r.json()
            body["jwt_key"] = pem
            r = self._call("POST", f"/v1/namespaces/{namespace}/config", json=body)
        if r.status_code != 200:
            raise BackendError(
                f"sqld admin API {self.url} refused to set the key of namespace "
                f"{namespace}: HTTP {r.status_code} {_error_text(r)}"
            )

    def stats(self, namespace: str) -> dict[str, Any]:
        r = self._call("GET", f"/v1/namespaces/{namespace}/stats")
        if r.status_code != 200:
            return {}
        out: dict[str, Any] = r.json()
        return out


def encode_value(v: Any) -> dict[str, Any]:
    if v is None:
        return {"type": "null"}
    if isinstance(v, bool):
        return {"type": "integer", "value": str(int(v))}
    if isinstance(v, int):
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": v}
    if isinstance(v, bytes | bytearray | memoryview):
        return {"type": "blob", "base64": base64.b64encode(bytes(v)).decode("ascii")}
    return {"type": "text", "value": str(v)}


def decode_value(v: dict[str, Any]) -> Any:
    kind = v.get("type")
    if kind == "integer":
        return int(v["value"])
    if kind == "float":
        return float(v["value"])
    if kind == "text":
        return v["value"]
    if kind == "blob":
        data = v["base64"]
        return base64.b64decode(data + "=" * (-len(data) % 4))
    return None


def host_for(namespace: str, server: str) -> str:
    """The ``Host`` header that selects *namespace* on *server*."""
    netloc = urlsplit(server).netloc
    return f"{namespace}.{netloc}"


class HranaSession:
    """Owner session on one sqld namespace (a :class:`DbSession`)."""

    dialect = "sqlite"

    def __init__(
        self, server: str, namespace: str, token: str, url: str, lock_dir: Path
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.auth_token = token  # for the team's migrate command (format "command")
        self._server = server.rstrip("/")
        self._lock_path = str(lock_dir / namespace)
        self._baton: str | None = None
        self._headers = {
            "Host": host_for(namespace, self._server),
            "Authorization": f"Bearer {token}",
        }
        self.execute("SELECT 1")

    # ------------------------------------------------------------ protocol
    def _pipeline(
        self, requests: list[dict[str, Any]], *, keep: bool
    ) -> list[dict[str, Any]]:
        if not keep:
            requests = [*requests, {"type": "close"}]
        body = {"baton": self._baton, "requests": requests}
        try:
            r = client().post(
                f"{self._server}/v2/pipeline", json=body, headers=self._headers
            )
        except httpx.HTTPError as e:
            self._baton = None
            raise _unreachable("server", self._server, e) from None
        if r.status_code == 401:
            raise Refused(
                f"sqld {self._server} refused branchdb's token for namespace "
                f"{self.namespace}: {_error_text(r)} (the namespace's key, or for "
                "one made before per-branch keys sqld's --auth-jwt-key-file, does "
                "not come from libsql.key_file)"
            )
        if r.status_code == 404:
            raise BackendError(
                f"sqld namespace {self.namespace} does not exist on {self._server}"
            )
        if r.status_code != 200:
            self._baton = None
            raise BackendError(
                f"sqld {self._server} answered HTTP {r.status_code}: {_error_text(r)}"
            )
        out = r.json()
        self._baton = out.get("baton") if keep else None
        results: list[dict[str, Any]] = out["results"]
        return results

    def _run(self, sql: str, params: Sequence[Any] | None, *, keep: bool) -> list[Row]:
        stmt: dict[str, Any] = {"sql": sql, "want_rows": True}
        if params is not None:
            stmt["args"] = [encode_value(p) for p in params]
        result = self._pipeline([{"type": "execute", "stmt": stmt}], keep=keep)[0]
        if result["type"] == "error":
            raise DatabaseError(str(result["error"].get("message", result["error"])))
        rows = result["response"]["result"]["rows"]
        return [tuple(decode_value(v) for v in row) for row in rows]

    # ------------------------------------------------------------ DbSession
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        return self._run(sql, params, keep=self._baton is not None)

    @contextmanager
    def transaction(self) -> Iterator[HranaSession]:
        # The stream (and its connection) stays open from BEGIN to COMMIT.
        self._run("BEGIN IMMEDIATE", None, keep=True)
        try:
            yield self
        except BaseException:
            if self._baton is not None:
                try:
                    self._run("ROLLBACK", None, keep=False)
                except (BackendError, DatabaseError):
                    self._baton = None  # the server drops the stream's transaction
            raise
        else:
            self._run("COMMIT", None, keep=False)

    def executescript(self, statements: Sequence[str]) -> None:
        """Run *statements* in one pipeline request (inside the open stream)."""
        reqs = [{"type": "execute", "stmt": {"sql": s}} for s in statements]
        for res in self._pipeline(reqs, keep=self._baton is not None):
            if res["type"] == "error":
                raise DatabaseError(str(res["error"].get("message", res["error"])))

    def migration_lock(self) -> AbstractContextManager[None]:
        return migration_lock(self._lock_path)

    def close(self) -> None:
        if self._baton is not None:
            with suppress(BackendError, DatabaseError, Refused):
                self._pipeline([], keep=False)

    def __enter__(self) -> HranaSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
