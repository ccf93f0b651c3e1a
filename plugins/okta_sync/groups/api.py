"""The Groups API: list groups, a group's members, a user's groups; add and remove members.

Each call asks only for the scope it needs (least privilege), within the connection's scopes: reads
`okta.groups.read` (served by `okta.groups.manage` too, as Okta's own scope checks do), membership writes
`okta.groups.manage`. `list_user_groups` is a Users API resource (`GET /api/v1/users/{id}/groups`, OpenAPI
`listUserGroups`), which Okta guards with `okta.users.read`. An operation whose scope the connection does not include
fails before any request with `ScopeNotConfiguredError`, naming the operation and the scope.

Membership writes are idempotent (`PUT` adds, `DELETE` removes; Okta answers 204 either way), so a write whose
response was lost is sent again rather than raising `OutcomeUnknownError`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

from okta_sync.config import READ_SCOPE
from okta_sync.errors import OktaSyncError, ResponseLimitError, ScopeNotConfiguredError
from okta_sync.http.authorized import AuthorizedSession
from okta_sync.users.api import scopes_for, user_path
from okta_sync.users.pages import decode_page

GROUPS_PATH = "/api/v1/groups"
GROUPS_READ_SCOPE = "okta.groups.read"
GROUPS_MANAGE_SCOPE = "okta.groups.manage"

# Rate-limit buckets per endpoint family, named like the users ones: the group listing, a group's member listing,
# membership writes, and a user's groups are paced apart.
BUCKET_GROUPS_LIST = "groups_list"
BUCKET_GROUP_MEMBERS = "group_members"
BUCKET_GROUP_MEMBER_UPDATE = "group_member_update"
BUCKET_USER_GROUPS = "user_groups"
GROUP_BUCKETS = (BUCKET_GROUPS_LIST, BUCKET_GROUP_MEMBERS, BUCKET_GROUP_MEMBER_UPDATE, BUCKET_USER_GROUPS)

# Okta ids are alphanumeric (`00g...` for groups, `00u...` for users): anything else names no group or member and
# is refused before a request (a `/` or dot segment would send the token to another endpoint).
_OKTA_ID = re.compile(r"[A-Za-z0-9]{1,64}\Z")
EXPANDS = ("stats", "app")
MAX_GROUPS_LIMIT = 10_000  # OpenAPI listGroups `limit` maximum; Okta recommends 200 or fewer
MAX_MEMBERS_LIMIT = 1_000  # listGroupUsers' default; Okta recommends 200


def group_scopes(needed: str, ceiling: tuple[str, ...], operation: str) -> tuple[str, ...]:
    """The one scope to request for a groups operation, within the connection's scopes (the ceiling): a read is
    also served by `okta.groups.manage` when only that is configured. Raises `ScopeNotConfiguredError`."""
    if needed in ceiling:
        return (needed,)
    if needed == GROUPS_READ_SCOPE and GROUPS_MANAGE_SCOPE in ceiling:
        return (GROUPS_MANAGE_SCOPE,)
    raise ScopeNotConfiguredError(operation=operation, scope=needed, configured=ceiling)


def okta_id(value: str, what: str) -> str:
    """`value` when it can be an Okta id, else ValueError naming `what` (the value is not repeated)."""
    if not isinstance(value, str) or not _OKTA_ID.match(value):
        raise ValueError(f"{what} must be an Okta id (letters and digits only, at most 64)")
    return value


def group_path(group_id: str) -> str:
    return f"{GROUPS_PATH}/{okta_id(group_id, 'group_id')}"


class GroupsClient:
    """`/api/v1/groups` for one org, on top of the shared `AuthorizedSession`."""

    def __init__(self, transport: AuthorizedSession, *, page_size: int = 200):
        self.transport = transport
        self.page_size = page_size

    @property
    def read_scopes(self) -> tuple[str, ...]:
        return group_scopes(GROUPS_READ_SCOPE, self.transport.config.scopes,
                            "reading groups and members (GET /api/v1/groups, /api/v1/groups/{id}/users)")

    @property
    def manage_scopes(self) -> tuple[str, ...]:
        return group_scopes(GROUPS_MANAGE_SCOPE, self.transport.config.scopes,
                            "add_group_member / remove_group_member (PUT or DELETE /api/v1/groups/{id}/users/{userId})")

    @property
    def user_groups_scopes(self) -> tuple[str, ...]:
        return scopes_for((READ_SCOPE,), self.transport.config.scopes,
                          "list_user_groups (GET /api/v1/users/{id}/groups, guarded by okta.users.read)")

    def list_groups(self, *, search: str | None = None, filter: str | None = None, q: str | None = None,
                    expand: str | None = None, limit: int | None = None, sort_by: str | None = None,
                    sort_order: str | None = None) -> "Listing":
        """`GET /api/v1/groups` as a value: iterate it for groups, `.pages()` for pages. Nothing is requested yet.

        Args:
            search: Okta's `search` expression (e.g. `type eq "OKTA_GROUP"`; eventually consistent).
            filter: Okta's `filter` expression on `id`, `type`, `lastUpdated`, `lastMembershipUpdated`.
            q: a prefix match on the group's name (Okta does not page `q`).
            expand: `stats` (member counts in `_embedded.stats`) or `app`.
            limit: groups per page (default: the connection's `page_size`; at most 10,000).
            sort_by: order a `search` by this property (ties by id); sort_order `asc` or `desc`.
        """
        if expand is not None and expand not in EXPANDS:
            raise ValueError(f"expand must be one of {EXPANDS}")
        limit = _bounded_limit(limit or self.page_size, MAX_GROUPS_LIMIT)
        params = _params(search=search, filter=filter, q=q, expand=expand, limit=limit, sortBy=sort_by,
                         sortOrder=sort_order)
        return Listing(self, GROUPS_PATH, BUCKET_GROUPS_LIST, "read_scopes", params, limit, "groups")

    def list_group_members(self, group_id: str, *, limit: int | None = None) -> "Listing":
        """`GET /api/v1/groups/{id}/users`: the group's members (user objects) as a paged value."""
        limit = _bounded_limit(limit or self.page_size, MAX_MEMBERS_LIMIT)
        return Listing(self, f"{group_path(group_id)}/users", BUCKET_GROUP_MEMBERS, "read_scopes", {"limit": limit},
                       limit, "users")

    def list_user_groups(self, user_id: str) -> "Listing":
        """`GET /api/v1/users/{id}/groups`: the groups the user is a member of (the spec sends no `limit`)."""
        return Listing(self, f"{user_path(user_id)}/groups", BUCKET_USER_GROUPS, "user_groups_scopes", {}, None,
                       "groups")

    def add_group_member(self, group_id: str, user_id: str) -> None:
        """`PUT /api/v1/groups/{id}/users/{userId}`: idempotent (adding a member again changes nothing). Okta
        changes memberships of `OKTA_GROUP` groups only; others are refused (an `OktaApiError`)."""
        self._membership("PUT", group_id, user_id)

    def remove_group_member(self, group_id: str, user_id: str) -> None:
        """`DELETE /api/v1/groups/{id}/users/{userId}`: idempotent (removing a non-member changes nothing)."""
        self._membership("DELETE", group_id, user_id)

    def _membership(self, method: str, group_id: str, user_id: str) -> None:
        path = f"{group_path(group_id)}/users/{okta_id(user_id, 'user_id')}"
        scopes = self.manage_scopes
        self.transport.request(method, path, bucket=BUCKET_GROUP_MEMBER_UPDATE, scopes=scopes, resend=True)
        self.transport.metrics.incr("groups.membership_writes")

    def _pages(self, path: str, bucket: str, scopes: tuple[str, ...], params: dict[str, Any], limit: int | None,
               what: str) -> Iterator[list[dict[str, Any]]]:
        for page in self.transport.iter_pages(path, bucket=bucket, scopes=scopes, params=params, decode=decode_page):
            if not isinstance(page.data, list):
                raise OktaSyncError(f"GET {path}: expected a JSON array of {what}, got {type(page.data).__name__}")
            if limit is not None and len(page.data) > limit:
                raise ResponseLimitError(
                    f"GET {path}: a page holds {len(page.data)} {what}, more than the limit={limit} asked for; "
                    f"refused (a server must not send more than `limit`)", setting="limit",
                )
            self.transport.metrics.incr(f"{what}.listed" if what == "groups" else "group_members.listed",
                                        len(page.data))
            yield page.data
            del page


class Listing:
    """A groups, members or user-groups listing as a value (like `UserListing`): iterating it yields every item,
    `pages()` the pages; one page in memory at a time, nothing requested until iterated, each iteration lists anew.
    The scope is checked when iterated, before the first request."""

    def __init__(self, groups: GroupsClient, path: str, bucket: str, scopes: str, params: dict[str, Any],
                 limit: int | None, what: str):
        self._groups, self._path, self._bucket, self._scopes = groups, path, bucket, scopes
        self._params, self._limit, self._what = params, limit, what

    def __repr__(self) -> str:
        return f"Listing({self._path}, {self._params})"

    @property
    def path(self) -> str:
        return self._path

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.chain.from_iterable(self.pages())

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        scopes = getattr(self._groups, self._scopes)  # raises ScopeNotConfiguredError before any request
        return self._groups._pages(self._path, self._bucket, scopes, self._params, self._limit, self._what)


def _bounded_limit(limit: int, most: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise ValueError(f"limit must be an integer from 1 to {most}")
    return limit


def _params(**params: Any) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}
