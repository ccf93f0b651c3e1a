"""The authorization servers: client registry, strict private_key_jwt verification, scopes, DPoP, access tokens."""
from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .dpop import DPoPVerifier, ProofError
from .errors import OAuthRefusal
from .keys import jwk_thumbprint, public_jwk

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3600
MAX_ASSERTION_LIFETIME = 3600
CLOCK_SKEW = 60
ALGORITHMS_BY_KTY = {"RSA": ("RS256", "RS384", "RS512"), "EC": ("ES256", "ES384", "ES512")}
EC_ALG_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
# Custom authorization servers and the scopes their admins defined (no management scopes: Okta mints okta.* only
# at the org authorization server). "default" is the one every Okta org has.
CUSTOM_SERVER_SCOPES = {"default": frozenset({"internal.api.read", "internal.api.write"})}
CUSTOM_SERVERS = set(CUSTOM_SERVER_SCOPES)
ORG_SERVER_NEEDS_PRIVATE_KEY_JWT = ("Client Credentials requests to the Org Authorization Server must use the "
                                   "private_key_jwt token_endpoint_auth_method.")
SECRET_INVALID = "The client secret supplied for a confidential client is invalid."
MANAGEMENT_PREFIX = "okta."


@dataclass
class Client:
    client_id: str
    jwks: list[dict]
    granted_scopes: frozenset[str]
    dpop_required: bool = False
    client_secret: str | None = field(default=None, repr=False)  # token_endpoint_auth_method client_secret_basic


@dataclass
class AccessToken:
    value: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float
    server: str  # "org" or a custom authorization server id
    jkt: str | None = None
    revoked: bool = False
    uses: int = field(default=0)


def _claims_unverified(assertion: str) -> tuple[dict, dict]:
    try:
        return jwt.get_unverified_header(assertion), jwt.decode(assertion, options={"verify_signature": False})
    except Exception as exc:
        raise OAuthRefusal(401, "invalid_client", "The client_assertion token is malformed.", "assertion_malformed") \
            from exc


class AuthorizationServer:
    def __init__(self, org_url: str, dpop: DPoPVerifier):
        self.org_url = org_url
        self.dpop = dpop
        self.lock = threading.Lock()
        self.clients: dict[str, Client] = {}
        self.used_jti: dict[str, float] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.outage_until = 0.0
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = public_jwk(self.signing_key.public_key())
        self.signing_kid = jwk_thumbprint(jwk)

    # ---- clients --------------------------------------------------------------------------------------------
    def register_client(self, client_id: str, jwks: list[dict], granted_scopes, dpop_required: bool = False,
                        client_secret: str | None = None) -> None:
        """A private_key_jwt client (jwks) or, with `client_secret` and no jwks, a client_secret_basic one."""
        for key in jwks:
            if "d" in key:
                raise ValueError("register the public JWK only")
            if key.get("kty") not in ALGORITHMS_BY_KTY:
                raise ValueError(f"unsupported kty {key.get('kty')!r}")
        with self.lock:
            self.clients[client_id] = Client(client_id, [dict(k) for k in jwks], frozenset(granted_scopes),
                                             dpop_required, client_secret)

    # ---- token endpoint -------------------------------------------------------------------------------------
    def token(self, form: dict[str, str], invoked_url: str, server: str, dpop_proof: str | None,
              basic_auth: bool, authorization: str | None = None) -> dict:
        """The token response for a form-encoded request to `invoked_url`; raises OAuthRefusal. `authorization`:
        the request's Authorization header (client_secret_basic)."""
        if time.time() < self.outage_until:
            raise OAuthRefusal(503, "temporarily_unavailable",
                               "The authorization server is temporarily unavailable.", "outage")
        if form.get("grant_type") is None:
            raise OAuthRefusal(400, "invalid_request", "The `grant_type` parameter is required.", "grant_type_missing")
        if basic_auth or "client_secret" in form:
            if "client_assertion" in form:
                raise OAuthRefusal(400, "invalid_request",
                                   "Can't supply multiple client credentials. Use one of the following: credentials "
                                   "in the Authorization header, credentials in the post body, or a "
                                   "`client_assertion` in the post body.", "multiple_credentials")
            if server == "org" or not basic_auth:
                # Okta: a service app's client secret is refused at the org authorization server.
                raise OAuthRefusal(401, "invalid_client", ORG_SERVER_NEEDS_PRIVATE_KEY_JWT if server == "org"
                                   else SECRET_INVALID, "not_private_key_jwt")
            client = self._authenticate_secret(authorization or "", form.get("client_id"))
            if form["grant_type"] != "client_credentials":
                raise OAuthRefusal(400, "unsupported_grant_type", "The grant type in the request isn't supported.",
                                   "grant_type_unsupported")
            jkt = self._dpop_for_token(client, dpop_proof, invoked_url)
            return self._issue(client, self._scopes(client, form.get("scope"), server), server, jkt)
        assertion = form.get("client_assertion")
        if not assertion:
            raise OAuthRefusal(401, "invalid_client", "No client credentials found", "no_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthRefusal(400, "invalid_request", "The `client_assertion_type` is invalid.",
                               "assertion_type_invalid")
        client = self._authenticate(assertion, invoked_url, form.get("client_id"))
        if form["grant_type"] != "client_credentials":
            raise OAuthRefusal(400, "unsupported_grant_type", "The grant type in the request isn't supported.",
                               "grant_type_unsupported")
        jkt = self._dpop_for_token(client, dpop_proof, invoked_url)
        scopes = self._scopes(client, form.get("scope"), server)
        return self._issue(client, scopes, server, jkt)

    def _authenticate(self, assertion: str, invoked_url: str, form_client_id: str | None) -> Client:
        header, claims = _claims_unverified(assertion)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS_BY_KTY["RSA"] + ALGORITHMS_BY_KTY["EC"]:
            raise OAuthRefusal(401, "invalid_client",
                               f"The client_assertion signature algorithm '{alg}' is not supported.",
                               "alg_not_allowed")
        iss, sub = claims.get("iss"), claims.get("sub")
        client = self.clients.get(sub) if isinstance(sub, str) else None
        if client is None or (form_client_id is not None and form_client_id != sub):
            raise OAuthRefusal(401, "invalid_client", "Invalid value for the `client_id` parameter", "client_unknown")
        if iss != sub:
            raise OAuthRefusal(401, "invalid_client",
                               "The client_assertion token must have 'iss' and 'sub' claims equal to the client_id.",
                               "iss_sub_mismatch")
        key = self._key_for(client, header, alg)
        try:
            jwt.decode(assertion, key, algorithms=[alg],
                       options={"verify_aud": False, "verify_exp": False, "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidSignatureError as exc:
            raise OAuthRefusal(401, "invalid_client", "The client_assertion signature is invalid.",
                               "signature_invalid") from exc
        except jwt.PyJWTError as exc:
            raise OAuthRefusal(401, "invalid_client", "The client_assertion token is malformed.",
                               "assertion_malformed") from exc
        self._check_lifetime(claims)
        aud = claims.get("aud")
        if not (aud == invoked_url or (isinstance(aud, list) and aud == [invoked_url])):
            raise OAuthRefusal(401, "invalid_client",
                               "The audience claim for client_assertion must be the endpoint invoked for the request.",
                               "aud_mismatch")
        self._consume_jti(claims)
        return client

    def _authenticate_secret(self, authorization: str, form_client_id: str | None) -> Client:
        """client_secret_basic: `Basic base64(urlencode(client_id):urlencode(secret))` (RFC 6749 2.3.1)."""
        try:
            decoded = base64.b64decode(authorization.split(" ", 1)[1].strip(), validate=True).decode("utf-8")
            client_id, secret = (unquote_plus(part) for part in decoded.split(":", 1))
        except (IndexError, ValueError):
            raise OAuthRefusal(401, "invalid_client", "No client credentials found", "basic_malformed") from None
        client = self.clients.get(client_id)
        if client is None or (form_client_id is not None and form_client_id != client_id):
            raise OAuthRefusal(401, "invalid_client", "Invalid value for the `client_id` parameter", "client_unknown")
        if client.client_secret is None or not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
            raise OAuthRefusal(401, "invalid_client", SECRET_INVALID, "secret_invalid")
        return client

    def _key_for(self, client: Client, header: dict, alg: str):
        kid = header.get("kid")
        if kid is None:
            if len(client.jwks) > 1:
                raise OAuthRefusal(401, "invalid_client",
                                   "The client_assertion token must have a 'kid' header when the client has more "
                                   "than one key.", "kid_missing")
            jwk = client.jwks[0]
        else:
            matches = [k for k in client.jwks if k.get("kid") == kid]
            if not matches:
                raise OAuthRefusal(401, "invalid_client",
                                   "The client_assertion token's 'kid' does not match any key registered for the "
                                   "client.", "kid_unknown")
            jwk = matches[0]
        allowed = ALGORITHMS_BY_KTY[jwk["kty"]]
        if jwk["kty"] == "EC":
            allowed = (EC_ALG_BY_CURVE.get(jwk.get("crv")),)
        if alg not in allowed or (jwk.get("alg") and jwk.get("alg") != alg and jwk["kty"] == "EC"):
            raise OAuthRefusal(401, "invalid_client",
                               f"The client_assertion signature algorithm '{alg}' does not match the client's key.",
                               "alg_key_mismatch")
        return jwt.PyJWK(jwk, algorithm=alg).key

    def _check_lifetime(self, claims: dict) -> None:
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)):
            raise OAuthRefusal(401, "invalid_client", "The client_assertion token must have an 'exp' claim.",
                               "exp_missing")
        if exp <= now - CLOCK_SKEW:
            raise OAuthRefusal(401, "invalid_client", "The client_assertion token is expired.", "exp_expired")
        if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise OAuthRefusal(401, "invalid_client",
                               "The client_assertion token has an expiration too far into the future.", "exp_too_far")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf > now + CLOCK_SKEW:
            raise OAuthRefusal(401, "invalid_client", "The client_assertion token is not yet valid.", "nbf_future")

    def _consume_jti(self, claims: dict) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise OAuthRefusal(401, "invalid_client", "The client_assertion token must have a 'jti' claim.",
                               "jti_missing")
        now = time.time()
        with self.lock:
            if jti in self.used_jti:
                raise OAuthRefusal(401, "invalid_client", "The client_assertion token has already been used.",
                                   "jti_reused")
            self.used_jti[jti] = float(claims["exp"]) + CLOCK_SKEW
            if len(self.used_jti) > 200_000:
                self.used_jti = {k: v for k, v in self.used_jti.items() if v > now}

    def _dpop_for_token(self, client: Client, proof: str | None, invoked_url: str) -> str | None:
        if proof is None:
            if client.dpop_required:
                raise OAuthRefusal(400, "invalid_dpop_proof", "The DPoP proof JWT header is missing.", "dpop_missing")
            return None
        try:
            claims, jkt = self.dpop.verify(proof, "POST", invoked_url)
        except ProofError as exc:
            raise OAuthRefusal(400, "invalid_dpop_proof", str(exc), "dpop_invalid") from exc
        if not self.dpop.nonce_valid(claims.get("nonce")):
            raise OAuthRefusal(400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof.",
                               "use_dpop_nonce", headers=[("DPoP-Nonce", self.dpop.new_nonce())])
        return jkt

    def _scopes(self, client: Client, requested: str | None, server: str) -> tuple[str, ...]:
        scopes = list(dict.fromkeys(s for s in (requested or "").split(" ") if s))
        if not scopes:
            raise OAuthRefusal(400, "invalid_scope", "No scopes were requested.", "scope_missing")
        for scope in scopes:
            management = scope.startswith(MANAGEMENT_PREFIX)
            if server != "org" and scope in CUSTOM_SERVER_SCOPES.get(server, ()):
                continue  # the custom server's own scope (its access policy admits every client here)
            if server != "org" or (management and scope not in client.granted_scopes) or not management:
                raise OAuthRefusal(400, "invalid_scope", "The requested scope is invalid, unknown, or malformed.",
                                   "scope_not_granted" if management and server == "org" else "scope_invalid")
        return tuple(scopes)

    def _issue(self, client: Client, scopes: tuple[str, ...], server: str, jkt: str | None) -> dict:
        now = int(time.time())
        issuer = self.org_url if server == "org" else f"{self.org_url}/oauth2/{server}"
        claims = {"ver": 1, "jti": "AT." + secrets.token_urlsafe(32), "iss": issuer, "aud": self.org_url,
                  "sub": client.client_id, "iat": now, "exp": now + TOKEN_LIFETIME, "cid": client.client_id,
                  "scp": list(scopes)}
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        value = jwt.encode(claims, self.signing_key, algorithm="RS256",
                           headers={"kid": self.signing_kid, "typ": "application/okta-internal-at+jwt"})
        token = AccessToken(value, client.client_id, frozenset(scopes), now + TOKEN_LIFETIME, server, jkt)
        with self.lock:
            self.tokens[value] = token
        return {"token_type": "DPoP" if jkt else "Bearer", "expires_in": TOKEN_LIFETIME, "access_token": value,
                "scope": " ".join(scopes)}

    # ---- resource side --------------------------------------------------------------------------------------
    def lookup(self, value: str) -> AccessToken | None:
        token = self.tokens.get(value)
        if token is None or token.revoked or token.expires_at <= time.time():
            return None
        return token

    def revoke_all(self) -> int:
        with self.lock:
            live = [t for t in self.tokens.values() if not t.revoked]
            for token in live:
                token.revoked = True
            return len(live)

    def start_outage(self, seconds: float) -> None:
        self.outage_until = time.time() + seconds
