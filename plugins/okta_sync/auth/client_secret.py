"""Client authentication with `client_secret_basic` (RFC 6749 2.3.1), for a custom authorization server's own scopes.

Okta accepts a client secret from a service app only at a custom authorization server (`/oauth2/{id}/v1/token`);
the org authorization server, which mints the `okta.*` management scopes, requires `private_key_jwt`. The config
check (`OktaConfig`) refuses the combination before any request.
"""

from __future__ import annotations

import base64
from urllib.parse import quote_plus


class ClientSecretBasic:
    """`Authorization: Basic base64(urlencode(client_id):urlencode(client_secret))`; nothing in the form body."""

    def __init__(self, client_id: str, client_secret: str):
        self.client_id = client_id
        self._secret = client_secret

    def __repr__(self) -> str:
        return f"ClientSecretBasic(client_id={self.client_id!r}, client_secret=***)"

    __str__ = __repr__

    def form_fields(self, token_url: str) -> dict[str, str]:
        return {}

    def auth_headers(self, token_url: str) -> dict[str, str]:
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self._secret)}".encode("utf-8")
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
