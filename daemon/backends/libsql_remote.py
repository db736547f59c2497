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
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from branchdb.daemon.core.errors import BackendError, Refused, ServerUnavailable

SCHEMES = ("libsql", "http", "https", "ws", "wss")
TOKEN_ENV = ("BRANCHDB_SOURCE_AUTH_TOKEN", "LIBSQL_AUTH_TOKEN")
MAX_DUMP_BYTES = 64 << 30


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
    """Write the database at *source* into the new SQLite file *dst*.

    The dump is streamed and run statement by statement, never held whole in
    memory; a dump over ``$BRANCHDB_MAX_DUMP_BYTES`` (default 64 GiB) is refused
    before the rest of it is read."""
    import httpx

    token = next((os.environ[k] for k in TOKEN_ENV if os.environ.get(k)), None)
    base = http_url(source)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limit = int(os.environ.get("BRANCHDB_MAX_DUMP_BYTES") or MAX_DUMP_BYTES)
    db = sqlite3.connect(dst, isolation_level=None)
    try:
        with httpx.stream("GET", f"{base}/dump", headers=headers, timeout=600.0) as r:
            if r.status_code in (401, 403):
                raise Refused(
                    f"libsql server {base} refused to dump the database (HTTP "
                    f"{r.status_code}): set {TOKEN_ENV[0]} to a token that can "
                    "read it"
                )
            if r.status_code != 200:
                raise BackendError(
                    f"libsql server {base} answered HTTP {r.status_code} to GET /dump"
                )
            _load(db, r.iter_lines(), base, limit)
    except httpx.HTTPError as e:
        raise ServerUnavailable(
            f"libsql server {base} is not reachable ({type(e).__name__})"
        ) from None
    except sqlite3.Error as e:
        raise BackendError(f"the dump of {base} does not load: {e}") from None
    finally:
        db.close()


def _load(db: sqlite3.Connection, lines: Iterator[str], base: str, limit: int) -> None:
    """Run the dump's statements as they arrive. A statement ends on a line ending
    in ``;`` where ``sqlite3.complete_statement`` agrees (not a ``;`` inside a
    string or a trigger body)."""
    read = 0
    pending: list[str] = []
    for line in lines:
        read += len(line) + 1
        if read > limit:
            raise Refused(
                f"the dump of {base} is over {limit} bytes; raise "
                "BRANCHDB_MAX_DUMP_BYTES if that is expected"
            )
        pending.append(line)
        if line.rstrip().endswith(";"):
            text = "\n".join(pending)
            if sqlite3.complete_statement(text):
                try:
                    db.execute(text)
                except sqlite3.Warning:  # several statements on one line
                    db.executescript(text)
                pending = []
    if "".join(pending).strip():
        raise BackendError(f"the dump of {base} ends inside a statement")
