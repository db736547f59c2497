"""Dashboard sessions: a pasted API token becomes a signed, expiring session cookie.

The cookie never holds the token, nor anything that opens the API. Signing in
checks the pasted token like the API does (:func:`branchdb.daemon.api.tokens.match`),
then keeps, in this process's memory, a session: the token's id and sha256 (what the
state store keeps too), its scope and projects, a CSRF secret and an expiry. The
browser gets only ``<session id>.<HMAC of it>`` — HttpOnly, SameSite=Strict, Path
``/ui``, Secure over https — signed with a key made at start (``secrets``), so a
cookie from another daemon, or a forged one, is refused before any lookup.

Every request re-checks the token by id and digest against the token table
(:meth:`~branchdb.daemon.api.deps.TokenCache.by_digest`): revoking the token ends
its sessions within a second. Sessions end after :data:`LIFETIME` seconds, on sign
out, and when the daemon restarts (they live in its memory; each replica of a
shared-store deployment keeps its own, so a load balancer needs sticky sessions).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from branchdb.daemon.api.tokens import Token

COOKIE = "branchdb_session"
#: Seconds a session lasts from sign-in.
LIFETIME = 8 * 3600
#: Most sessions kept at once; the oldest are forgotten first.
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    token_id: str
    token_sha256: str
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def csrf_ok(self, presented: str | None) -> bool:
        """True if *presented* is this session's CSRF token (constant time)."""
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf.encode()
        )


class Sessions:
    """The sessions of one daemon process (see the module docstring)."""

    def __init__(self, lifetime: float = LIFETIME) -> None:
        self.lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}

    def _sign(self, sid: str) -> str:
        return hmac.new(self._key, sid.encode(), hashlib.sha256).hexdigest()

    def start(self, token: Token, token_sha256: str) -> tuple[Session, str]:
        """A new session for *token*; returns it and the cookie value."""
        now = time.time()
        self._forget_expired(now)
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        session = Session(sid, token.id, token_sha256, now + self.lifetime)
        self._sessions[sid] = session
        return session, f"{sid}.{self._sign(sid)}"

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie value names, or None (unsigned, unknown,
        expired)."""
        if not cookie or len(cookie) > 200 or "." not in cookie:
            return None
        sid, _, sig = cookie.partition(".")
        if not hmac.compare_digest(sig.encode(), self._sign(sid).encode()):
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires_at <= time.time():
            self._sessions.pop(sid, None)
            return None
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def _forget_expired(self, now: float) -> None:
        for sid in [s for s, v in self._sessions.items() if v.expires_at <= now]:
            del self._sessions[sid]
