"""Provider metadata: makes the `okta` connection type appear in the Airflow UI with labelled fields.

Airflow finds it through the `apache_airflow_provider` entry point of this project's pyproject.toml
(`pip install -e .` in the Airflow image). Optional for running DAGs: connections work without it.
"""

from __future__ import annotations

from typing import Any

from okta_sync.airflow.connection_fields import provider_conn_fields
from okta_sync.version import __version__


# Derived from the settings declared on OktaConfig (see okta_sync.config.setting).
CONNECTION_FIELDS = provider_conn_fields()


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "okta-sync-airflow",
        "name": "Okta user sync",
        # Rendered as markdown by the UI: an unquoted private_key_jwt loses its underscores (emphasis).
        "description": "Okta service-app connection (`private_key_jwt`), OktaHook and user-sync operators.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Okta", "external-doc-url": "https://developer.okta.com/docs/guides/implement-oauth-for-okta-serviceapp/main/", "tags": ["service"]}],
        "hooks": [{"integration-name": "Okta", "python-modules": ["okta_sync.airflow.hooks"]}],
        "operators": [{"integration-name": "Okta", "python-modules": ["okta_sync.airflow.operators",
                                                                     "okta_sync.airflow.group_operators"]}],
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
