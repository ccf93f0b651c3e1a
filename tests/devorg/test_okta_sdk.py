"""The official Okta Python SDK (an independent client) authenticates with PrivateKey mode and pages all users.

The SDK refuses an org URL that is not https (outside its testing mode), so the org runs with --tls and the SDK
gets, through its `httpClient` hook, an SSL context trusting the CA the dev org generated into its state dir.
"""
from __future__ import annotations

import asyncio
import ssl

import pytest

okta_client = pytest.importorskip("okta.client")
okta_http_client = pytest.importorskip("okta.http_client")
PaginationHelper = pytest.importorskip("okta.pagination").PaginationHelper


def trusting_http_client(ca_bundle: str):
    """The SDK deep-copies its config, so an SSLContext cannot go there; its httpClient hook takes a class."""
    context = ssl.create_default_context(cafile=ca_bundle)

    class TrustingHTTPClient(okta_http_client.HTTPClient):
        def __init__(self, http_config=None):
            super().__init__({**(http_config or {}), "sslContext": context})

    return TrustingHTTPClient


@pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning")
def test_official_sdk_pages_through_all_users(fresh_org):
    org = fresh_org(users=450, tls=True, rate_limit=0)
    connection = org.connection
    assert connection["org_url"].startswith("https://") and connection["ca_bundle"]
    with open(connection["private_key_path"]) as handle:
        private_key = handle.read()
    config = {
        "orgUrl": connection["org_url"],
        "authorizationMode": "PrivateKey",
        "clientId": connection["client_id"],
        "scopes": connection["scopes"],
        "privateKey": private_key,
        "kid": connection["key_id"],
        "httpClient": trusting_http_client(connection["ca_bundle"]),
        "logging": {"enabled": False},
    }

    async def all_users():
        client = okta_client.Client(config)
        collected, cursor = [], None
        for _ in range(50):
            users, response, error = await client.list_users(limit=100, after=cursor)
            assert error is None, error
            collected.extend(users)
            cursor = PaginationHelper.extract_next_cursor(response.headers)
            if cursor is None:
                return collected
        raise AssertionError("paging did not end")

    users = asyncio.run(all_users())
    expected = [u["id"] for u in org.admin.users() if u["status"] != "DEPROVISIONED"]
    assert [u.id for u in users] == expected
    stats = org.admin.stats()
    assert stats["token_requests"]["ok"] == 1 and stats["token_requests"]["refused"] == 0
    assert stats["requests"]["GET /api/v1/users"] == -(-len(expected) // 100)
