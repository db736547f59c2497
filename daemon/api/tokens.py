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


def revoke(store: Store, token_id: str) -> bool:
    return store.delete_token(token_id)
