"""DPoP proof verification (RFC 9449) for the token endpoint and for API calls."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time

import jwt

from .keys import b64url, jwk_thumbprint

ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
IAT_WINDOW = 300  # seconds a proof's iat may lie in the past or future
NONCE_LIFETIME = 24 * 3600


class ProofError(Exception):
    """An invalid proof; the message is the error_description served."""


def _segment(token: str, number: int) -> dict:
    try:
        part = token.split(".")[number]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except Exception as exc:  # any decoding problem means a malformed proof
        raise ProofError("The DPoP proof JWT is malformed.") from exc


class DPoPVerifier:
    def __init__(self):
        self.lock = threading.Lock()
        self.seen_jti: dict[str, float] = {}
        self.nonces: dict[str, float] = {}

    def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(24)
        with self.lock:
            self.nonces[nonce] = time.time() + NONCE_LIFETIME
        return nonce

    def nonce_valid(self, nonce) -> bool:
        with self.lock:
            expiry = self.nonces.get(nonce) if isinstance(nonce, str) else None
        return expiry is not None and expiry > time.time()

    def verify(self, proof: str, method: str, url: str, access_token: str | None = None) -> tuple[dict, str]:
        """(claims, jkt) of a valid proof for `method` on `url` (no query); raises ProofError."""
        header = _segment(proof, 0)
        if header.get("typ") != "dpop+jwt":
            raise ProofError("The DPoP proof JWT 'typ' header is invalid.")
        alg = header.get("alg")
        if alg not in ASYMMETRIC:
            raise ProofError("The DPoP proof JWT 'alg' header is invalid.")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or "d" in jwk or jwk.get("kty") not in ("RSA", "EC"):
            raise ProofError("The DPoP proof JWT 'jwk' header is invalid.")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            claims = jwt.decode(proof, key, algorithms=[alg], options={"verify_aud": False, "verify_exp": False})
        except Exception as exc:
            raise ProofError("The DPoP proof JWT signature is invalid.") from exc
        if claims.get("htm") != method:
            raise ProofError("The DPoP proof JWT 'htm' claim is invalid.")
        if claims.get("htu") != url:
            raise ProofError("The DPoP proof JWT 'htu' claim is invalid.")
        iat = claims.get("iat")
        now = time.time()
        if not isinstance(iat, (int, float)) or abs(now - iat) > IAT_WINDOW:
            raise ProofError("The DPoP proof JWT 'iat' claim is invalid.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise ProofError("The DPoP proof JWT 'jti' claim is missing.")
        if access_token is not None:
            expected = b64url(hashlib.sha256(access_token.encode()).digest())
            if claims.get("ath") != expected:
                raise ProofError("The DPoP proof JWT 'ath' claim is invalid.")
        with self.lock:
            if jti in self.seen_jti:
                raise ProofError("The DPoP proof JWT 'jti' has already been used.")
            self.seen_jti[jti] = now + 2 * IAT_WINDOW
            if len(self.seen_jti) > 100_000:
                self.seen_jti = {k: v for k, v in self.seen_jti.items() if v > now}
        return claims, jwk_thumbprint(jwk)
