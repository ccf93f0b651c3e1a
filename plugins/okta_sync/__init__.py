"""okta_sync: sync Okta users from Apache Airflow.

The core (everything re-exported here except the Airflow layer) is plain Python and imports no Airflow:

    from okta_sync import OktaClient, OktaConfig
    with OktaClient(OktaConfig(org_url="https://dev-123.okta.com", client_id="0oa...",
                               private_key_path="key.pem", key_id="my-kid")) as okta:
        for user in okta.iter_users():
            print(user["profile"]["login"])

The Airflow layer (`okta_sync.hooks`, `okta_sync.operators`) is imported from there explicitly, so importing the
core never imports Airflow.
"""

from okta_sync.client import OktaClient
from okta_sync.config import DEFAULT_SCOPES, MANAGE_SCOPE, READ_SCOPE, OktaConfig
from okta_sync.credentials import SigningKey, load_signing_key
from okta_sync.errors import (
    CircuitOpenError,
    ConfigurationError,
    LinkHeaderError,
    OktaApiError,
    OktaConnectionError,
    OktaSyncError,
    PrivateKeyError,
    RateLimitError,
    TLSVerificationError,
    TokenRequestError,
    UnsafeUrlError,
)
from okta_sync.tokens import AccessToken
from okta_sync.version import __version__

__all__ = [
    "AccessToken",
    "CircuitOpenError",
    "ConfigurationError",
    "DEFAULT_SCOPES",
    "LinkHeaderError",
    "MANAGE_SCOPE",
    "OktaApiError",
    "OktaClient",
    "OktaConfig",
    "OktaConnectionError",
    "OktaSyncError",
    "PrivateKeyError",
    "READ_SCOPE",
    "RateLimitError",
    "SigningKey",
    "TLSVerificationError",
    "TokenRequestError",
    "UnsafeUrlError",
    "__version__",
    "load_signing_key",
]
