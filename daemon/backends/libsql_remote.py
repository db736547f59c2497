"""Reading a whole database from a libsql server (sqld, or a Turso-compatible one).

``snapshot create NAME --source libsql://…|http(s)://…|ws(s)://…`` lands here: the
server's ``GET /dump`` (SQL text of the whole database, one consistent read) is
loaded into a new local SQLite file, which then becomes a snapshot like any file
source. The token comes from ``$BRANCHDB_SOURCE_AUTH_TOKEN`` (or
``$LIBSQL_AUTH_TOKEN``), never from the URL, so it is never stored or logged.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from branchdb.daemon.core.errors import BackendError, Refused, ServerUnavailable

SCHEMES = ("libsql", "http", "https", "ws", "wss")
TOKEN_ENV = ("BRANCHDB_SOURCE_AUTH_TOKEN", "LIBSQL_AUTH_TOKEN")


def is_server_url(source: str) -> bool:
    return urlsplit(source).scheme in SCHEMES and "://" in source


def http_url(source: str) -> str:
    """The HTTP base URL of a libsql server URL (``libsql://`` is TLS unless
    ``?tls=0``, as in the libsql clients)."""
    parts = urlsplit(source)
    tls = "tls=0" not in parts.query
    scheme = {
        "libsql": "https" if tls else "http",
        "ws": "http",
        "wss": "https",
    }.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def fetch_to_file(source: str, dst: Path) -> None:
    """Write the database at *source* into the new SQLite file *dst*."""
    import httpx

    token = next((os.environ[k] for k in TOKEN_ENV if os.environ.get(k)), None)
    base = http_url(source)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(f"{base}/dump", headers=headers, timeout=600.0)
    except httpx.HTTPError as e:
        raise ServerUnavailable(
            f"libsql server {base} is not reachable ({type(e).__name__})"
        ) from None
    if r.status_code in (401, 403):
        raise Refused(
            f"libsql server {base} refused to dump the database (HTTP "
            f"{r.status_code}): set {TOKEN_ENV[0]} to a token that can read it"
        )
    if r.status_code != 200:
        raise BackendError(
            f"libsql server {base} answered HTTP {r.status_code} to GET /dump"
        )
    db = sqlite3.connect(dst)
    try:
        db.executescript(r.text)
        db.commit()
    except sqlite3.Error as e:
        raise BackendError(f"the dump of {base} does not load: {e}") from None
    finally:
        db.close()
