"""The token endpoint refuses every client that Okta would refuse, with Okta's errors."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from client_assertions import new_ec_key, new_rsa_key, public_jwk
from conftest import OrgClient
from cryptography.hazmat.primitives import serialization


def refused(devorg, response, status: int, error: str, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert devorg.admin.stats()["token_requests"]["refused_reasons"].get(reason, 0) >= 1


def test_a_valid_assertion_gets_a_bearer_token_with_the_requested_scopes(client):
    response = client.request_token("okta.users.read")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "okta.users.read"
    for name in ("X-Okta-Request-Id", "X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset", "Date"):
        assert name in response.headers


def test_wrong_audience_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(aud=f"{devorg.url}/oauth2/default/v1/token"))
    refused(devorg, response, 401, "invalid_client", "aud_mismatch")
    assert response.json()["error_description"] == \
        "The audience claim for client_assertion must be the endpoint invoked for the request."


def test_audience_must_name_the_host_the_client_called(devorg, client):
    other_host = devorg.url.replace("127.0.0.1", "localhost")
    response = client.request_token(assertion=client.assertion(aud=f"{other_host}/oauth2/v1/token"))
    refused(devorg, response, 401, "invalid_client", "aud_mismatch")


def test_a_reused_jti_is_refused(devorg, client):
    assertion = client.assertion()
    assert client.request_token(assertion=assertion).status_code == 200
    response = client.request_token(assertion=assertion)
    refused(devorg, response, 401, "invalid_client", "jti_reused")
    assert response.json()["error_description"] == "The client_assertion token has already been used."


def test_a_jti_is_consumed_even_when_the_request_then_fails_on_scope(devorg, client):
    assertion = client.assertion()
    refused(devorg, client.request_token("okta.apps.manage", assertion=assertion), 400, "invalid_scope",
            "scope_not_granted")
    refused(devorg, client.request_token(assertion=assertion), 401, "invalid_client", "jti_reused")


def test_exp_more_than_an_hour_ahead_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(exp=int(time.time()) + 3600 + 300))
    refused(devorg, response, 401, "invalid_client", "exp_too_far")


def test_an_expired_assertion_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(exp=int(time.time()) - 600))
    refused(devorg, response, 401, "invalid_client", "exp_expired")


def test_an_assertion_without_jti_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(jti=None))
    refused(devorg, response, 401, "invalid_client", "jti_missing")


def test_a_kid_that_is_not_registered_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(kid="not-a-registered-kid"))
    refused(devorg, response, 401, "invalid_client", "kid_unknown")


def test_a_key_the_client_does_not_own_is_refused(devorg, client):
    stranger = OrgClient(devorg, client_id=client.client_id, key=new_rsa_key(), kid=client.kid)
    refused(devorg, stranger.request_token(), 401, "invalid_client", "signature_invalid")


def test_alg_none_is_refused(devorg, client):
    unsigned = jwt.encode({"iss": client.client_id, "sub": client.client_id, "aud": client.token_url,
                           "exp": int(time.time()) + 300, "jti": "none-1"}, None, algorithm="none",
                          headers={"kid": client.kid})
    refused(devorg, client.request_token(assertion=unsigned), 401, "invalid_client", "alg_not_allowed")


def test_hs256_signed_with_the_public_key_is_refused(devorg, client):
    public_pem = client.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": client.kid}
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": client.token_url,
              "exp": int(time.time()) + 300, "jti": "hs256-1"}

    def seg(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    import hashlib
    import hmac
    signing_input = f"{seg(header)}.{seg(claims)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    refused(devorg, client.request_token(assertion=forged), 401, "invalid_client", "alg_not_allowed")


def test_iss_different_from_sub_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(iss="0oaSomeoneElse0000000"))
    refused(devorg, response, 401, "invalid_client", "iss_sub_mismatch")


def test_an_unknown_client_is_refused(devorg, client):
    response = client.request_token(assertion=client.assertion(iss="0oaUnknown", sub="0oaUnknown"))
    refused(devorg, response, 401, "invalid_client", "client_unknown")


def test_no_scope_is_invalid_scope(devorg, client):
    refused(devorg, client.request_token(scope=None), 400, "invalid_scope", "scope_missing")


def test_an_unknown_scope_is_invalid_scope(devorg, client):
    refused(devorg, client.request_token("okta.users.read profile.read"), 400, "invalid_scope", "scope_invalid")


def test_a_scope_not_granted_to_the_client_is_invalid_scope(devorg, client):
    refused(devorg, client.request_token("okta.users.read okta.apps.read"), 400, "invalid_scope",
            "scope_not_granted")


def test_management_scopes_are_refused_on_a_custom_authorization_server(devorg, client):
    url = f"{devorg.url}/oauth2/default/v1/token"
    response = client.request_token(url=url, assertion=client.assertion(aud=url))
    refused(devorg, response, 400, "invalid_scope", "scope_invalid")


def test_an_unknown_authorization_server_is_404(devorg, client):
    url = f"{devorg.url}/oauth2/ausDoesNotExist/v1/token"
    response = client.request_token(url=url, assertion=client.assertion(aud=url))
    assert response.status_code == 404
    assert response.json()["errorCode"] == "E0000007"


def test_client_secret_is_not_accepted(devorg, client):
    response = client.http.post(client.token_url, data={"grant_type": "client_credentials", "scope": "okta.users.read",
                                                         "client_id": client.client_id, "client_secret": "x"})
    refused(devorg, response, 401, "invalid_client", "not_private_key_jwt")


def test_other_grant_types_are_refused(devorg, client):
    form = {"grant_type": "password", "scope": "okta.users.read",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client.assertion()}
    refused(devorg, client.http.post(client.token_url, data=form), 400, "unsupported_grant_type",
            "grant_type_unsupported")


def test_json_bodies_are_refused(devorg, client):
    response = client.http.post(client.token_url, json={"grant_type": "client_credentials"})
    refused(devorg, response, 400, "invalid_request", "not_form_encoded")


@pytest.fixture
def two_key_client(devorg):
    first, second = new_rsa_key(), new_ec_key()
    devorg.admin.register_client("0oaTwoKeys0000000000", [public_jwk(first, "k1"), public_jwk(second, "k2")],
                                 ["okta.users.read"])
    return first, second


def test_kid_is_mandatory_when_the_client_has_two_keys(devorg, two_key_client):
    first, _ = two_key_client
    no_kid = OrgClient(devorg, client_id="0oaTwoKeys0000000000", key=first, kid="")
    refused(devorg, no_kid.request_token("okta.users.read"), 401, "invalid_client", "kid_missing")


def test_each_of_two_keys_works_with_its_kid(devorg, two_key_client):
    first, second = two_key_client
    rsa_client = OrgClient(devorg, client_id="0oaTwoKeys0000000000", key=first, kid="k1")
    assert rsa_client.request_token("okta.users.read").status_code == 200
    ec_client = OrgClient(devorg, client_id="0oaTwoKeys0000000000", key=second, kid="k2")
    response = ec_client.request_token("okta.users.read", assertion=ec_client.assertion(alg="ES256"))
    assert response.status_code == 200, response.text
    mismatched = OrgClient(devorg, client_id="0oaTwoKeys0000000000", key=first, kid="k2")
    refused(devorg, mismatched.request_token("okta.users.read"), 401, "invalid_client", "alg_key_mismatch")


def test_revoked_and_unknown_tokens_get_401_e0000011(fresh_org):
    org = fresh_org()
    client = OrgClient(org)
    session = client.api()
    assert session.get(f"{org.url}/api/v1/users").status_code == 200
    assert org.admin.revoke_tokens() >= 1
    response = session.get(f"{org.url}/api/v1/users")
    assert response.status_code == 401
    assert response.json()["errorCode"] == "E0000011"
    assert response.json()["errorSummary"] == "Invalid token provided"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    bogus = session.get(f"{org.url}/api/v1/users", headers={"Authorization": "Bearer not-a-token"})
    assert bogus.status_code == 401


def test_token_stats_count_issued_and_used_tokens(fresh_org):
    org = fresh_org()
    client = OrgClient(org)
    first, second = client.api(), client.api()
    first.get(f"{org.url}/api/v1/users?limit=5")
    first.get(f"{org.url}/api/v1/users?limit=5")
    second.get(f"{org.url}/api/v1/users?limit=5")
    stats = org.admin.stats()
    assert stats["tokens_issued"] == 2
    assert stats["distinct_tokens_used"] == 2
    assert stats["requests"]["GET /api/v1/users"] == 3
