"""DPoP as Okta does it, for a client configured to require it."""
from __future__ import annotations

import pytest
from client_assertions import dpop_proof, new_ec_key, new_rsa_key, public_jwk
from conftest import OrgClient

CLIENT_ID = "0oaDPoPRequired00000"


@pytest.fixture
def dpop_client(devorg):
    key = new_rsa_key()
    devorg.admin.register_client(CLIENT_ID, [public_jwk(key, "d1")], ["okta.users.read", "okta.users.manage"],
                                 dpop_required=True)
    return OrgClient(devorg, client_id=CLIENT_ID, key=key, kid="d1")


def dpop_token(client, proof_key):
    first = client.request_token(headers={"DPoP": dpop_proof(proof_key, "POST", client.token_url)})
    assert first.status_code == 400
    assert first.json() == {"error": "use_dpop_nonce",
                            "error_description": "Authorization server requires nonce in DPoP proof."}
    nonce = first.headers["DPoP-Nonce"]
    second = client.request_token(headers={"DPoP": dpop_proof(proof_key, "POST", client.token_url, nonce=nonce)})
    assert second.status_code == 200, second.text
    return second.json()


def test_without_a_proof_the_token_request_is_invalid_dpop_proof(devorg, dpop_client):
    response = dpop_client.request_token()
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_dpop_proof", "error_description": "The DPoP proof JWT header is missing."}


def test_nonce_round_trip_gives_a_dpop_bound_token(devorg, dpop_client):
    proof_key = new_ec_key()
    body = dpop_token(dpop_client, proof_key)
    assert body["token_type"] == "DPoP"
    token = body["access_token"]
    url = f"{devorg.url}/api/v1/users"
    ok = dpop_client.http.get(f"{url}?limit=2", headers={
        "Authorization": f"DPoP {token}", "DPoP": dpop_proof(proof_key, "GET", url, access_token=token)})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()) == 2


@pytest.mark.parametrize("problem", ["no_proof", "bearer_scheme", "wrong_ath", "wrong_htu", "wrong_htm", "other_key",
                                     "replayed"])
def test_api_calls_with_a_bad_proof_are_401_with_a_dpop_challenge(devorg, dpop_client, problem):
    proof_key = new_ec_key()
    token = dpop_token(dpop_client, proof_key)["access_token"]
    url = f"{devorg.url}/api/v1/users"
    proof = dpop_proof(proof_key, "GET", url, access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    if problem == "no_proof":
        del headers["DPoP"]
    elif problem == "bearer_scheme":
        headers["Authorization"] = f"Bearer {token}"
    elif problem == "wrong_ath":
        headers["DPoP"] = dpop_proof(proof_key, "GET", url, access_token=token + "x")
    elif problem == "wrong_htu":
        headers["DPoP"] = dpop_proof(proof_key, "GET", url + "/00uSomeone", access_token=token)
    elif problem == "wrong_htm":
        headers["DPoP"] = dpop_proof(proof_key, "POST", url, access_token=token)
    elif problem == "other_key":
        headers["DPoP"] = dpop_proof(new_ec_key(), "GET", url, access_token=token)
    elif problem == "replayed":
        assert dpop_client.http.get(url, headers=headers).status_code == 200
    response = dpop_client.http.get(url, headers=headers)
    assert response.status_code == 401
    assert response.json()["errorCode"] == "E0000011"
    assert response.headers["WWW-Authenticate"].startswith("DPoP ")


def test_the_proof_htu_excludes_the_query(devorg, dpop_client):
    proof_key = new_ec_key()
    token = dpop_token(dpop_client, proof_key)["access_token"]
    url = f"{devorg.url}/api/v1/users"
    with_query = dpop_proof(proof_key, "GET", f"{url}?limit=1", access_token=token)
    response = dpop_client.http.get(f"{url}?limit=1", headers={"Authorization": f"DPoP {token}", "DPoP": with_query})
    assert response.status_code == 401


def test_rsa_proofs_work_too(devorg, dpop_client):
    proof_key = new_rsa_key()
    first = dpop_client.request_token(headers={"DPoP": dpop_proof(proof_key, "POST", dpop_client.token_url,
                                                                  alg="RS256")})
    nonce = first.headers["DPoP-Nonce"]
    second = dpop_client.request_token(headers={"DPoP": dpop_proof(proof_key, "POST", dpop_client.token_url,
                                                                   nonce=nonce, alg="RS256")})
    assert second.json()["token_type"] == "DPoP"


@pytest.mark.parametrize("login", ["a seeded user's login", "a+tag@example.com", "no body@example.com"])
def test_the_proof_htu_is_the_percent_decoded_path_as_okta_compares_it(devorg, dpop_client, login):
    """okta-sdk-python #541, okta-sdk-nodejs #521, okta-sdk-java #1526: Okta decodes the path before comparing."""
    from urllib.parse import quote

    seeded = devorg.admin.users(limit=1)[0]
    login = seeded["profile"]["login"] if login.startswith("a seeded") else login
    proof_key = new_ec_key()
    token = dpop_token(dpop_client, proof_key)["access_token"]
    base = f"{devorg.url}/api/v1/users/"
    sent = base + quote(login, safe="")

    def call(htu):
        return dpop_client.http.get(sent, headers={"Authorization": f"DPoP {token}",
                                                   "DPoP": dpop_proof(proof_key, "GET", htu, access_token=token)})

    decoded = call(base + login)  # the proof is accepted: the answer is about the user, not the token
    if login == seeded["profile"]["login"]:
        assert decoded.status_code == 200 and decoded.json()["id"] == seeded["id"]
    else:
        assert decoded.status_code == 404 and decoded.json()["errorCode"] == "E0000007"
    encoded = call(sent)
    assert encoded.status_code == 401
    assert 'error="invalid_dpop_proof"' in encoded.headers["WWW-Authenticate"]
