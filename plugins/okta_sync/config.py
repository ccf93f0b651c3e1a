"""The connector's settings as one immutable value, checked once, with errors that name the field."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields, replace
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from okta_sync.errors import ConfigurationError, UnsafeUrlError
from okta_sync.urls import origin_of

READ_SCOPE = "okta.users.read"
MANAGE_SCOPE = "okta.users.manage"
DEFAULT_SCOPES = (READ_SCOPE, MANAGE_SCOPE)
DPOP_MODES = ("off", "on", "auto")
MAX_ASSERTION_LIFETIME = 3600
PRIVATE_KEY_JWT = "private_key_jwt"
CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_AUTH_METHODS = (PRIVATE_KEY_JWT, CLIENT_SECRET_BASIC)
ORG_TOKEN_PATH = "/oauth2/v1/token"
# A plain scope name (Okta's okta.users.read, a custom AS's `read:reports`): no wildcard, quote or space.
_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url_scheme(url: str, field_name: str) -> None:
    """https everywhere; plain http only to a loopback host (the local dev org). No userinfo, nothing that is not
    plain RFC 3986 (errors then never repeat the URL: it may hold a password)."""
    try:
        origin_of(url)
    except UnsafeUrlError as error:
        reason = str(error).removeprefix("refusing ")
        raise ConfigurationError(field_name, f"is {reason}; give the URL as https://host (no user:password@)") from None
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return
    if parts.scheme == "http":
        raise ConfigurationError(field_name, f"{url!r} uses http:// to a non-loopback host; Okta needs https://")
    raise ConfigurationError(field_name, f"{url!r} is not an https:// URL")


def _split_scopes(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_SCOPES
    if isinstance(value, str):
        items = value.replace(",", " ").split()
    else:
        items = [str(v).strip() for v in value]
    return tuple(dict.fromkeys(s for s in items if s))


def check_scopes(scopes: tuple[str, ...]) -> None:
    for position, scope in enumerate(scopes, 1):
        if not _SCOPE.match(scope):
            raise ConfigurationError(
                "scopes", f"scope {position} is not a plain scope name (letters, digits and . _ : / - only; no "
                          f"wildcard such as okta.*): list each scope the app was granted, e.g. okta.users.read"
            )


@dataclass(frozen=True)
class OktaConfig:
    """Everything needed to talk to one Okta org as one service app.

    The private key is given either inline (`private_key`: PEM or JWK JSON text) or as `private_key_path`.
    """

    org_url: str
    client_id: str
    private_key: str | None = field(default=None, repr=False)
    private_key_path: str | None = None
    private_key_passphrase: str | None = field(default=None, repr=False)
    key_id: str | None = None
    algorithm: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    authorization_server_id: str | None = None
    token_url: str | None = None
    assertion_lifetime: int = 300
    dpop: str = "off"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    ca_bundle: str | None = None
    proxy: str | None = None
    rate_limit_fraction: float = 1.0
    max_concurrency: int = 8
    page_size: int = 200
    token_refresh_margin: float = 300.0
    max_attempts: int = 6
    max_retry_time: float = 300.0
    # client_secret_basic: a custom authorization server's own scopes with the app's client secret (no key).
    client_auth: str = PRIVATE_KEY_JWT
    client_secret: str | None = field(default=None, repr=False)
    # Bounds on what a server may make a task do (see docs/reliability.md, "Hostile inputs tried").
    request_deadline: float = 120.0  # one request, connect to last body byte
    max_response_bytes: int = 10 * 1024 * 1024  # 200 users at ~50 KB each; Okta's are typically 1-3 KB
    max_pages: int = 50_000  # 10 million users at 200 per page
    max_rate_limit_wait: float = 120.0  # the longest pacing or 429 wait before RateLimitWaitError

    def __post_init__(self) -> None:
        object.__setattr__(self, "org_url", (self.org_url or "").strip().rstrip("/"))
        object.__setattr__(self, "client_id", (self.client_id or "").strip())
        object.__setattr__(self, "scopes", _split_scopes(self.scopes))
        object.__setattr__(self, "dpop", str(self.dpop).lower() if self.dpop is not None else "off")
        self._validate()

    def _validate(self) -> None:
        if not self.org_url:
            raise ConfigurationError("org_url", "is empty; set it to your org, e.g. https://dev-123.okta.com")
        check_url_scheme(self.org_url, "org_url")
        parts = urlsplit(self.org_url)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigurationError(
                "org_url", f"{self.org_url!r} must be the bare org URL (scheme and host only), with no path or query"
            )
        if not parts.hostname:
            raise ConfigurationError("org_url", f"{self.org_url!r} has no host")
        if not self.client_id:
            raise ConfigurationError("client_id", "is empty; it is the service app's Client ID (0oa...)")
        self._validate_client_auth()
        if self.client_auth == PRIVATE_KEY_JWT and not (self.private_key or self.private_key_path):
            raise ConfigurationError("private_key", "give the private key inline or set private_key_path")
        if not self.scopes:
            raise ConfigurationError("scopes", "no scope given; Okta answers invalid_scope when none is requested")
        check_scopes(self.scopes)
        if self.authorization_server_id and self.token_url:
            raise ConfigurationError("token_url", "set token_url or authorization_server_id, not both")
        if self.token_url:
            check_url_scheme(self.token_url, "token_url")
            if origin_of(self.token_url) != origin_of(self.org_url):
                raise ConfigurationError(
                    "token_url", f"is on another host than org_url ({self.org_url}); the client assertion and its "
                                 f"token must stay with the org: use {self.org_url}/oauth2/<server>/v1/token (with a custom "
                                 f"domain, set org_url to that domain)"
                )
        if self.proxy and urlsplit(self.org_url).scheme != "https":
            raise ConfigurationError(
                "proxy", "is set for a plain http:// org: the access token would reach the proxy in clear; "
                         "a proxy is only used for https:// orgs"
            )
        if not 0 < self.assertion_lifetime <= MAX_ASSERTION_LIFETIME:
            raise ConfigurationError(
                "assertion_lifetime", f"must be between 1 and {MAX_ASSERTION_LIFETIME} seconds (Okta refuses longer)"
            )
        if self.dpop not in DPOP_MODES:
            raise ConfigurationError("dpop", f"{self.dpop!r} is not one of {', '.join(DPOP_MODES)}")
        if not 0 < self.rate_limit_fraction <= 1:
            raise ConfigurationError("rate_limit_fraction", "must be in (0, 1]")
        if self.max_concurrency < 1:
            raise ConfigurationError("max_concurrency", "must be at least 1")
        if not 1 <= self.page_size <= 200:
            raise ConfigurationError("page_size", "must be between 1 and 200 (Okta's cap)")
        for name in ("connect_timeout", "read_timeout", "max_retry_time", "request_deadline", "max_rate_limit_wait"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(name, "must be positive; calls without a timeout can hang a task forever")
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts", "must be at least 1")
        for name, floor in (("max_response_bytes", 64 * 1024), ("max_pages", 1)):
            if getattr(self, name) < floor:
                raise ConfigurationError(name, f"must be at least {floor}")

    def _validate_client_auth(self) -> None:
        if self.client_auth not in CLIENT_AUTH_METHODS:
            raise ConfigurationError("client_auth", f"must be one of {', '.join(CLIENT_AUTH_METHODS)}")
        if self.client_auth != CLIENT_SECRET_BASIC:
            return
        if not self.client_secret:
            raise ConfigurationError("client_secret", "client_secret_basic needs the app's client secret "
                                                      "(the connection's password)")
        if self.private_key or self.private_key_path:
            raise ConfigurationError("private_key_path" if self.private_key_path else "private_key",
                                     "a key is not used with client_secret_basic: remove it, or use private_key_jwt")
        if not self.authorization_server_id and (not self.token_url or self.token_url.rstrip("/").endswith(ORG_TOKEN_PATH)):
            raise ConfigurationError(
                "authorization_server_id",
                "Okta refuses a client secret at the org authorization server for a service app: client_secret_basic "
                "works only with a custom authorization server (set authorization_server_id); the org server and its "
                "okta.* scopes need private_key_jwt")
        management = [scope for scope in self.scopes if scope.startswith("okta.")]
        if management:
            raise ConfigurationError(
                "scopes", f"{', '.join(management)}: okta.* scopes are minted only by the org authorization server "
                          "(private_key_jwt); list the custom authorization server's own scopes")

    @property
    def resolved_token_url(self) -> str:
        """The exact URL the token request goes to, which is also the assertion's `aud`."""
        if self.token_url:
            return self.token_url
        if self.authorization_server_id:
            return f"{self.org_url}/oauth2/{self.authorization_server_id}/v1/token"
        return f"{self.org_url}/oauth2/v1/token"

    def with_overrides(self, **overrides: Any) -> "OktaConfig":
        """A copy with the given settings replaced (None means: keep the current value)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "OktaConfig":
        """Build from loosely typed values (connection extras are often strings); unknown keys are refused."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigurationError(unknown[0], f"unknown setting; known settings: {', '.join(sorted(known))}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if value is None or value == "":
                continue
            converted[name] = _coerce(name, known[name].type, value)
        return cls(**converted)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    kind = str(annotation)
    try:
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"{value!r} is not a number") from None
    return value
