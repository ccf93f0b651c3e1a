"""DPoP proofs (RFC 9449): a separate EC P-256 key proves possession of a sender-constrained token."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def htu_for(url: str) -> str:
    """The `htu` claim: the request URL without query and fragment, path percent-decoded."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, unquote(parts.path), "", ""))


def access_token_hash(access_token: str) -> str:
    """The `ath` claim: base64url(SHA-256(token))."""
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest())


class DPoPKey:
    """An EC P-256 proof key. It travels with the token it is bound to (a bound token is useless without it)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None, clock: Callable[[], float] = time.time):
        self._key = key or ec.generate_private_key(ec.SECP256R1())
        self._clock = clock
        self._public_jwk = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self.thumbprint()})"

    @property
    def public_jwk(self) -> dict[str, str]:
        return dict(self._public_jwk)

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (what Okta binds the token to as `cnf.jkt`)."""
        members = {k: self._public_jwk[k] for k in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        return _b64url(hashlib.sha256(canonical).digest())

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, only for sealing it next to its token. Never log it."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> "DPoPKey":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("a DPoP key must be an EC key")
        return cls(key)

    def remember_nonce(self, url: str, nonce: str | None) -> None:
        """Keep the server's latest `DPoP-Nonce` for the endpoint that sent it."""
        if nonce:
            with self._lock:
                self._nonces[_nonce_scope(url)] = nonce

    def nonce_for(self, url: str) -> str | None:
        with self._lock:
            return self._nonces.get(_nonce_scope(url))

    def proof(self, method: str, url: str, *, access_token: str | None = None) -> str:
        claims: dict[str, object] = {
            "htm": method.upper(),
            "htu": htu_for(url),
            "iat": int(self._clock()),
            "jti": uuid.uuid4().hex,
        }
        nonce = self.nonce_for(url)
        if nonce:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        headers = {"typ": "dpop+jwt", "jwk": self.public_jwk}
        return jwt.encode(claims, self._key, algorithm="ES256", headers=headers)


def _nonce_scope(url: str) -> str:
    """Token endpoints and the resource server issue nonces independently, though they share an origin."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return origin + parts.path if "/oauth2/" in parts.path else origin
