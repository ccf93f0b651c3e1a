"""`OktaClient`: config in, a ready client out. The one object a plain-Python caller (or the hook) needs.

    client = OktaClient(OktaConfig(org_url=..., client_id=..., private_key_path=..., key_id=...))
    for user in client.list_users(search='status eq "ACTIVE"'):
        ...
    for page in client.list_users().pages():  # one page in memory at a time
        ...
    client.update_profile(user_id, {"firstName": "Ada"})
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from okta_sync.auth.assertion import PrivateKeyJWT
from okta_sync.auth.client_secret import ClientSecretBasic
from okta_sync.clock import SYSTEM_CLOCK, Clock
from okta_sync.config import CLIENT_SECRET_BASIC, MANAGE_SCOPE, READ_SCOPE, OktaConfig
from okta_sync.errors import ScopeNotConfiguredError
from okta_sync.auth.keys import SigningKey, load_signing_key
from okta_sync.metrics import Instruments, Metrics
from okta_sync.http.ratelimit import RateLimiter
from okta_sync.auth.tokens import (
    BUCKET_TOKEN, AccessToken, TokenCache, TokenEndpoint, TokenProvider, token_retry_policy,
)
from okta_sync.http.authorized import AuthorizedSession
from okta_sync.http.transport import RetryPolicy, Transport, build_session
from okta_sync.groups.api import GROUP_BUCKETS, GROUPS_MANAGE_SCOPE, GROUPS_READ_SCOPE, GroupsClient, Listing
from okta_sync.groups.members import MemberPage, read_members
from okta_sync.users.api import BUCKET_USER_READ, UserListing, UsersClient, UserVersion
from okta_sync.users.partitions import DEFAULT_SPLIT_AT, PartitionedUserListing, Window

log = logging.getLogger(__name__)


def signing_key_for(config: OktaConfig) -> SigningKey | None:
    """The service app's private key as the config names it; None with `client_secret_basic` (no key)."""
    if config.client_auth == CLIENT_SECRET_BASIC:
        return None
    return load_signing_key(private_key=config.private_key, private_key_path=config.private_key_path,
                            passphrase=config.private_key_passphrase, key_id=config.key_id, algorithm=config.algorithm)


# A read is also served by the manage scope of the same family when only that one is configured.
_SERVED_BY = {READ_SCOPE: MANAGE_SCOPE, GROUPS_READ_SCOPE: GROUPS_MANAGE_SCOPE}


def scopes_within(scopes: Iterable[str], ceiling: tuple[str, ...], operation: str) -> tuple[str, ...]:
    """`scopes` as they can be requested under the connection's `scopes` (the ceiling): each one configured, or a
    read served by its manage scope; anything else raises `ScopeNotConfiguredError` before any request."""
    within = []
    for scope in scopes:
        if scope not in ceiling and _SERVED_BY.get(scope) in ceiling:
            scope = _SERVED_BY[scope]
        if scope not in ceiling:
            raise ScopeNotConfiguredError(operation=operation, scope=scope, configured=ceiling)
        within.append(scope)
    return tuple(dict.fromkeys(within))


class OktaClient:
    """Credentials, token cache, transport and the Users API for one org and one service app.

    `token_provider` supplies tokens the cache does not hold (e.g. the DAG run's shared token; see
    `okta_sync.auth.tokens.TokenProvider`); a forced refresh after a 401 always mints. `token_retry` replaces the
    token endpoint's retry policy (default `token_retry_policy`: up to 20 attempts within `max_retry_time`, to ride
    out an authorization-server outage); API calls follow `max_attempts`. `clock` is the one source of time and
    sleep for the transport, rate limiter, circuit breaker and token cache (tests pass a fake).
    """

    def __init__(
        self,
        config: OktaConfig,
        *,
        on_new_token: Callable[[AccessToken], None] | None = None,
        metrics: Metrics | None = None,
        signing_key: SigningKey | None = None,
        token_retry: RetryPolicy | None = None,
        token_provider: TokenProvider | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.config = config
        self.signing_key = self.client_auth = None
        if config.client_auth == CLIENT_SECRET_BASIC:  # a custom authorization server's own scopes, no key
            self.client_auth = ClientSecretBasic(config.client_id, config.client_secret)
        else:
            self.signing_key = signing_key or signing_key_for(config)
            self.client_auth = PrivateKeyJWT(config.client_id, self.signing_key, lifetime=config.assertion_lifetime,
                                             clock=clock.time)
        if self.signing_key is not None and not self.signing_key.key_id:
            log.warning(
                "No key_id (kid) is configured and the key carries none: Okta accepts that only while the app has a "
                "single public key, and refuses it once a second key is added (e.g. during rotation). Set key_id."
            )
        self.metrics = Instruments.of(metrics)  # the one instrumentation channel; `metrics` is its sink
        self.clock = clock
        self.rate_limiter = RateLimiter(fraction=config.rate_limit_fraction, max_wait=config.max_rate_limit_wait,
                                        clock=clock, metrics=self.metrics)
        # One HTTP path: the token endpoint and the API share the session, pacing, retry engine and bounds.
        self.transport = Transport(config, session=build_session(config), rate_limiter=self.rate_limiter,
                                   metrics=self.metrics, clock=clock)
        self.token_endpoint = TokenEndpoint(
            self.transport, config.resolved_token_url, self.client_auth, dpop=config.dpop,
            retry=token_retry or token_retry_policy(config.max_retry_time),
        )
        self.tokens = TokenCache(
            self.token_endpoint.fetch, refresh_margin=config.token_refresh_margin, on_new_token=on_new_token,
            metrics=self.metrics, provider=token_provider, clock=clock,
        )
        session = AuthorizedSession(self.transport, self.tokens)
        self.users = UsersClient(session, page_size=config.page_size)
        self.groups = GroupsClient(session, page_size=config.page_size)

    def __repr__(self) -> str:
        return f"OktaClient(org_url={self.config.org_url!r}, client_id={self.config.client_id!r}, key={self.signing_key})"

    def __enter__(self) -> "OktaClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    # -- tokens -------------------------------------------------------------------------------------------------
    def get_token(self, scopes: Iterable[str] | None = None, *, force_refresh: bool = False) -> AccessToken:
        """A cached access token for these scopes (default: all configured scopes)."""
        return self.tokens.get(tuple(scopes) if scopes is not None else self.config.scopes, force_refresh=force_refresh)

    @property
    def token_requests(self) -> int:
        """HTTP requests this client made to the token endpoint (DPoP nonce round trips included)."""
        return int(self.metrics.count("token.requests"))

    # -- users --------------------------------------------------------------------------------------------------
    def list_users(self, *, search: str | None = None, filter: str | None = None, q: str | None = None,
                   limit: int | None = None, fields: str | None = None, sort_by: str | None = None,
                   sort_order: str | None = None) -> UserListing:
        """The users matching the query as a value: iterate it for users, `.pages()` for pages (one page in
        memory at a time; nothing is requested until iterated). See `UsersClient.list_users` for the arguments."""
        return self.users.list_users(search=search, filter=filter, q=q, limit=limit, fields=fields,
                                     sort_by=sort_by, sort_order=sort_order)

    def iter_users(self, *, search: str | None = None, filter: str | None = None,
                   limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Shorthand for iterating `list_users(search=..., filter=..., limit=...)`."""
        return iter(self.list_users(search=search, filter=filter, limit=limit))

    def iter_user_pages(self, *, search: str | None = None, filter: str | None = None,
                        limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Shorthand for `list_users(search=..., filter=..., limit=...).pages()`."""
        return self.list_users(search=search, filter=filter, limit=limit).pages()

    def list_users_partitioned(
        self, *, search: str | None = None, partitions: int | None = None, max_workers: int | None = None,
        windows: list[Window] | None = None, include_deprovisioned: bool = True,
        split_at: int | None = DEFAULT_SPLIT_AT, limit: int | None = None, created_hint: dict[str, Any] | None = None,
    ) -> PartitionedUserListing:
        """Every user matching `search` (DEPROVISIONED included) once, from disjoint `created` windows paged
        concurrently, as a value; see `okta_sync.users.partitions.PartitionedUserListing` for the arguments."""
        return PartitionedUserListing(self, search=search, partitions=partitions, max_workers=max_workers,
                                      windows=windows, include_deprovisioned=include_deprovisioned,
                                      split_at=split_at, limit=limit, created_hint=created_hint)

    def iter_user_pages_partitioned(
        self, *, search: str | None = None, partitions: int | None = None, max_workers: int | None = None,
        windows: list[Window] | None = None, include_deprovisioned: bool = True,
        split_at: int | None = DEFAULT_SPLIT_AT, limit: int | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        return self.list_users_partitioned(search=search, partitions=partitions, max_workers=max_workers,
                                           windows=windows, include_deprovisioned=include_deprovisioned,
                                           split_at=split_at, limit=limit).pages()

    def get_user(self, id_or_login: str) -> dict[str, Any]:
        return self.users.get_user(id_or_login)

    def get_user_with_etag(self, id_or_login: str) -> UserVersion:
        return self.users.get_user_with_etag(id_or_login)

    def find_user(self, key_kind: str, key: str) -> dict[str, Any] | None:
        """The user whose id or login is exactly `key` (never one Okta resolved by shortname), or None."""
        return self.users.find_user(key_kind, key)

    def update_profile(self, user_id: str, profile: Mapping[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        return self.users.update_profile(user_id, profile, if_match=if_match)

    def replace_profile(self, user_id: str, profile: Mapping[str, Any]) -> dict[str, Any]:
        return self.users.replace_profile(user_id, profile)

    # -- groups -------------------------------------------------------------------------------------------------
    def list_groups(self, *, search: str | None = None, filter: str | None = None, q: str | None = None,
                    expand: str | None = None, limit: int | None = None, sort_by: str | None = None,
                    sort_order: str | None = None) -> Listing:
        """The groups matching the query as a value: iterate it for groups, `.pages()` for pages (needs
        `okta.groups.read`). See `GroupsClient.list_groups` for the arguments."""
        return self.groups.list_groups(search=search, filter=filter, q=q, expand=expand, limit=limit,
                                       sort_by=sort_by, sort_order=sort_order)

    def list_group_members(self, group_id: str, *, limit: int | None = None) -> Listing:
        """The group's members (user objects), paged (needs `okta.groups.read`)."""
        return self.groups.list_group_members(group_id, limit=limit)

    def read_group_members(self, group_ids: Iterable[str], *, max_workers: int | None = None,
                           limit: int | None = None) -> Iterator[MemberPage]:
        """Every page of these groups' members, `max_workers` groups at a time (default `max_concurrency`),
        within the `group_members` rate-limit bucket; see `okta_sync.groups.members.read_members`."""
        return read_members(self.groups, group_ids, workers=max_workers or self.config.max_concurrency, limit=limit)

    def list_user_groups(self, user_id: str) -> Listing:
        """The groups a user is a member of (`GET /api/v1/users/{id}/groups`, needs `okta.users.read`)."""
        return self.groups.list_user_groups(user_id)

    def add_group_member(self, group_id: str, user_id: str) -> None:
        """Add a user to an `OKTA_GROUP` (idempotent; needs `okta.groups.manage`)."""
        self.groups.add_group_member(group_id, user_id)

    def remove_group_member(self, group_id: str, user_id: str) -> None:
        """Remove a user from an `OKTA_GROUP` (idempotent; needs `okta.groups.manage`)."""
        self.groups.remove_group_member(group_id, user_id)

    def rate_limit_headroom(self) -> dict[str, Any]:
        """The last seen `X-Rate-Limit-*` state per bucket, for progress logs."""
        buckets = {}
        for bucket in (BUCKET_TOKEN, "users_list", BUCKET_USER_READ, "user_update", *GROUP_BUCKETS):
            snap = self.rate_limiter.snapshot(bucket)
            if snap is not None:
                buckets[bucket] = {"limit": snap.limit, "remaining": snap.remaining, "reset": snap.reset}
        return buckets
