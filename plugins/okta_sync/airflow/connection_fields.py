"""The `okta` connection's fields, translated into an `OktaConfig` by one small function (no Airflow import).

    host      the org URL (https://dev-123.okta.com)
    login     the service app's client ID
    password  the private key inline (PEM or JWK): lets a secrets backend hold it; with extra client_auth
              client_secret_basic, the client secret (a custom authorization server's own scopes)
    extra     private_key_path, key_id, scopes, private_key_passphrase, authorization_server_id | token_url,
              dpop, timeout, connect_timeout, ca_bundle, proxy, rate_limit_fraction, max_concurrency, page_size,
              algorithm, assertion_lifetime, token_refresh_margin, max_attempts, max_retry_time,
              request_deadline, max_response_bytes, max_pages, max_rate_limit_wait

Hook arguments override extras (never the secrets: those come only from the connection).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from okta_sync.config import OktaConfig
from okta_sync.errors import ConfigurationError

# extra name -> OktaConfig field
EXTRA_FIELDS = {
    "private_key_path": "private_key_path",
    "key_id": "key_id",
    "kid": "key_id",
    "scopes": "scopes",
    "private_key_passphrase": "private_key_passphrase",
    "authorization_server_id": "authorization_server_id",
    "token_url": "token_url",
    "dpop": "dpop",
    "timeout": "read_timeout",
    "read_timeout": "read_timeout",
    "connect_timeout": "connect_timeout",
    "ca_bundle": "ca_bundle",
    "proxy": "proxy",
    "rate_limit_fraction": "rate_limit_fraction",
    "max_concurrency": "max_concurrency",
    "page_size": "page_size",
    "algorithm": "algorithm",
    "assertion_lifetime": "assertion_lifetime",
    "token_refresh_margin": "token_refresh_margin",
    "max_attempts": "max_attempts",
    "max_retry_time": "max_retry_time",
    "client_auth": "client_auth",
    "request_deadline": "request_deadline",
    "max_response_bytes": "max_response_bytes",
    "max_pages": "max_pages",
    "max_rate_limit_wait": "max_rate_limit_wait",
}
SECRET_SETTINGS = frozenset({"private_key", "private_key_passphrase", "private_key_path", "client_secret"})


def org_url_from(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """Accept `https://dev-123.okta.com` as well as a bare host (with the connection's schema and port)."""
    host = (host or "").strip()
    if not host:
        raise ConfigurationError("host", "is empty; set it to the org URL, e.g. https://dev-123.okta.com")
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    if port and host.count(":") < 2:
        host = f"{host.rstrip('/')}:{port}"
    return host


def parse_extra(extra: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if not extra:
        return {}
    if isinstance(extra, Mapping):
        return dict(extra)
    try:
        parsed = json.loads(extra)
    except json.JSONDecodeError as exc:
        raise ConfigurationError("extra", f"is not valid JSON (line {exc.lineno} column {exc.colno})") from None
    if not isinstance(parsed, dict):
        raise ConfigurationError("extra", "must be a JSON object")
    return parsed


def config_from_connection(
    *,
    host: str | None,
    login: str | None,
    password: str | None = None,
    schema: str | None = None,
    port: int | None = None,
    extra: str | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> OktaConfig:
    """Connection fields + hook overrides -> a checked `OktaConfig`; errors name the connection field."""
    settings: dict[str, Any] = {"org_url": org_url_from(host, schema, port), "client_id": (login or "").strip()}
    if not settings["client_id"]:
        raise ConfigurationError("login", "is empty; it holds the service app's client ID (0oa...)")
    extras = parse_extra(extra)
    if password:  # the private key, or with client_auth client_secret_basic the client secret
        settings["client_secret" if extras.get("client_auth") == "client_secret_basic" else "private_key"] = password
    for name, value in extras.items():
        if name not in EXTRA_FIELDS:
            raise ConfigurationError(f"extra.{name}", f"unknown field; known fields: {', '.join(sorted(EXTRA_FIELDS))}")
        settings[EXTRA_FIELDS[name]] = value
    for name, value in (overrides or {}).items():
        if name in SECRET_SETTINGS or name == "private_key":
            raise ConfigurationError(name, "secrets come only from the Airflow connection, never from task arguments")
        if value is not None:
            settings[EXTRA_FIELDS.get(name, name)] = value
    if settings.get("private_key") and settings.get("private_key_path"):
        raise ConfigurationError("password", "holds a private key and extra.private_key_path is set too: keep one")
    return OktaConfig.from_mapping(settings)
