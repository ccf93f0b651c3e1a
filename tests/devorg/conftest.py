"""Fixtures for the dev org tests: one shared org for the session, fresh ones for tests that change settings."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_assertions import client_assertion, load_private_key, token_form  # noqa: E402
from include.okta_dev_org import DevOrg, DevOrgOptions  # noqa: E402

SHARED_USERS = 450


class OrgClient:
    """A minimal hand-rolled client: enough to drive the dev org without the plugin under development."""

    def __init__(self, org, client_id: str | None = None, key=None, kid: str | None = None):
        self.org = org
        connection = org.connection
        self.client_id = client_id or connection["client_id"]
        self.key = key if key is not None else load_private_key(connection["private_key_path"])
        self.kid = kid if kid is not None else (connection["key_id"] if client_id is None else None)
        self.http = requests.Session()
        self.http.trust_env = False  # else REQUESTS_CA_BUNDLE overrides verify
        self.http.verify = connection["ca_bundle"] or True
        self.token_url = f"{org.url}/oauth2/v1/token"

    def assertion(self, **overrides) -> str:
        overrides.setdefault("kid", self.kid)
        aud = overrides.pop("aud", self.token_url)
        return client_assertion(self.key, self.client_id, aud, **overrides)

    def request_token(self, scope: str | None = "okta.users.read okta.users.manage", url: str | None = None,
                      assertion: str | None = None, headers=None) -> requests.Response:
        return self.http.post(url or self.token_url, data=token_form(assertion or self.assertion(), scope),
                              headers=headers, timeout=10)

    def token(self, scope: str = "okta.users.read okta.users.manage") -> str:
        response = self.request_token(scope)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def api(self, scope: str = "okta.users.read okta.users.manage") -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.verify = self.http.verify
        session.headers["Authorization"] = f"Bearer {self.token(scope)}"
        return session


@pytest.fixture(scope="session")
def devorg(tmp_path_factory):
    """The shared dev org: 450 users, 20 % messy, no rate limits; tests must not change its settings."""
    options = DevOrgOptions(users=SHARED_USERS, messy_fraction=0.2, seed=7, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="session")
def client(devorg) -> OrgClient:
    return OrgClient(devorg)


@pytest.fixture(scope="session")
def api(client) -> requests.Session:
    return client.api()


@pytest.fixture
def fresh_org(tmp_path):
    """A private dev org per test, for tests that change rate limits, faults or clients."""
    started = []

    def start(**changes) -> DevOrg:
        options = DevOrgOptions(users=changes.pop("users", 60), seed=changes.pop("seed", 3),
                                state_dir=tmp_path / f"org{len(started)}", **changes)
        org = DevOrg(options).start()
        started.append(org)
        return org

    yield start
    for org in started:
        org.stop()


@pytest.fixture(scope="session")
def okta_reference() -> Path:
    """../shared/okta-reference next to the project root; tests needing it skip when it is absent."""
    path = Path(__file__).resolve().parents[2] / ".." / "shared" / "okta-reference"
    if not path.is_dir():
        pytest.skip("okta-reference data not available (../shared/okta-reference)")
    return path.resolve()
