"""The dev org's custom authorization server with client_secret_basic, strict where Okta is: a service app's
client secret is refused at the org authorization server, and a custom server mints only its own scopes."""

from __future__ import annotations

import base64

import pytest
import requests

from include.okta_dev_org import DevOrg, DevOrgOptions

SECRET = "dev-secret-Kq8/3+x=="  # characters that must be form-urlencoded inside the Basic pair


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=2, seed=8, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-secret"))
    with DevOrg(options) as running:
        running.app.auth.register_client("0oasecretclient", [], (), client_secret=SECRET)
        yield running


def _basic(client_id: str, secret: str) -> str:
    from urllib.parse import quote_plus

    return "Basic " + base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()


def _token(org, server_path: str, scope: str, secret: str = SECRET) -> requests.Response:
    return requests.post(f"{org.url}{server_path}", data={"grant_type": "client_credentials", "scope": scope},
                         headers={"Authorization": _basic("0oasecretclient", secret)}, timeout=10)


def test_a_custom_server_mints_its_own_scope_for_a_client_secret(org):
    response = _token(org, "/oauth2/default/v1/token", "internal.api.read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "internal.api.read" and response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "scope", "secret", "status", "error", "description"),
    [
        ("/oauth2/v1/token", "okta.users.read", SECRET, 401, "invalid_client",
         "Client Credentials requests to the Org Authorization Server must use the private_key_jwt"),
        ("/oauth2/default/v1/token", "internal.api.read", "wrong", 401, "invalid_client",
         "The client secret supplied for a confidential client is invalid."),
        ("/oauth2/default/v1/token", "okta.users.read", SECRET, 400, "invalid_scope", "invalid, unknown, or malformed"),
        ("/oauth2/default/v1/token", "internal.api.admin", SECRET, 400, "invalid_scope", "invalid, unknown"),
    ],
    ids=["org-server", "wrong-secret", "management-scope", "undefined-scope"],
)
def test_refusals(org, path, scope, secret, status, error, description):
    response = _token(org, path, scope, secret)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and description in response.json()["error_description"]
