"""Each setting is declared once, on its `OktaConfig` field; the connection mapping, the provider's form and the
README's table are derived from that declaration and cannot drift from it."""

from __future__ import annotations

import importlib.util
from dataclasses import fields
from pathlib import Path

import pytest

from okta_sync.config import OktaConfig, Setting, settings_table, setting_of
from okta_sync.airflow.connection_fields import EXTRA_FIELDS, SECRET_SETTINGS, config_from_connection, provider_conn_fields
from okta_sync.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
KEY = "-----BEGIN PRIVATE KEY-----\nnot read here\n-----END PRIVATE KEY-----"


def settings_script():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def connect(**extra):
    return config_from_connection(host="https://dev-1.okta.com", login="0oaclient", password=KEY, extra=extra)


def test_the_readme_table_is_the_one_generated_from_the_declarations():
    script = settings_script()
    table = script.readme_table((ROOT / "README.md").read_text(encoding="utf-8"))
    assert table == settings_table(), "README.md is out of date: run .venv/bin/python scripts/settings_table.py"


def test_every_field_is_declared_with_its_metadata_and_listed_in_the_table():
    table = settings_table()
    for config_field in fields(OktaConfig):
        described = setting_of(config_field)
        assert isinstance(described, Setting) and described.label and described.description
        assert described.source in ("host", "login", "password", "extra")
        assert f"| `{config_field.name}` |" in table


def test_every_extra_and_alias_reaches_its_field():
    assert EXTRA_FIELDS["kid"] == EXTRA_FIELDS["key_id"] == "key_id"
    assert EXTRA_FIELDS["timeout"] == EXTRA_FIELDS["read_timeout"] == "read_timeout"
    assert connect(kid="k1").key_id == connect(key_id="k1").key_id == "k1"
    assert connect(timeout="7").read_timeout == connect(read_timeout=7).read_timeout == 7.0
    assert "| extra `timeout` (alias `read_timeout`) | `read_timeout` |" in settings_table()
    assert {"host", "login", "password"}.isdisjoint(EXTRA_FIELDS)


def test_values_take_their_declared_type_and_a_bad_one_is_named_never_echoed():
    config = connect(page_size="50", max_concurrency=3.0, rate_limit_fraction="0.5", connect_timeout=2, key_id=17)
    assert (config.page_size, config.max_concurrency, config.rate_limit_fraction, config.connect_timeout) == (
        50, 3, 0.5, 2.0)
    assert type(config.page_size) is int and type(config.connect_timeout) is float and config.key_id == "17"
    for extra, field in [({"page_size": "fifty-secret"}, "page_size"), ({"page_size": 12.5}, "page_size"),
                         ({"max_attempts": True}, "max_attempts"), ({"timeout": "soon-secret"}, "read_timeout"),
                         ({"proxy": ["http://a-secret"]}, "proxy"), ({"scopes": {"a": "secret"}}, "scopes")]:
        with pytest.raises(ConfigurationError) as raised:
            connect(**extra)
        assert raised.value.field == field
        assert "secret" not in str(raised.value)


def test_secrets_come_only_from_the_connection():
    assert SECRET_SETTINGS == {"private_key", "private_key_path", "private_key_passphrase", "client_secret"}
    for name in ("private_key", "private_key_path", "private_key_passphrase", "client_secret"):
        with pytest.raises(ConfigurationError, match="only from the Airflow connection"):
            config_from_connection(host="https://dev-1.okta.com", login="0oaclient", password=KEY,
                                   overrides={name: "x"})
    shown = repr(connect(private_key_passphrase="pass-secret"))
    assert "pass-secret" not in shown and "BEGIN" not in shown


def test_the_provider_form_is_derived_from_the_declarations():
    form = provider_conn_fields()
    assert set(form) <= set(EXTRA_FIELDS)
    assert form["timeout"]["label"] == setting_of(next(f for f in fields(OktaConfig) if f.name == "read_timeout")).label
    assert form["private_key_passphrase"]["schema"]["format"] == "password"
    assert form["page_size"]["schema"] == {"type": ["number", "null"], "minimum": 1, "maximum": 200}
    assert form["dpop"]["schema"]["enum"] == ["off", "on", "auto", None] and form["dpop"]["schema"]["default"] == "off"
    assert form["scopes"]["schema"]["default"] == "okta.users.read okta.users.manage"
    hidden = {f.name for f in fields(OktaConfig) if not setting_of(f).form}
    assert hidden == {"algorithm", "assertion_lifetime", "token_refresh_margin", "max_attempts", "max_retry_time",
                      "request_deadline", "max_response_bytes", "max_pages", "max_rate_limit_wait"}
    assert form["client_auth"]["schema"]["enum"] == ["private_key_jwt", "client_secret_basic", None]
    assert hidden.isdisjoint(form)


def test_sensitive_extras_are_derived_for_masking():
    from okta_sync.airflow.connection_fields import SENSITIVE_EXTRAS

    assert SENSITIVE_EXTRAS == {"private_key_passphrase"}


def test_the_password_is_the_client_secret_with_client_secret_basic_and_never_printed():
    config = config_from_connection(
        host="https://dev-1.okta.com", login="0oaclient", password="secret-value-123",
        extra={"client_auth": "client_secret_basic", "authorization_server_id": "aus1", "scopes": "internal.read"})
    assert config.client_secret == "secret-value-123" and config.private_key is None
    assert "secret-value-123" not in repr(config)
    assert connect().private_key == KEY and connect().client_secret is None
    assert "client_secret" not in EXTRA_FIELDS  # only ever the password, never an extra
    assert "| password | `client_secret` |" in settings_table()
