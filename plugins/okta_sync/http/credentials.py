"""What the transport needs from authentication, and nothing more (requests' `AuthBase`, google-auth's `Credentials`).

The transport asks a `TokenSource` for a credential for the request's scopes and lets the credential put its own
headers on the request; after a 401 it asks once more with `force_refresh`. How tokens are minted, cached or shared
across the tasks of a DAG run is `okta_sync.auth`'s business: http never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Protocol


class Credential(Protocol):
    """An access token as a request uses it (`okta_sync.auth.tokens.AccessToken`)."""

    @property
    def is_dpop(self) -> bool: ...

    def apply(self, method: str, url: str, headers: MutableMapping[str, str]) -> None:
        """Set `Authorization` (and, for a DPoP-bound token, a fresh `DPoP` proof) on `headers`."""

    def observe(self, url: str, headers: Mapping[str, str]) -> None:
        """Learn from a response's headers (a DPoP server nonce for this URL)."""


class TokenSource(Protocol):
    """Hands out credentials per scope set (`okta_sync.auth.tokens.TokenCache`)."""

    def get(self, scopes: tuple[str, ...], *, force_refresh: bool = False,
            stale: Credential | None = None) -> Credential:
        """A valid credential; `force_refresh` with `stale` replaces the one the server just refused."""
