"""The Spring Boot sample's settings map onto the okta connection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from okta_sync.errors import ConfigurationError
from scripts.conn_from_spring_boot import connection_from_spring

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = {
    "OKTA_DOMAIN": "dev-123.okta.com",
    "OKTA_CLIENT_ID": "0oa1b2c3d4",
    "OKTA_SCOPE": "okta.users.read,okta.users.manage",
    "OKTA_JWT_AUDIENCE": "https://dev-123.okta.com/oauth2/v1/token",
    "OKTA_JWT_KID": "kid-7",
    "OKTA_JWT_PEM_PATH": "/secrets/okta.pem",
}


def test_sample_settings_become_connection_fields():
    connection = connection_from_spring(SAMPLE)
    assert connection == {
        "conn_type": "okta",
        "host": "https://dev-123.okta.com",
        "login": "0oa1b2c3d4",
        "extra": {"private_key_path": "/secrets/okta.pem", "key_id": "kid-7",
                  "scopes": "okta.users.read okta.users.manage"},
    }


def test_a_custom_audience_becomes_the_token_url():
    connection = connection_from_spring({**SAMPLE, "OKTA_JWT_AUDIENCE": "https://dev-123.okta.com/oauth2/aus9/v1/token"})
    assert connection["extra"]["token_url"] == "https://dev-123.okta.com/oauth2/aus9/v1/token"


def test_bad_settings_are_refused_naming_the_field():
    with pytest.raises(ConfigurationError) as raised:
        connection_from_spring({**SAMPLE, "OKTA_DOMAIN": "http://dev-123.okta.com"})
    assert raised.value.field == "org_url"


def test_command_prints_an_export_line_that_round_trips(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in SAMPLE.items()))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "conn_from_spring_boot.py"), "--env-file", str(env_file)],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("export AIRFLOW_CONN_OKTA_DEFAULT=")
    value = out.split("=", 1)[1].strip().strip("'")
    assert json.loads(value)["extra"]["key_id"] == "kid-7"
