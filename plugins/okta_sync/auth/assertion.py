"""Client authentication with `private_key_jwt` (RFC 7523), as Okta's service-app sample does it.

A fresh assertion is signed for every token request: Okta consumes the `jti` even when the request fails.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import jwt

from okta_sync.config import MAX_ASSERTION_LIFETIME
from okta_sync.auth.keys import SigningKey
from okta_sync.errors import ConfigurationError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class PrivateKeyJWT:
    """Builds the `client_assertion` form fields for one client and key."""

    def __init__(
        self,
        client_id: str,
        signing_key: SigningKey,
        *,
        lifetime: int = 300,
        clock: Callable[[], float] = time.time,
    ):
        if not 0 < lifetime <= MAX_ASSERTION_LIFETIME:
            raise ConfigurationError("assertion_lifetime", f"must be between 1 and {MAX_ASSERTION_LIFETIME} seconds")
        self.client_id = client_id
        self.signing_key = signing_key
        self.lifetime = lifetime
        self._clock = clock

    def __repr__(self) -> str:
        return f"PrivateKeyJWT(client_id={self.client_id!r}, key={self.signing_key})"

    def assertion(self, token_url: str) -> str:
        """A signed JWT: iss = sub = client id, aud = the exact token URL called, short exp, unique jti."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.signing_key.key_id} if self.signing_key.key_id else None
        return jwt.encode(claims, self.signing_key.key, algorithm=self.signing_key.algorithm, headers=headers)

    def form_fields(self, token_url: str) -> dict[str, str]:
        return {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": self.assertion(token_url)}

    def auth_headers(self, token_url: str) -> dict[str, str]:
        """No header: the assertion travels in the form body (ClientSecretBasic uses the Authorization header)."""
        return {}
