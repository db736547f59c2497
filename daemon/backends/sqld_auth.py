"""Ed25519 keys and the JWTs sqld accepts (``--auth-jwt-key-file``).

sqld 0.24 (``libsql-server/src/auth/user_auth_strategies/jwt.rs``) verifies an
EdDSA JWT and reads three claims: ``id`` (the one namespace the token opens; absent:
every namespace), ``a`` (``"rw"`` or ``"ro"``) and ``exp``. A token carrying
``id`` is refused on any other namespace (``Authenticated::is_namespace_authorized``,
answered as "namespace doesn't exist"). Every token branchdb signs carries ``id``:
a branch's token opens that branch's database and no other.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from branchdb.daemon.core.errors import ConfigError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """Signs sqld tokens with an Ed25519 private key (PEM, PKCS#8)."""

    def __init__(self, pem: bytes, where: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(pem, password=None)
        except ValueError as e:
            raise ConfigError(f"{where}: not a PEM private key: {e}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{where}: sqld needs an Ed25519 key")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            return cls(path.read_bytes(), str(path))
        except OSError as e:
            raise ConfigError(f"cannot read libsql key_file {path}: {e}") from None

    def token(self, namespace: str, *, read_only: bool = False) -> str:
        """A JWT for *namespace* only, without expiry (it lives as long as the
        branch: reset keeps it, so the branch's URL and token stay valid)."""
        claims: dict[str, Any] = {
            "id": namespace,
            "a": "ro" if read_only else "rw",
            "iat": int(time.time()),
        }
        header = _b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = self._key.sign(f"{header}.{body}".encode("ascii"))
        return f"{header}.{body}.{_b64(signature)}"


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
