"""API bearer tokens: made once, stored only as a sha256, checked in constant time.

A token is ``bdb_`` + 32 random bytes (``secrets.token_urlsafe``). The daemon's state
store keeps its id, name, scope and sha256 — never the token — so a leaked state file
grants nothing. Scopes are ordered: ``read`` (get and list branches and snapshots,
poll jobs) < ``ci`` (also create, migrate, reset and delete branches) < ``admin``
(everything).

A token may also be limited to projects (``token create --project P``): it then
reaches only those projects' routes, their jobs and their metrics. A token made
without projects reaches every project, as tokens always did.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from branchdb.daemon.core.errors import Refused
from branchdb.daemon.store.base import Store

PREFIX = "bdb_"
SCOPES = ("read", "ci", "admin")
_RANK = {name: i for i, name in enumerate(SCOPES)}


class Token(NamedTuple):
    id: str
    name: str
    scope: str
    #: The projects this token may reach; empty: every project.
    projects: tuple[str, ...] = ()

    def allows(self, needed: str) -> bool:
        """True if this token's scope includes *needed*."""
        return _RANK[self.scope] >= _RANK[needed]

    def reaches(self, project: str) -> bool:
        """True if this token may act on *project*."""
        return not self.projects or project in self.projects


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(
    store: Store,
    scope: str,
    name: str | None = None,
    projects: Iterable[str] = (),
) -> tuple[str, Token]:
    """Make a new token; returns it in clear (shown once) and its record.

    *projects* limits it to those projects (none: every project); the caller checks
    that they exist.
    """
    if scope not in _RANK:
        raise Refused(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    limited = tuple(sorted(set(projects)))
    secret = PREFIX + secrets.token_urlsafe(32)
    token_id = secrets.token_hex(6)
    label = name or f"{scope}-{token_id}"
    store.put_token(token_id, label, scope, digest(secret), time.time(), limited)
    return secret, Token(token_id, label, scope, limited)


def verify(store: Store, presented: str) -> Token | None:
    """The token record matching *presented*, or None.

    Every stored digest is compared with ``hmac.compare_digest``: the time taken does
    not depend on how much of a digest matched.
    """
    return match(store.list_tokens(), presented)


def match(rows: list[dict[str, Any]], presented: str) -> Token | None:
    """:func:`verify` over already-read token rows (``SqliteStore.list_tokens``)."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    want = digest(presented)
    found: dict[str, Any] | None = None
    for row in rows:
        if hmac.compare_digest(row["sha256"], want):
            found = row
    if found is None or found["scope"] not in _RANK:
        return None
    projects = tuple(found.get("projects") or ())
    return Token(found["id"], found["name"], found["scope"], projects)


def by_digest(rows: list[dict[str, Any]], token_id: str, sha256: str) -> Token | None:
    """The token *token_id* among *rows* if its digest is *sha256* (compared in
    constant time), else None: how a dashboard session, which keeps the digest and
    never the token, checks that its token still stands."""
    for row in rows:
        if row["id"] == token_id and row["scope"] in _RANK:
            if not hmac.compare_digest(row["sha256"], sha256):
                return None
            projects = tuple(row.get("projects") or ())
            return Token(row["id"], row["name"], row["scope"], projects)
    return None


def revoke(store: Store, token_id: str) -> bool:
    return store.delete_token(token_id)


#: The id of the admin token handed to the daemon by its environment (see
#: :func:`bootstrap`).
BOOTSTRAP_ID = "bootstrap"


def bootstrap_digest(token: str | None, sha256: str | None) -> str | None:
    """The sha256 of the bootstrap admin token from ``BRANCHDB_ADMIN_TOKEN`` (or its
    ``_FILE``) or ``BRANCHDB_ADMIN_TOKEN_SHA256``; None if neither is set. Raises
    Refused for a token that is not one of ours or a digest that is not one."""
    if token and sha256:
        raise Refused("set one of BRANCHDB_ADMIN_TOKEN and BRANCHDB_ADMIN_TOKEN_SHA256")
    if token:
        if not token.startswith(PREFIX) or not 24 <= len(token) <= 200:
            raise Refused(
                f"BRANCHDB_ADMIN_TOKEN must start with {PREFIX!r} and be 24 to 200 "
                'characters; make one with `python3 -c "import secrets; '
                "print('bdb_' + secrets.token_urlsafe(32))\"`"
            )
        return digest(token)
    if sha256:
        value = sha256.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise Refused("BRANCHDB_ADMIN_TOKEN_SHA256 must be 64 hex digits")
        return value
    return None


def bootstrap(store: Store, sha256: str) -> bool:
    """Make the admin token whose digest is *sha256* known, as id ``bootstrap``.

    For a daemon in a container: the first admin token comes from a Secret, with no
    shell needed. Idempotent (replicas starting together converge: the digest is
    rewritten only when it changed, i.e. the Secret was rotated; the old token then
    stops working). Revoking it while the variable is still set brings it back at
    the next start: unset the variable to retire it. True if the store changed.
    """
    rows = {r["id"]: r for r in store.list_tokens()}
    current = rows.get(BOOTSTRAP_ID)
    if current is not None and hmac.compare_digest(current["sha256"], sha256):
        return False
    if current is not None:
        store.delete_token(BOOTSTRAP_ID)
    try:
        store.put_token(
            BOOTSTRAP_ID, "bootstrap (environment)", "admin", sha256, time.time()
        )
    except Exception:
        # Another replica inserted it between our read and write: theirs is the same
        # Secret's digest or a newer one; either way a token exists.
        if not any(r["id"] == BOOTSTRAP_ID for r in store.list_tokens()):
            raise
        return False
    return True
