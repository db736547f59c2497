"""Ed25519 keys and the JWTs sqld accepts (``--auth-jwt-key-file``).

sqld 0.24 (``libsql-server/src/auth/user_auth_strategies/jwt.rs``) verifies an
EdDSA JWT and reads the claims ``id`` (the one namespace the token opens; absent:
every namespace), ``a`` (``"rw"`` or ``"ro"``) and ``exp`` (``jsonwebtoken`` 9
refuses an expired token, "The JWT has expired"; ``exp`` is optional). A token
carrying ``id`` is refused on any other namespace
(``Authenticated::is_namespace_authorized``, answered as "namespace doesn't exist").

**A key per namespace.** sqld also keeps a ``jwt_key`` in each namespace's config
(admin API: ``POST /v1/namespaces/NS/create {"jwt_key": PEM}``, ``GET``/``POST
/v1/namespaces/NS/config``); where one is set it *replaces* the server's key for
that namespace (``http/user/extract.rs``), and deleting the namespace deletes it.
branchdb gives every branch namespace its own key, derived from the daemon's key
and a random ``key_id`` kept in the branch's record (:meth:`Signer.namespace_key`).
So a deleted branch's tokens are dead even when a branch of the same name (same
namespace) is made again — it gets a new ``key_id`` — and ``reset`` keeps the
``key_id``, hence the token. Deriving, rather than storing a private key per
branch, keeps one secret at rest: the key file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_DERIVE = b"branchdb/sqld-namespace-key/v1\0"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims(token: str) -> dict[str, Any]:
    """The claims of *token*, unverified ({} if it is not a JWT). Standard library
    only: the hook's fast path reads ``exp`` with it."""
    try:
        body = token.split(".")[1]
        out = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def stale(token: str, now: float | None = None) -> bool:
    """True once less than half of *token*'s lifetime (``exp`` - ``iat``) is left:
    it is then re-signed before it is handed out, so a token anyone is given stays
    valid for at least half the configured ``token_ttl``. A token without ``exp``
    never is."""
    c = claims(token)
    exp, iat = c.get("exp"), c.get("iat")
    if not isinstance(exp, int):
        return False
    born = iat if isinstance(iat, int) else exp
    return (time.time() if now is None else now) >= exp - (exp - born) / 2


def new_key_id() -> str:
    return secrets.token_hex(16)


class Signer:
    """Signs sqld tokens with an Ed25519 private key (PEM, PKCS#8), or with the
    key derived from it for one namespace."""

    def __init__(self, pem: bytes, where: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(pem, password=None)
        except ValueError as e:
            raise ConfigError(f"{where}: not a PEM private key: {e}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{where}: sqld needs an Ed25519 key")
        self._key = key
        self._seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._derived: dict[tuple[str, str], Ed25519PrivateKey] = {}

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            return cls(path.read_bytes(), str(path))
        except OSError as e:
            raise ConfigError(f"cannot read libsql key_file {path}: {e}") from None

    def namespace_key(self, namespace: str, key_id: str) -> Ed25519PrivateKey:
        """The private key of *namespace*'s generation *key_id*: HMAC-SHA256 of the
        daemon's key over both, used as an Ed25519 seed (deterministic, so nothing
        but *key_id* is stored)."""
        cached = self._derived.get((namespace, key_id))
        if cached is None:
            from cryptography.hazmat.primitives.asymmetric import ed25519

            msg = _DERIVE + namespace.encode() + b"\0" + key_id.encode()
            seed = hmac.new(self._seed, msg, hashlib.sha256).digest()
            cached = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            self._derived[(namespace, key_id)] = cached
        return cached

    def public_pem(self, namespace: str, key_id: str) -> str:
        """The public key sqld is given as the namespace's ``jwt_key``."""
        from cryptography.hazmat.primitives import serialization

        pub = self.namespace_key(namespace, key_id).public_key()
        return pub.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        ).decode("ascii")

    def token(
        self,
        namespace: str,
        *,
        key_id: str | None = None,
        ttl: int = 0,
        read_only: bool = False,
    ) -> str:
        """A JWT for *namespace* only; signed with its own key (*key_id*) or, for a
        namespace without one, the daemon's key; with ``exp`` = now + *ttl* unless
        *ttl* is 0."""
        now = int(time.time())
        body: dict[str, Any] = {
            "id": namespace,
            "a": "ro" if read_only else "rw",
            "iat": now,
        }
        if ttl:
            body["exp"] = now + ttl
        key = self._key if key_id is None else self.namespace_key(namespace, key_id)
        header = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        signature = key.sign(f"{header}.{payload}".encode("ascii"))
        return f"{header}.{payload}.{_b64(signature)}"

    def signed_by(self, token: str, namespace: str, key_id: str | None) -> bool:
        """True if *token* carries a valid signature of the key that *namespace*'s
        tokens are signed with now (False after the daemon's key was replaced)."""
        from cryptography.exceptions import InvalidSignature

        key = self._key if key_id is None else self.namespace_key(namespace, key_id)
        try:
            head, body, sig = token.split(".")
            raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
            key.public_key().verify(raw, f"{head}.{body}".encode("ascii"))
        except (ValueError, InvalidSignature):
            return False
        return claims(token).get("id") == namespace


def ensure_keypair(private: Path, public: Path) -> None:
    """Create an Ed25519 key pair (private 0600, public PEM for sqld) if missing."""
    if private.exists() and public.exists():
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private.parent.mkdir(parents=True, exist_ok=True)
    tmp = private.with_name(f".tmp-{private.name}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(pub)
    os.rename(tmp, private)
