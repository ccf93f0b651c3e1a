"""Session-wide test setup.

Airflow reads its configuration once, when first imported, so the isolated AIRFLOW_HOME (SQLite, this project's
dags/ and plugins/, no examples) is set here, before any test module can import airflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="okta-sync-airflow-home-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": "YRqbA7t0ZbIumBuENMapvqaN8iD5w59cqmgdvYMvzDs=",
    }
)
# Tests decide CA and proxies explicitly; the machine's settings must not leak into them.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_name, None)


def damage_gzip(path: Path, damage: str) -> None:
    """Break a gzip file the way a reader meets it: `truncated` (cut in half: EOFError) or `corrupt` (the first byte of
    the deflate stream, after the header and its file name, flipped: zlib.error)."""
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    elif damage == "corrupt":
        data[data.index(0, 10) + 1 if data[3] & 0x08 else 10] ^= 0xFF
    else:
        raise ValueError(f"unknown damage {damage!r}")
    path.write_bytes(bytes(data))


def connection_env_value(connection: dict, **extra) -> str:
    """`AIRFLOW_CONN_OKTA_DEFAULT` (JSON form) for a dev org's connection.json."""
    fields = {"private_key_path": connection["private_key_path"], "key_id": connection["key_id"],
              "scopes": connection.get("scopes") or "okta.users.read okta.users.manage"}
    if connection.get("ca_bundle"):
        fields["ca_bundle"] = connection["ca_bundle"]
    fields.update(extra)
    return json.dumps({"conn_type": "okta", "host": connection["org_url"], "login": connection["client_id"],
                       "extra": fields})


@contextlib.contextmanager
def dev_org_airflow_env(connection: dict, output_dir: Path) -> Iterator[None]:
    """`okta_default` pointing at a dev org and the DAGs' output in `output_dir`, restored afterwards."""
    values = {"AIRFLOW_CONN_OKTA_DEFAULT": connection_env_value(connection),
              "AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI": output_dir.as_uri()}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def airflow_db():
    """An initialised metadata DB in the session's AIRFLOW_HOME (initdb once per session)."""
    from airflow.utils.db import initdb

    initdb()
    return _AIRFLOW_HOME


def forget_asset_history() -> None:
    """A clean slate for tests that run DAGs through one shared metadata DB: no Asset events and no Asset state
    (watermarks) left by DAG runs of other test modules."""
    from airflow.models.asset import AssetEvent
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(AssetStateStoreModel).delete()
        session.query(AssetEvent).delete()
