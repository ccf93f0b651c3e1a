"""The provider metadata: valid for Airflow, discovered through the entry point, fields that the hook understands."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest

from okta_sync.airflow.connection_fields import EXTRA_FIELDS
from okta_sync.airflow.provider_info import CONNECTION_FIELDS, get_provider_info

pytestmark = pytest.mark.airflow


def test_provider_info_matches_airflows_schema():
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_ui_field_is_a_connection_extra_the_hook_reads():
    assert set(CONNECTION_FIELDS) <= set(EXTRA_FIELDS)


def test_package_name_is_the_distribution_name():
    entry_points = [ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.value.startswith("okta_sync.")]
    if not entry_points:
        pytest.skip("the project is not installed (pip install -e .); scripts/dev.py does it")
    assert entry_points[0].dist.metadata["Name"] == get_provider_info()["package-name"]


def test_airflow_discovers_the_okta_connection_type():
    from airflow.providers_manager import ProvidersManager

    if not any(ep.value.startswith("okta_sync.") for ep in metadata.entry_points(group="apache_airflow_provider")):
        pytest.skip("the project is not installed (pip install -e .); scripts/dev.py does it")
    manager = ProvidersManager()
    assert "okta-sync-airflow" in manager.providers
    hook = manager.hooks["okta"]
    assert hook is not None and hook.hook_class_name == "okta_sync.airflow.hooks.OktaHook"
    assert hook.connection_type == "okta"


def test_the_description_survives_the_uis_markdown():
    """The UI renders the description as markdown: a bare private_key_jwt shows as "privatekeyjwt"."""
    import re

    description = get_provider_info()["description"]
    outside_code = re.sub(r"`[^`]*`", "", description)
    assert "_" not in outside_code, description
    assert "`private_key_jwt`" in description
