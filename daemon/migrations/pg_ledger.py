"""A PostgreSQL branch database's ledger fingerprint, read with the standard library.

The checkout hook must notice that the team's tool changed the ledger (a rollback, a
restored database) without importing psycopg (~120 ms, the hook's whole budget). This
speaks just enough of the PostgreSQL protocol (v3) for one query: a plain TCP
connection, trust / password / md5 / SCRAM-SHA-256 authentication, one simple query.
Anything else — TLS required, a Unix socket, an unexpected message — answers None, and
the caller then does what it did before (trusts the files' fingerprint).

The query hashes, on the server, every known ledger table (and any table whose name
contains ``migration``), so the engine (after migrating) and the hook compute the same
value with the same code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct

from branchdb.daemon.migrations.files import LEDGER_TABLES

_TIMEOUT = 1.0


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fingerprint_query(extra: tuple[str, ...] = ()) -> str:
    names = ",".join(_literal(t) for t in dict.fromkeys(LEDGER_TABLES + extra))
    return (
        "SELECT md5(coalesce(string_agg(n.nspname || '.' || c.relname || ':' || "
        "query_to_xml(format('SELECT * FROM %I.%I ORDER BY 1', n.nspname, "
        "c.relname), false, false, '')::text, ';' ORDER BY n.nspname, c.relname), ''))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND has_schema_privilege(n.oid, 'USAGE')"
        " AND has_table_privilege(c.oid, 'SELECT')"
        f" AND (c.relname IN ({names}) OR c.relname LIKE '%migration%')"
    )


def ledger_fingerprint(url: str, extra: tuple[str, ...] = ()) -> str | None:
    """The ledger fingerprint of the database at *url*, or None if unreachable here.

    Read-only; one connection of at most ~1 s (usually a few ms)."""
    try:
        params = _parse(url)
        if params is None:
            return None
        rows = _query(params, fingerprint_query(extra))
    except (OSError, ValueError, struct.error, UnicodeError):
        return None
    if not rows or rows[0][0] is None:
        return None
    return str(rows[0][0])[:32]


def supported(url: str) -> bool:
    """True when :func:`ledger_fingerprint` can reach *url* at all (plain TCP, no TLS
    required). When it cannot, the engine records no ledger fingerprint either, so
    the hook keeps trusting the files' fingerprint instead of always falling back."""
    try:
        return _parse(url) is not None
    except ValueError:
        return False


def _parse(url: str) -> dict[str, str] | None:
    """host, port, user, password, database of a ``postgresql://`` URL; None when
    it needs anything this module does not do (TLS, a socket directory)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        return None
    query = dict(parse_qsl(parts.query))
    if query.get("sslmode", "prefer") not in ("disable", "allow", "prefer"):
        return None
    if set(query) - {"sslmode", "application_name", "connect_timeout"}:
        return None
    return {
        "host": parts.hostname,
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or unquote(parts.username or ""),
    }


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self) -> tuple[bytes, bytes]:
        while len(self.buf) < 5:
            self._fill()
        kind = self.buf[:1]
        (length,) = struct.unpack("!i", self.buf[1:5])
        while len(self.buf) < 1 + length:
            self._fill()
        body = self.buf[5 : 1 + length]
        self.buf = self.buf[1 + length :]
        if kind == b"E":
            raise ValueError("server error")
        return kind, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        self.buf += chunk


def _query(p: dict[str, str], sql: str) -> list[list[str | None]]:
    with socket.create_connection((p["host"], int(p["port"])), _TIMEOUT) as sock:
        sock.settimeout(_TIMEOUT)
        conn = _Conn(sock)
        startup = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (("user", p["user"]), ("database", p["database"]))
        )
        body = struct.pack("!i", 196608) + startup + b"\0"
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        _authenticate(conn, p["user"], p["password"])
        while conn.read()[0] != b"Z":  # ParameterStatus, BackendKeyData
            pass
        sock.sendall(_message(b"Q", sql.encode() + b"\0"))
        rows: list[list[str | None]] = []
        while True:
            kind, body = conn.read()
            if kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"Z":
                break
        sock.sendall(_message(b"X", b""))
        return rows


def _data_row(body: bytes) -> list[str | None]:
    (count,) = struct.unpack("!h", body[:2])
    pos, out = 2, list[str | None]()
    for _ in range(count):
        (size,) = struct.unpack("!i", body[pos : pos + 4])
        pos += 4
        if size < 0:
            out.append(None)
            continue
        out.append(body[pos : pos + size].decode())
        pos += size
    return out


def _authenticate(conn: _Conn, user: str, password: str) -> None:
    nonce = client_first = ""
    salted = b""
    while True:
        kind, body = conn.read()
        if kind != b"R":
            raise ValueError("expected authentication")
        (code,) = struct.unpack("!i", body[:4])
        if code == 0:
            return
        if code == 3:  # cleartext
            conn.sock.sendall(_message(b"p", password.encode() + b"\0"))
        elif code == 5:  # md5
            inner = hashlib.md5((password + user).encode()).hexdigest()
            outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
            conn.sock.sendall(_message(b"p", b"md5" + outer.encode() + b"\0"))
        elif code == 10:  # SASL: SCRAM-SHA-256 (RFC 5802 / 7677)
            if b"SCRAM-SHA-256\0" not in body[4:]:
                raise ValueError("no supported SASL mechanism")
            nonce = base64.b64encode(os.urandom(18)).decode()
            client_first = f"n=,r={nonce}"
            first = ("n,," + client_first).encode()
            conn.sock.sendall(
                _message(
                    b"p",
                    b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first,
                )
            )
        elif code == 11:  # SASL continue: server-first-message
            server_first = body[4:].decode()
            attrs = dict(a.split("=", 1) for a in server_first.split(","))
            if not attrs["r"].startswith(nonce):
                raise ValueError("bad SCRAM nonce")
            salted = hashlib.pbkdf2_hmac(
                "sha256",
                password.encode(),
                base64.b64decode(attrs["s"]),
                int(attrs["i"]),
            )
            client_key = hmac.digest(salted, b"Client Key", "sha256")
            final_bare = f"c=biws,r={attrs['r']}"
            auth = f"{client_first},{server_first},{final_bare}".encode()
            signature = hmac.digest(hashlib.sha256(client_key).digest(), auth, "sha256")
            proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
            final = f"{final_bare},p={base64.b64encode(proof).decode()}"
            conn.sock.sendall(_message(b"p", final.encode()))
        elif code == 12:  # SASL final: the server's signature (checked by auth 0)
            continue
        else:
            raise ValueError(f"unsupported authentication {code}")
