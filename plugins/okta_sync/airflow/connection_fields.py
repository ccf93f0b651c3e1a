"""The `okta` connection's fields, translated into an `OktaConfig` by one small function (no Airflow import).

    host      the org URL (https://dev-123.okta.com)
    login     the service app's client ID
    password  the private key inline (PEM or JWK): lets a secrets backend hold it; with extra client_auth
              client_secret_basic, the client secret (a custom authorization server's own scopes)
    extra     every other setting, by the extra name declared on its `OktaConfig` field (aliases accepted)

Which setting lives where, under which extra name and aliases, and how the UI shows it is declared once, on the
`OktaConfig` fields (`config.setting`); `EXTRA_FIELDS`, `SECRET_SETTINGS` and the provider's `conn-fields` are
derived from it here. Hook arguments override extras (never the secrets: those come only from the connection).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from okta_sync.config import OktaConfig, declared_types, setting_of
from okta_sync.errors import ConfigurationError


def _extra_fields() -> dict[str, str]:
    """extra name (and each alias) -> OktaConfig field."""
    mapping: dict[str, str] = {}
    for config_field in fields(OktaConfig):
        described = setting_of(config_field)
        name = described.extra_name(config_field.name)
        if name is not None:
            mapping.update({alias: config_field.name for alias in (name, *described.aliases)})
    return mapping


EXTRA_FIELDS = _extra_fields()
SECRET_SETTINGS = frozenset(f.name for f in fields(OktaConfig) if setting_of(f).connection_only)
# extras (and aliases) holding a secret: masked in Airflow's logs as soon as the connection is read
SENSITIVE_EXTRAS = frozenset(name for name, field_name in EXTRA_FIELDS.items()
                             if any(f.name == field_name and setting_of(f).sensitive for f in fields(OktaConfig)))


def provider_conn_fields() -> dict[str, dict[str, Any]]:
    """The provider's `conn-fields` (the connection form's extra fields, Airflow's JSON-schema format)."""
    form: dict[str, dict[str, Any]] = {}
    for config_field in fields(OktaConfig):
        described = setting_of(config_field)
        name = described.extra_name(config_field.name)
        if name is None or not described.form:
            continue
        numeric = declared_types()[config_field.name] in (int, float)
        schema: dict[str, Any] = {"type": ["number" if numeric else "string", "null"], **described.schema}
        if not numeric:
            default = described.default_shown or config_field.default
            if default not in (None, MISSING):
                schema["default"] = str(default).strip("`")
        if described.sensitive:
            schema["format"] = "password"
        form[name] = {"label": described.label, "description": described.description.replace("`", ""), "schema": schema}
    return form


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
        if EXTRA_FIELDS.get(name, name) in SECRET_SETTINGS:
            raise ConfigurationError(name, "secrets come only from the Airflow connection, never from task arguments")
        if value is not None:
            settings[EXTRA_FIELDS.get(name, name)] = value
    if settings.get("private_key") and settings.get("private_key_path"):
        raise ConfigurationError("password", "holds a private key and extra.private_key_path is set too: keep one")
    return OktaConfig.from_mapping(settings)
