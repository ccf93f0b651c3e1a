"""scripts/apply_airflow_settings.py: airflow_settings.yaml (Astro format) applied to plain Airflow."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scripts.apply_airflow_settings import AirflowSettingsError, connection_env, load_settings

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = textwrap.dedent(
    """
    airflow:
      connections:
        - conn_id: okta_default
          conn_type: okta
          conn_host: http://127.0.0.1:8900
          conn_login: 0oa-client-id
          conn_password:
          conn_schema:
          conn_port:
          conn_extra:
            private_key_path: .devorg/service-app.pem
            key_id: dev-kid
            scopes: okta.users.read okta.users.manage
        - conn_id: legacy_uri
          conn_uri: http://user:pw@example.test:8080/path
        - conn_id:
          conn_type:
      pools:
        - pool_name: okta_api
          pool_slot: 4
          pool_description: Okta management API calls
        - pool_name:
          pool_slot:
      variables:
        - variable_name: okta_sync_page_size
          variable_value: 200
        - variable_name: okta_sync_scope_note
          variable_value: ${NOT_EXPANDED}
        - variable_name:
          variable_value:
    """
)

# Runs in a fresh interpreter: Airflow reads AIRFLOW_HOME and the DB URL once, when it is first imported.
APPLY_AND_READ_BACK = textwrap.dedent(
    """
    import json, sys
    from airflow.utils.db import initdb
    initdb()
    from scripts.apply_airflow_settings import apply_settings
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session
    summaries = [apply_settings(path) for path in sys.argv[1:]]
    with create_session() as session:
        conn = session.query(Connection).filter_by(conn_id="okta_default").one()
        uri_conn = session.query(Connection).filter_by(conn_id="legacy_uri").one()
        state = {
            "summaries": [vars(s) for s in summaries],
            "okta_default": {"conn_type": conn.conn_type, "host": conn.host, "login": conn.login,
                             "password": conn.password, "extra": conn.extra_dejson},
            "legacy_uri": {"host": uri_conn.host, "port": uri_conn.port, "password": uri_conn.password},
            "variables": {v.key: v.val for v in session.query(Variable)},
            "pools": {p.pool: p.slots for p in session.query(Pool)},
        }
    print("RESULT " + json.dumps(state))
    """
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _apply_in_fresh_airflow(tmp_path: Path, *settings_files: Path) -> dict:
    home = tmp_path / "airflow_home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        AIRFLOW__CORE__FERNET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),  # passwords stored encrypted
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
    )
    done = subprocess.run(
        [sys.executable, "-c", APPLY_AND_READ_BACK, *map(str, settings_files)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_applying_twice_upserts_then_changes_nothing_and_an_edit_updates(tmp_path):
    first = _write(tmp_path, "first.yaml", SETTINGS)
    edited = _write(tmp_path, "edited.yaml", SETTINGS.replace("pool_slot: 4", "pool_slot: 8"))

    state = _apply_in_fresh_airflow(tmp_path, first, first, edited)

    created, again, after_edit = state["summaries"]
    assert sorted(created["created"]) == [
        "connection legacy_uri", "connection okta_default", "pool okta_api",
        "variable okta_sync_page_size", "variable okta_sync_scope_note",
    ]
    assert len(created["skipped"]) == 3  # the blank template entries, as the Astro CLI skips them
    assert again["created"] == again["updated"] == []
    assert len(again["unchanged"]) == 5
    assert after_edit["updated"] == ["pool okta_api"]
    assert state["okta_default"] == {
        "conn_type": "okta",
        "host": "http://127.0.0.1:8900",
        "login": "0oa-client-id",
        "password": None,
        "extra": {"private_key_path": ".devorg/service-app.pem", "key_id": "dev-kid",
                  "scopes": "okta.users.read okta.users.manage"},
    }
    assert state["legacy_uri"] == {"host": "example.test", "port": 8080, "password": "pw"}
    assert state["variables"] == {"okta_sync_page_size": "200", "okta_sync_scope_note": "${NOT_EXPANDED}"}
    assert state["pools"]["okta_api"] == 8


def test_connection_env_gives_airflow_conn_json_that_airflow_parses(tmp_path):
    env = connection_env(_write(tmp_path, "s.yaml", SETTINGS))

    assert set(env) == {"AIRFLOW_CONN_OKTA_DEFAULT", "AIRFLOW_CONN_LEGACY_URI"}
    assert env["AIRFLOW_CONN_LEGACY_URI"] == "http://user:pw@example.test:8080/path"
    value = json.loads(env["AIRFLOW_CONN_OKTA_DEFAULT"])
    assert value == {
        "conn_type": "okta",
        "host": "http://127.0.0.1:8900",
        "login": "0oa-client-id",
        "extra": {"private_key_path": ".devorg/service-app.pem", "key_id": "dev-kid",
                  "scopes": "okta.users.read okta.users.manage"},
    }
    from airflow.models import Connection

    conn = Connection.from_json(env["AIRFLOW_CONN_OKTA_DEFAULT"], conn_id="okta_default")
    assert (conn.conn_type, conn.host, conn.extra_dejson["key_id"]) == ("okta", "http://127.0.0.1:8900", "dev-kid")


def test_extra_as_a_json_string_is_accepted(tmp_path):
    text = 'airflow:\n  connections:\n    - conn_id: x\n      conn_type: okta\n      conn_extra: \'{"dpop": "auto"}\'\n'
    assert load_settings(_write(tmp_path, "s.yaml", text)).connections[0].extra == {"dpop": "auto"}


@pytest.mark.parametrize(
    ("entry", "field_name"),
    [
        ("- conn_id: x\n      conn_host: h", "conn_type"),
        ("- conn_id: x\n      conn_type: okta\n      conn_extra: '{not json'", "conn_extra"),
        ("- conn_id: x\n      conn_type: okta\n      conn_port: eighty", "conn_port"),
    ],
)
def test_a_broken_connection_is_an_error_naming_the_field(tmp_path, entry, field_name):
    path = _write(tmp_path, "s.yaml", f"airflow:\n  connections:\n    {entry}\n")
    with pytest.raises(AirflowSettingsError) as caught:
        load_settings(path)
    assert caught.value.field_name == field_name
    assert f"airflow.connections[0].{field_name}" in str(caught.value)


def test_duplicate_conn_ids_are_refused(tmp_path):
    text = "airflow:\n  connections:\n" + "    - conn_id: x\n      conn_type: okta\n" * 2
    with pytest.raises(AirflowSettingsError, match="appears twice"):
        load_settings(_write(tmp_path, "s.yaml", text))


def test_relative_paths_are_resolved_against_the_project_directory(tmp_path):
    """`scripts/dev.py airflow` runs Airflow from its own home: a key path relative to the project must still work."""
    from scripts.apply_airflow_settings import with_paths_resolved

    path = tmp_path / "airflow_settings.yaml"
    path.write_text(textwrap.dedent("""
        airflow:
          connections:
            - conn_id: okta_default
              conn_type: okta
              conn_host: http://127.0.0.1:8970
              conn_login: 0oa1
              conn_port: 0
              conn_extra: {private_key_path: .devorg/key.pem, ca_bundle: /etc/ssl/ca.pem, scopes: okta.users.read}
            - conn_id: warehouse
              conn_type: sqlite
              conn_host: include/output/w.db
    """))
    okta, warehouse = with_paths_resolved(load_settings(path), "/srv/project").connections
    assert okta.extra == {"private_key_path": "/srv/project/.devorg/key.pem", "ca_bundle": "/etc/ssl/ca.pem",
                          "scopes": "okta.users.read"}
    assert okta.port == 0  # kept: Airflow 3.3.2's Test button sends port 0 (README)
    assert warehouse.host == "/srv/project/include/output/w.db"
