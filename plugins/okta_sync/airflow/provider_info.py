"""Provider metadata: makes the `okta` connection type appear in the Airflow UI with labelled fields.

Airflow finds it through the `apache_airflow_provider` entry point of this project's pyproject.toml
(`pip install -e .` in the Airflow image). Optional for running DAGs: connections work without it.
"""

from __future__ import annotations

from typing import Any

from okta_sync.version import __version__


def _text(label: str, description: str, *, default: Any = None, sensitive: bool = False, **schema: Any) -> dict:
    field_schema: dict[str, Any] = {"type": ["string", "null"], **schema}
    if default is not None:
        field_schema["default"] = default
    if sensitive:
        field_schema["format"] = "password"
    return {"label": label, "description": description, "schema": field_schema}


def _number(label: str, description: str, **schema: Any) -> dict:
    return {"label": label, "description": description, "schema": {"type": ["number", "null"], **schema}}


CONNECTION_FIELDS = {
    "private_key_path": _text("Private key path", "PEM or JWK file readable only by Airflow (or put the key in Private key)"),
    "key_id": _text("Key ID (kid)", "kid of the app's public key; required when the app has several keys"),
    "scopes": _text("Scopes", "space-separated ceiling; each task asks only for what it needs",
                    default="okta.users.read okta.users.manage"),
    "private_key_passphrase": _text("Key passphrase", "for an encrypted PEM", sensitive=True),
    "authorization_server_id": _text("Authorization server id", "custom server; leave empty for the org server (management scopes need it)"),
    "token_url": _text("Token URL", "explicit token endpoint (the assertion's aud); overrides the server id"),
    "dpop": _text("DPoP", "off, on, or auto (on when Okta asks for it)", default="off", enum=["off", "on", "auto", None]),
    "timeout": _number("Read timeout (s)", "per request", minimum=1),
    "connect_timeout": _number("Connect timeout (s)", "per request", minimum=1),
    "ca_bundle": _text("CA bundle", "path to the CA that signs the org's (or the proxy's) certificate"),
    "proxy": _text("Proxy", "https proxy URL, e.g. http://proxy.internal:3128"),
    "rate_limit_fraction": _number("Rate limit share", "fraction of each rate-limit bucket this app may use (0-1]",
                                   exclusiveMinimum=0, maximum=1),
    "max_concurrency": _number("Max concurrency", "requests in flight at once", minimum=1),
    "page_size": _number("Page size", "users per page (max 200)", minimum=1, maximum=200),
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "okta-sync-airflow",
        "name": "Okta user sync",
        # Rendered as markdown by the UI: an unquoted private_key_jwt loses its underscores (emphasis).
        "description": "Okta service-app connection (`private_key_jwt`), OktaHook and user-sync operators.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Okta", "external-doc-url": "https://developer.okta.com/docs/guides/implement-oauth-for-okta-serviceapp/main/", "tags": ["service"]}],
        "hooks": [{"integration-name": "Okta", "python-modules": ["okta_sync.airflow.hooks"]}],
        "operators": [{"integration-name": "Okta", "python-modules": ["okta_sync.airflow.operators"]}],
        "connection-types": [
            {
                "connection-type": "okta",
                "hook-class-name": "okta_sync.airflow.hooks.OktaHook",
                "hook-name": "Okta",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "Org URL", "login": "Client ID", "password": "Private key (PEM or JWK)"},
                    "placeholders": {
                        "host": "https://dev-123.okta.com",
                        "login": "0oa1b2c3d4e5f6g7h8i9",
                        "password": "-----BEGIN PRIVATE KEY----- ... (or set Private key path)",
                    },
                },
            }
        ],
    }
