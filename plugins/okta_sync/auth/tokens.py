"""Access tokens: the value, the request to Okta's token endpoint, and a thread-safe cache.

`TokenCache.get(scopes)` returns a cached token while more than the refresh margin is left; when several threads
need a token at once, exactly one of them asks Okta. Each new token is handed to `on_new_token` the moment it exists
(the Airflow layer plugs in `mask_secret` there).

A token response is untrusted input: the token must be visible ASCII (it goes into a header: CR/LF would split it),
`token_type` Bearer or DPoP, `expires_in` a positive finite number (clamped to at most `MAX_TOKEN_LIFETIME`), and
the body at most `MAX_TOKEN_RESPONSE_BYTES`. Refusals never repeat the token.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, NoReturn, Protocol

import requests

from okta_sync.auth.assertion import PrivateKeyJWT
from okta_sync.auth.client_secret import ClientSecretBasic
from okta_sync.auth.dpop import DPoPKey
from okta_sync.clock import SYSTEM_CLOCK, Clock
from okta_sync.errors import TokenRequestError
from okta_sync.http.api_errors import token_error
from okta_sync.http.transport import RetryPolicy, Transport
from okta_sync.metrics import Metrics, NoMetrics
from okta_sync.server_text import server_text

log = logging.getLogger(__name__)

DPOP_HEADER_MISSING = "The DPoP proof JWT header is missing."
BUCKET_TOKEN = "token"  # the token endpoint's own rate-limit bucket
TOKEN = "token"  # the kind of request, naming its metrics: token.responses.2xx, token.retries, ...
# An authorization-server outage lasts tens of seconds: the API's handful of quick jittered retries (~8 s in all with
# six attempts) would give up long before it ends, so token requests have their own policy (`token_retry_policy`):
# this many attempts, 1 to 15 s apart, within max_retry_time.
OUTAGE_ATTEMPTS = 20
MAX_TOKEN_LIFETIME = 3600.0  # Okta's org authorization server issues one-hour tokens; longer claims are clamped
MAX_TOKEN_RESPONSE_BYTES = 256 * 1024  # a token response is a few KB
_TOKEN_VALUE = re.compile(r"[\x21-\x7e]{1,16384}\Z")  # visible ASCII: nothing that can split a header
_NOT_SERIALISABLE = (
    "an AccessToken is never serialised (pickle, JSON, XCom): it would be stored in clear. Return metadata such as "
    "token.scopes and token.expires_at from a task instead; tasks of one DAG run share a token through "
    "OktaHook.join_run (sealed)."
)


def token_retry_policy(max_retry_time: float) -> RetryPolicy:
    """The token endpoint's retry policy: long enough to ride out an authorization-server outage, bounded by
    `max_retry_time` (the connection's `max_attempts` governs API calls only)."""
    return RetryPolicy(max_attempts=OUTAGE_ATTEMPTS, max_retry_time=max_retry_time, min_wait=1.0, max_wait=15.0)


def scope_key(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(scopes)))


class AccessToken:
    """An access token that can neither print nor serialise itself. A DPoP-bound token carries its proof key.

    Immutable. `repr`/`str` are redacted; pickle, `copy` aside, refuses it; Airflow's serde (XCom) calls
    `serialize`, which refuses; it is not a dataclass or attrs class, so `asdict` and `vars` find nothing.
    """

    __slots__ = ("value", "token_type", "expires_at", "scopes", "dpop_key", "issued_at")

    def __init__(self, value: str, token_type: str, expires_at: float, scopes: tuple[str, ...],
                 dpop_key: DPoPKey | None = None, issued_at: float | None = None):
        for name, item in (("value", value), ("token_type", token_type), ("expires_at", expires_at),
                           ("scopes", tuple(scopes)), ("dpop_key", dpop_key), ("issued_at", issued_at)):
            object.__setattr__(self, name, item)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("AccessToken is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("AccessToken is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccessToken):
            return NotImplemented
        return (self.value, self.token_type, self.expires_at, self.scopes) == (
            other.value, other.token_type, other.expires_at, other.scopes)

    def __hash__(self) -> int:
        return hash((self.value, self.token_type, self.expires_at, self.scopes))

    def __str__(self) -> str:
        return f"AccessToken({self.token_type}, scopes={' '.join(self.scopes)!r}, expires_at={self.expires_at:.0f}, value=***)"

    __repr__ = __str__

    # -- never serialised ---------------------------------------------------------------------------------------
    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(_NOT_SERIALISABLE)

    def __getstate__(self) -> NoReturn:
        raise TypeError(_NOT_SERIALISABLE)

    def serialize(self) -> NoReturn:
        """Airflow's serde (`airflow.sdk.serde.serialize`, used for XCom) calls this: refused."""
        raise TypeError(_NOT_SERIALISABLE)

    def __copy__(self) -> "AccessToken":
        return self  # immutable: a copy is the same token, and copying must not go through pickling

    def __deepcopy__(self, memo: dict) -> "AccessToken":
        return self

    def is_expired(self, leeway: float = 0.0, now: float | None = None) -> bool:
        if self.issued_at is not None:  # a short-lived token is refreshed at half its life, not on every call
            leeway = min(leeway, (self.expires_at - self.issued_at) / 2)
        return (time.time() if now is None else now) >= self.expires_at - leeway

    @property
    def is_dpop(self) -> bool:
        return self.token_type.lower() == "dpop"

    def authorization_header(self) -> str:
        return f"{'DPoP' if self.is_dpop else 'Bearer'} {self.value}"

    # -- the transport's `Credential` -----------------------------------------------------------------------------
    def apply(self, method: str, url: str, headers: MutableMapping[str, str]) -> None:
        """Authorize one request: the `Authorization` header and, for a DPoP-bound token, a fresh proof."""
        headers["Authorization"] = self.authorization_header()
        if self.dpop_key is not None:
            headers["DPoP"] = self.dpop_key.proof(method, url, access_token=self.value)

    def observe(self, url: str, headers: Mapping[str, str]) -> None:
        if self.dpop_key is not None:
            self.dpop_key.remember_nonce(url, headers.get("DPoP-Nonce"))


class TokenEndpoint:
    """Client credentials with a fresh client assertion per request, DPoP when asked, sent along the one HTTP path
    (`Transport`: pacing on the `token` bucket, the retry engine, the exception mapping, bounded bodies) without
    any access token. Only the authorization server's refusals are read here (OAuth `error`, not Okta's
    `errorCode`)."""

    def __init__(
        self,
        transport: Transport,
        token_url: str,
        client_auth: PrivateKeyJWT | ClientSecretBasic,
        *,
        dpop: str = "off",
        retry: RetryPolicy | None = None,
    ):
        self.transport = transport
        self.token_url = token_url
        self.client_auth = client_auth
        self.dpop_mode = dpop
        self.retry = retry or token_retry_policy(transport.config.max_retry_time)

    def fetch(self, scopes: Iterable[str]) -> AccessToken:
        """A new token; a token endpoint that is down or overloaded (5xx, 429, unreachable) is retried under
        `self.retry`. One attempt may take up to three exchanges: dpop=auto's switch to DPoP and the nonce round
        trip are answers to act on, not failures."""
        key = scope_key(scopes)
        return self.transport.call("POST", self.token_url, lambda: self._fetch_once(key), policy=self.retry,
                                   resend=True, kind=TOKEN)  # a lost response cost one token: asking again is safe

    def _fetch_once(self, scopes: tuple[str, ...]) -> AccessToken:
        dpop_key = DPoPKey() if self.dpop_mode == "on" else None
        response, content = self._post(scopes, dpop_key)
        error = _error_fields(response, content)
        if error and self.dpop_mode == "auto" and dpop_key is None and _dpop_required(error):
            log.info("Okta requires DPoP for this app; switching DPoP on (dpop=auto)")
            self.dpop_mode = "on"
            dpop_key = DPoPKey()
            response, content = self._post(scopes, dpop_key)
            error = _error_fields(response, content)
        if error and dpop_key is not None and error.get("error") == "use_dpop_nonce":
            nonce = response.headers.get("DPoP-Nonce")
            if not nonce:
                raise self._error(response, content, error, extra="use_dpop_nonce without a DPoP-Nonce header",
                                  scopes=scopes)
            dpop_key.remember_nonce(self.token_url, nonce)
            response, content = self._post(scopes, dpop_key)  # fresh proof AND fresh assertion: both jti are single-use
            error = _error_fields(response, content)
        if error or response.status_code != 200:
            refused = self._error(response, content, error or {}, scopes=scopes)
            failure = self.transport.transient_status("POST", self.token_url, response.status_code, response.headers,
                                                      refused, BUCKET_TOKEN, kind=TOKEN)
            raise failure or refused
        return self._parse(response, content, scopes, dpop_key)

    def _post(self, scopes: tuple[str, ...], dpop_key: DPoPKey | None) -> tuple[requests.Response, bytes]:
        """One exchange with a fresh assertion (and proof): never an `Authorization: Bearer` header."""
        data = {"grant_type": "client_credentials", "scope": " ".join(scopes), **self.client_auth.form_fields(self.token_url)}
        headers = {"Accept": "application/json", **self.client_auth.auth_headers(self.token_url)}
        if dpop_key is not None:
            headers["DPoP"] = dpop_key.proof("POST", self.token_url)
        self.transport.metrics.incr("token.requests")
        # The token endpoint's outages are ridden out by its own retry policy, and say nothing about the API's
        # health: its answers stay out of the circuit breaker.
        response, content = self.transport.send("POST", self.token_url, bucket=BUCKET_TOKEN, headers=headers,
                                                data=data, max_bytes=MAX_TOKEN_RESPONSE_BYTES, breaker=False,
                                                kind=TOKEN)
        if dpop_key is not None:
            dpop_key.remember_nonce(self.token_url, response.headers.get("DPoP-Nonce"))
        return response, content

    def _parse(self, response: requests.Response, content: bytes, requested: tuple[str, ...],
               dpop_key: DPoPKey | None) -> AccessToken:
        try:
            body = json.loads(content)
            value = body["access_token"]
            token_type = body.get("token_type", "Bearer")
        except (ValueError, KeyError, TypeError):
            raise self._invalid_response(response, "the token endpoint's 200 response has no access_token") from None
        if not isinstance(value, str) or not _TOKEN_VALUE.match(value):
            raise self._invalid_response(
                response, "the access_token is not a string of visible ASCII characters (CR, LF, spaces, control or "
                          "non-ASCII characters would corrupt the Authorization header); refused")
        if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "dpop"):
            raise self._invalid_response(response, "token_type is neither Bearer nor DPoP")
        expires_in = self._lifetime(response, body.get("expires_in", MAX_TOKEN_LIFETIME))
        granted = tuple(map(server_text, str(body.get("scope") or " ".join(requested)).split()))  # shown by Test
        if token_type.lower() == "dpop" and dpop_key is None:
            raise token_error(
                status=200, error="unexpected_dpop", token_url=self.token_url,
                error_description="Okta issued a DPoP-bound token to a request without a proof",
            )
        now = self.transport.clock.time()
        return AccessToken(
            value=value, token_type=token_type, expires_at=now + expires_in, scopes=granted,
            dpop_key=dpop_key if token_type.lower() == "dpop" else None, issued_at=now,
        )

    def _lifetime(self, response: requests.Response, expires_in: Any) -> float:
        """`expires_in` as a positive finite number of seconds, clamped to MAX_TOKEN_LIFETIME: Infinity, NaN, zero
        or negative values are refused (a token that never expires, or one token request per call)."""
        try:
            seconds = float(expires_in) if not isinstance(expires_in, bool) else math.nan
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise self._invalid_response(response, "expires_in is not a positive finite number of seconds")
        return min(seconds, MAX_TOKEN_LIFETIME)

    def _invalid_response(self, response: requests.Response, description: str) -> TokenRequestError:
        return token_error(
            status=response.status_code, error="invalid_response", token_url=self.token_url,
            error_description=description, request_id=response.headers.get("X-Okta-Request-Id"),
        )

    def _error(self, response: requests.Response, content: bytes, error: dict, extra: str | None = None,
               scopes: tuple[str, ...] = ()) -> TokenRequestError:
        code = _text(error.get("error") or ("http_error" if response.status_code != 200 else None))
        description = _text(error.get("error_description") or extra or _non_json_description(response))
        if code == "invalid_scope" and scopes:
            description = f"{description} (scopes requested: {' '.join(scopes)})"
        return token_error(
            status=response.status_code, error=code, error_description=description,
            token_url=self.token_url, request_id=response.headers.get("X-Okta-Request-Id"),
            hint=token_error_hint(code, description, self.token_url),
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:500]


def _error_fields(response: requests.Response, content: bytes) -> dict | None:
    if response.status_code < 400:
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _dpop_required(error: dict) -> bool:
    return error.get("error") == "invalid_dpop_proof" and DPOP_HEADER_MISSING in str(error.get("error_description"))


def _non_json_description(response: requests.Response) -> str:
    kind = server_text(response.headers.get("Content-Type", "no content type").split(";")[0][:100])
    return f"HTTP {response.status_code} with a {kind} body, not an OAuth error (a proxy or load balancer answered?)"


def token_error_hint(error: str | None, description: str | None, token_url: str) -> str | None:
    """What to check for the known causes of a refused token request."""
    text = (description or "").lower()
    if error == "invalid_client":
        if "already been used" in text or "jti" in text:
            return "Each client assertion is single-use (its jti is consumed, even on failure); a new one is signed per request."
        if "audience" in text or "aud" in text:
            return f"The assertion's aud must be exactly the token URL called ({token_url}); check token_url / authorization_server_id."
        if "kid" in text or "key" in text or "signature" in text:
            return (
                "The key is not one registered for this app: check key_id (kid) matches a public key in the app's JWKS "
                "(kid is required when the app has several keys), and that private_key is that key's private half."
            )
        if "iss" in text or "sub" in text or "client" in text:
            return "iss and sub must both be the app's client ID; check the connection's login (client ID)."
        return (
            "Okta did not accept the client assertion: check client ID, key_id (kid), that the public key is registered, "
            "that the app uses 'Public key / Private key' client authentication, and the server clock."
        )
    if error == "invalid_scope":
        return (
            "Request at least one scope, and only scopes granted to the app (Okta Admin Console > Applications > the app "
            "> Okta API Scopes). Management scopes (okta.*) need the org authorization server (/oauth2/v1/token)."
        )
    if error == "invalid_dpop_proof":
        return "This app requires DPoP: set dpop to 'on' (or 'auto') in the connection."
    if error == "unauthorized_client":
        return "The app is not allowed the client_credentials grant: enable it in the app's General settings."
    return None


class TokenProvider(Protocol):
    """Where the cache gets a token it does not hold (authlib's `update_token`, google-auth's credentials): a token
    obtained elsewhere (the DAG run's shared token, handed over by the Airflow layer) or `mint(scopes)`'s new one."""

    def __call__(self, scopes: tuple[str, ...], mint: Callable[[tuple[str, ...]], AccessToken]) -> AccessToken: ...


class TokenCache:
    """Tokens per scope set, refreshed when less than `refresh_margin` seconds are left.

    `provider`, given at construction, supplies the token on a cache miss (it may call `mint`). A forced refresh
    always mints: the token obtained elsewhere is the one Okta just refused.
    """

    def __init__(
        self,
        fetch: Callable[[Iterable[str]], AccessToken],
        *,
        refresh_margin: float = 300.0,
        on_new_token: Callable[[AccessToken], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        provider: TokenProvider | None = None,
    ):
        self.metrics = metrics or NoMetrics()
        self._mint = fetch
        self._fetch = fetch if provider is None else (lambda key: provider(key, fetch))
        self.refresh_margin = refresh_margin
        self._on_new_token = on_new_token
        self.clock = clock
        self._tokens: dict[tuple[str, ...], AccessToken] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenCache(scope_sets={list(self._tokens)})"

    def _lock_for(self, key: tuple[str, ...]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fresh(self, key: tuple[str, ...]) -> AccessToken | None:
        token = self._tokens.get(key)
        if token is not None and not token.is_expired(self.refresh_margin, now=self.clock.time()):
            return token
        return None

    def get(self, scopes: Iterable[str], *, force_refresh: bool = False, stale: AccessToken | None = None) -> AccessToken:
        """A valid token for these scopes. `force_refresh` with `stale` replaces only that token (one refresh per 401)."""
        key = scope_key(scopes)
        token = None if force_refresh else self._fresh(key)
        if token is not None:
            self.metrics.incr("token.cache_hit")
            return token
        with self._lock_for(key):
            current = self._tokens.get(key)
            if force_refresh and stale is not None and current is not None and current.value != stale.value:
                return current  # another thread already replaced the rejected token
            if not force_refresh:
                token = self._fresh(key)
                if token is not None:
                    self.metrics.incr("token.cache_hit")
                    return token
            self.metrics.incr("token.cache_miss")
            started = self.clock.monotonic()
            token = self._mint(key) if force_refresh else self._fetch(key)
            self.metrics.timing("token.fetch", self.clock.monotonic() - started)
            self.put(token, key)
            return token

    def put(self, token: AccessToken, key: Iterable[str] | None = None) -> None:
        """Adopt a token obtained elsewhere (e.g. minted by an earlier task of the same DAG run)."""
        if self._on_new_token is not None:
            self._on_new_token(token)
        self._tokens[scope_key(key if key is not None else token.scopes)] = token

    def peek(self, scopes: Iterable[str]) -> AccessToken | None:
        return self._tokens.get(scope_key(scopes))

    def clear(self) -> None:
        self._tokens.clear()

