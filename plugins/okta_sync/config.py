"""The connector's settings as one immutable value, checked once, with errors that name the field."""

from __future__ import annotations

import ipaddress
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from functools import cache
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
class Setting:
    """What a person (and the Airflow UI) needs to know about one `OktaConfig` field. Read by `setting_of(field)`.

    `source` is where the Airflow connection holds it: "host", "login", "password" or "extra" (under `extra`, default
    the field's name; `aliases` are older or shorter extra names still accepted). `schema` adds JSON-schema keywords
    for the UI form (enum, minimum, maximum, exclusiveMinimum). `sensitive` fields are masked and never printed;
    `connection_only` fields (secrets) come only from the connection, never from a hook or task argument. `form`:
    shown as its own field in the connection form (the others are set in the Extra JSON). `default_shown` replaces
    the field default in the README and the form when that reads better.
    """

    label: str
    description: str
    source: str = "extra"
    extra: str | None = None
    aliases: tuple[str, ...] = ()
    schema: Mapping[str, Any] = field(default_factory=dict)
    sensitive: bool = False
    connection_only: bool = False
    form: bool = True
    default_shown: str | None = None

    def extra_name(self, field_name: str) -> str | None:
        return (self.extra or field_name) if self.source == "extra" else None


def setting(default: Any = MISSING, **metadata: Any) -> Any:
    """An `OktaConfig` field declared with its `Setting` (see there); sensitive fields are left out of the repr."""
    described = Setting(**metadata)
    return field(default=default, repr=not described.sensitive, metadata={"setting": described})


def setting_of(config_field: Field) -> Setting:
    return config_field.metadata["setting"]


@dataclass(frozen=True)
class OktaConfig:
    """Everything needed to talk to one Okta org as one service app.

    The private key is given either inline (`private_key`: PEM or JWK JSON text) or as `private_key_path`.

    Each setting is declared once, here: its type, default and `setting(...)` metadata. The provider's connection
    form (`connection_fields.provider_conn_fields`), the connection extras mapping (`connection_fields.EXTRA_FIELDS`,
    aliases included) and the README's settings table (`settings_table()`) are derived from it. To add a setting:
      1. add a field below: `name: type = setting(default, label=..., description=..., ...)` (a secret:
         `sensitive=True, connection_only=True`; a choice: `schema={"enum": [...]}`; a bound: minimum/maximum);
      2. check its value in `_validate` (errors name the field, never echo the value);
      3. run `.venv/bin/python scripts/settings_table.py` to rewrite the README table (a test compares them).
    """

    org_url: str = setting(
        label="Org URL", source="host",
        description="the org URL, `https://dev-123.okta.com` (`http://` only to loopback, for the dev org)")
    client_id: str = setting(label="Client ID", source="login", description="the service app's client ID (`0oa...`)")
    private_key: str | None = setting(
        None, label="Private key (PEM or JWK)", source="password", sensitive=True, connection_only=True,
        description="the private key inline (PEM or JWK), as an alternative to `private_key_path`: lets a secrets "
                    "backend hold it; with `client_auth` `client_secret_basic` the password is `client_secret` instead")
    private_key_path: str | None = setting(
        None, label="Private key path", connection_only=True,
        description="a PEM (PKCS#8, PKCS#1, EC, encrypted) or JWK file (regular, at most 64 KiB) readable only "
                    "by Airflow; warned about if group/other readable")
    private_key_passphrase: str | None = setting(
        None, label="Key passphrase", sensitive=True, connection_only=True, description="for an encrypted PEM")
    key_id: str | None = setting(
        None, label="Key ID (kid)", aliases=("kid",),
        description="the key's `kid` (a JWK's own `kid` is used when none is set); required once the app has "
                    "several keys")
    algorithm: str | None = setting(
        None, label="Signing algorithm", form=False, default_shown="from the key",
        description="the client assertion's `alg`: RS256 (or RS384, RS512) for an RSA key; an EC key's follows "
                    "from its curve")
    scopes: tuple[str, ...] = setting(
        DEFAULT_SCOPES, label="Scopes", default_shown="`" + " ".join(DEFAULT_SCOPES) + "`",
        description="space-separated; a ceiling: each task asks only for what it needs")
    authorization_server_id: str | None = setting(
        None, label="Authorization server id",
        description="a custom authorization server; leave empty for the org server (the management scopes need it)")
    token_url: str | None = setting(
        None, label="Token URL",
        description="an explicit token endpoint (the assertion's `aud`); set it or `authorization_server_id`")
    assertion_lifetime: int = setting(
        300, label="Assertion lifetime (s)", form=False, schema={"minimum": 1, "maximum": MAX_ASSERTION_LIFETIME},
        description=f"seconds a client assertion is valid (at most {MAX_ASSERTION_LIFETIME})")
    dpop: str = setting(
        "off", label="DPoP", schema={"enum": [*DPOP_MODES, None]},
        description="`off`, `on`, or `auto` (on when Okta asks for it)")
    connect_timeout: float = setting(
        10.0, label="Connect timeout (s)", schema={"minimum": 1}, description="seconds to open a connection")
    read_timeout: float = setting(
        60.0, label="Read timeout (s)", extra="timeout", aliases=("read_timeout",), schema={"minimum": 1},
        description="seconds to wait for each response")
    ca_bundle: str | None = setting(
        None, label="CA bundle",
        description="CA file that signs the org's (or the proxy's) certificate; wins over `REQUESTS_CA_BUNDLE`")
    proxy: str | None = setting(
        None, label="Proxy",
        description="an https proxy URL, e.g. `http://proxy.internal:3128` (otherwise `HTTPS_PROXY`/`NO_PROXY`); "
                    "refused for a plain `http://` (loopback) org")
    rate_limit_fraction: float = setting(
        1.0, label="Rate limit share", schema={"exclusiveMinimum": 0, "maximum": 1},
        description="a further share (0-1] of what Okta lets this app use, kept for other clients of the same app "
                    "(1: all of it). Okta already caps each OAuth 2.0 app at its own share of every bucket (50% by "
                    "default, https://developer.okta.com/docs/reference/rl2-token-oauth) and X-Rate-Limit-Limit "
                    "reports the ceiling that applies to the request: 0.5 on top would halve it a second time")
    max_concurrency: int = setting(
        8, label="Max concurrency", schema={"minimum": 1},
        description="requests in flight at once for listings and lookups; a push adapts its own count from this up "
                    "(rate limit x observed latency, well under Okta's concurrent-request limit)")
    page_size: int = setting(
        200, label="Page size", schema={"minimum": 1, "maximum": 200}, description="users per page, at most 200")
    token_refresh_margin: float = setting(
        300.0, label="Token refresh margin (s)", form=False,
        description="seconds before expiry a cached token is replaced")
    max_attempts: int = setting(
        6, label="Max attempts", form=False, schema={"minimum": 1},
        description="attempts per request for passing faults (429, 5xx, connection); a 429 of Okta's "
                    "concurrent-request limit is not counted (the request never ran)")
    max_retry_time: float = setting(
        300.0, label="Max retry time (s)", form=False, description="seconds one request may spend retrying")
    # client_secret_basic: a custom authorization server's own scopes with the app's client secret (no key).
    client_auth: str = setting(
        PRIVATE_KEY_JWT, label="Client authentication", schema={"enum": [*CLIENT_AUTH_METHODS, None]},
        description="how the app authenticates to the token endpoint: `private_key_jwt` (a signed client assertion; "
                    "the org authorization server and its `okta.*` scopes) or `client_secret_basic` (the client "
                    "secret in the password; only a custom authorization server's own scopes)")
    client_secret: str | None = setting(
        None, label="Client secret", source="password", sensitive=True, connection_only=True,
        description="the app's client secret, read from the password when `client_auth` is `client_secret_basic` "
                    "(then no key is set)")
    # Bounds on what a server may make a task do (see docs/reliability.md, "Hostile inputs tried").
    request_deadline: float = setting(
        120.0, label="Request deadline (s)", form=False,
        description="seconds one request may take from connect to its last body byte (a server trickling its "
                    "headers or body never trips the read timeout)")
    max_response_bytes: int = setting(
        10 * 1024 * 1024, label="Max response bytes", form=False, schema={"minimum": 64 * 1024},
        default_shown="`10485760` (10 MiB)",
        description="the largest response body read, decompressed (at least 65536; 10 MiB holds 200 users at ~50 KB "
                    "each)")
    max_pages: int = setting(
        50_000, label="Max pages", form=False, schema={"minimum": 1},
        description="pages one listing may follow (50,000 is 10 million users at 200 per page)")
    max_rate_limit_wait: float = setting(
        120.0, label="Max rate-limit wait (s)", form=False,
        description="the longest pacing or 429 wait for a rate-limit window; a longer one raises RateLimitWaitError "
                    "instead of parking the task")

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
        """Build from loosely typed values (connection extras are often strings), each converted to its declared
        type; unknown keys are refused."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigurationError(unknown[0], f"unknown setting; known settings: {', '.join(sorted(known))}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            if value is None or value == "":
                continue
            converted[name] = coerce(name, declared_types()[name], value)
        return cls(**converted)


@cache
def declared_types() -> dict[str, Any]:
    """Each `OktaConfig` field's declared type, resolved (the module uses postponed annotations)."""
    return typing.get_type_hints(OktaConfig)


def coerce(name: str, declared: Any, value: Any) -> Any:
    """`value` as the declared type: `int`, `float`, `str` (each optionally `| None`) or `tuple[str, ...]`.
    Errors name the setting and never echo the value."""
    kinds = [k for k in typing.get_args(declared) if k is not type(None)] if _is_union(declared) else [declared]
    kind = kinds[0] if len(kinds) == 1 else None
    if kind is bool or isinstance(value, bool):
        raise ConfigurationError(name, "must be a number or text, not true/false")
    if kind is int:
        try:
            number = float(value) if isinstance(value, float) else int(str(value).strip())
        except ValueError:
            raise ConfigurationError(name, "is not a whole number") from None
        if isinstance(number, float) and not number.is_integer():
            raise ConfigurationError(name, "is not a whole number")
        return int(number)
    if kind is float:
        if not isinstance(value, (int, float, str)):
            raise ConfigurationError(name, "is not a number")
        try:
            return float(value)
        except ValueError:
            raise ConfigurationError(name, "is not a number") from None
    if kind is str:
        if isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, str):
            raise ConfigurationError(name, "must be text")
        return value
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            return value  # split and de-duplicated by OktaConfig itself
        raise ConfigurationError(name, "must be text (space- or comma-separated) or a list of strings")
    raise TypeError(f"OktaConfig.{name}: no conversion declared for {declared!r}")  # a new field's type: add it here


def _is_union(declared: Any) -> bool:
    return typing.get_origin(declared) in (typing.Union, types.UnionType)


def settings_table() -> str:
    """The README's table of the `okta` connection's fields, from the declarations on `OktaConfig`."""
    lines = ["| connection field | setting | default | meaning |", "|---|---|---|---|"]
    for config_field in fields(OktaConfig):
        described = setting_of(config_field)
        where = described.source
        if described.source == "extra":
            where = f"extra `{described.extra_name(config_field.name)}`"
            if described.aliases:
                where += " (alias " + ", ".join(f"`{a}`" for a in described.aliases) + ")"
        default = described.default_shown or _default_text(config_field.default)
        notes = []
        if described.connection_only:
            notes.append("from the connection only")
        if not described.form:
            notes.append("set in Extra")
        meaning = described.description + (f" ({'; '.join(notes)})" if notes else "")
        lines.append(f"| {where} | `{config_field.name}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def _default_text(default: Any) -> str:
    if default is MISSING:
        return "required"
    if default is None:
        return ""
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"
