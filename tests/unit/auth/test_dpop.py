"""DPoP (RFC 9449) against a scripted server that answers as Okta's recordings do."""

from __future__ import annotations

import base64
import hashlib

import jwt
import pytest

from okta_sync import OktaClient, OktaConfig, TokenRequestError
from okta_sync.auth.dpop import DPoPKey, htu_for
from tests import keys
from tests.scripted_server import Reply, ScriptedServer

TOKEN = "/oauth2/v1/token"
USER = "/api/v1/users/00u1"
MISSING = {"error": "invalid_dpop_proof", "error_description": "The DPoP proof JWT header is missing."}
NEED_NONCE = {"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof."}


def _verify_proof(proof: str) -> tuple[dict, dict]:
    header = jwt.get_unverified_header(proof)
    public_key = jwt.algorithms.ECAlgorithm.from_jwk(header["jwk"])
    return header, jwt.decode(proof, public_key, algorithms=["ES256"])


class OktaLikeDPoP:
    """Token endpoint that requires DPoP with a nonce, and a resource server checking `ath`."""

    def __init__(self, server: ScriptedServer):
        self.server = server
        self.issued = []

    def token(self, request):
        proof = request.headers.get("DPoP")
        if not proof:
            return Reply(400, MISSING)
        header, claims = _verify_proof(proof)
        assert header["typ"] == "dpop+jwt" and "d" not in header["jwk"]
        assert claims["htm"] == "POST" and claims["htu"] == self.server.url + TOKEN
        if claims.get("nonce") != "n-1":
            return Reply(400, NEED_NONCE, headers={"DPoP-Nonce": "n-1"})
        self.issued.append(header["jwk"])
        return Reply(200, {"token_type": "DPoP", "expires_in": 3600, "access_token": "dpop-tok", "scope": "okta.users.read"})

    def user(self, request):
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme == "DPoP"
        _, claims = _verify_proof(request.headers["DPoP"])
        expected_ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        assert claims["ath"] == expected_ath
        assert claims["htu"] == self.server.url + USER and claims["htm"] == "GET"
        return Reply(200, {"id": "00u1", "profile": {}}, headers={"DPoP-Nonce": "api-nonce-2"})


@pytest.fixture(scope="module")
def pem():
    return keys.pkcs8_pem(keys.ec_key())


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_nonce_exchange_then_bound_token_on_api_calls(pem, mode):
    with ScriptedServer() as server:
        okta = OktaLikeDPoP(server)
        server.route("POST", TOKEN, okta.token)
        server.route("GET", USER, okta.user)
        client = OktaClient(OktaConfig(org_url=server.url, client_id="c", private_key=pem, key_id="k", dpop=mode))
        client.get_user("00u1")
        client.get_user("00u1")
        token_posts = server.requests_to("POST", TOKEN)
        assert len(token_posts) == (2 if mode == "on" else 3)
        assertions = [r.form()["client_assertion"] for r in token_posts]
        assert len(set(assertions)) == len(assertions)  # a fresh assertion for every attempt
        proofs = [r.headers["DPoP"] for r in token_posts if "DPoP" in r.headers]
        assert len(set(proofs)) == len(proofs)
        token = client.get_token(("okta.users.read",))
        assert token.is_dpop and "dpop-tok" not in repr(token)
        assert token.dpop_key.public_jwk == okta.issued[0]
        # the nonce the resource server sent is used on the next call
        _, claims = _verify_proof(server.requests_to("GET", USER)[1].headers["DPoP"])
        assert claims["nonce"] == "api-nonce-2"


def test_dpop_off_against_an_app_that_requires_it_explains(pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, Reply(400, MISSING))
        client = OktaClient(OktaConfig(org_url=server.url, client_id="c", private_key=pem, key_id="k"))
        with pytest.raises(TokenRequestError, match="set dpop to 'on'"):
            client.get_token()


def test_htu_has_no_query_and_a_decoded_path():
    assert htu_for("https://o.okta.com/api/v1/users/a%40b.com?limit=1#x") == "https://o.okta.com/api/v1/users/a@b.com"


def test_dpop_key_round_trips_through_pem_and_keeps_its_thumbprint():
    key = DPoPKey()
    again = DPoPKey.from_pem(key.to_pem())
    assert again.thumbprint() == key.thumbprint()
    assert "PRIVATE" not in repr(key)
