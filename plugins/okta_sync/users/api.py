"""The Users API: list (following the `after` cursor through Link headers), read one, update a profile.

Each call asks only for the scope it needs (least privilege): reads `okta.users.read`, updates
`okta.users.manage`, both limited to what the configured scopes allow. An operation whose scope the connection does
not include fails before any request with `ScopeNotConfiguredError` (a `MissingScopeError`), naming the operation,
the scope and where to grant it.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from okta_sync.config import MANAGE_SCOPE, READ_SCOPE
from okta_sync.errors import NotFoundError, OktaApiError, OktaSyncError, ResponseLimitError, ScopeNotConfiguredError
from okta_sync.http.authorized import AuthorizedSession
from okta_sync.users.pages import UserPage, decode_page, decode_user_page

USERS_PATH = "/api/v1/users"

# Rate-limit buckets, named after Okta's own: the list, a single-user read, and user updates are counted apart.
BUCKET_USERS_LIST = "users_list"
BUCKET_USER_READ = "user_read"
BUCKET_USER_UPDATE = "user_update"

# Characters Okta cannot take in the user path segment, even percent-encoded: `/` (logins holding one "can only be
# fetched by id", OpenAPI getUser), `;` (a path parameter: Okta drops it and looks up what precedes it) and `\`
# (refused with an HTML 400), the last two per okta-sdk-java #1526.
NOT_IN_PATH = frozenset("/;\\")
# RFC 9110 entity-tag, bounded: anything else from a server is not sent back in If-Match.
_ETAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]{0,200}"')

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserVersion:
    """A user as read, and the `ETag` naming that version (None when the org sends none: updates are then
    unconditional, as they were before Okta offered If-Match)."""

    user: dict[str, Any]
    etag: str | None


def scopes_for(needed: tuple[str, ...], ceiling: tuple[str, ...], operation: str = "this operation") -> tuple[str, ...]:
    """The scopes to request for an operation: what it needs, within the connection's scopes (the ceiling).

    `okta.users.manage` also reads, so a ceiling holding only manage still serves reads. A ceiling that lacks what
    is needed raises `ScopeNotConfiguredError` (no request is made: Okta's invalid_scope would not say which is
    missing).
    """
    granted = tuple(s for s in needed if s in ceiling)
    if granted == needed:
        return needed
    if needed == (READ_SCOPE,) and MANAGE_SCOPE in ceiling:
        return (MANAGE_SCOPE,)
    missing = next(s for s in needed if s not in ceiling)
    raise ScopeNotConfiguredError(operation=operation, scope=missing, configured=ceiling)


class UsersClient:
    """`/api/v1/users` for one org, on top of a shared `AuthorizedSession`."""

    def __init__(self, transport: AuthorizedSession, *, page_size: int = 200):
        self.transport = transport
        self.page_size = page_size

    # Decided per call, before any request: a read-only connection still lists users, and a write names itself.
    @property
    def read_scopes(self) -> tuple[str, ...]:
        return scopes_for((READ_SCOPE,), self.transport.config.scopes, "reading users (GET /api/v1/users)")

    @property
    def manage_scopes(self) -> tuple[str, ...]:
        return scopes_for((MANAGE_SCOPE,), self.transport.config.scopes,
                          "update_profile / replace_profile (POST or PUT /api/v1/users/{id})")

    def list_users(
        self,
        *,
        search: str | None = None,
        filter: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        fields: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> "UserListing":
        """`GET /api/v1/users` as a value: iterate it for users, `.pages()` for pages. Nothing is requested yet.

        Args:
            search: Okta's `search` expression (e.g. `status eq "ACTIVE"`); DEPROVISIONED users included.
            filter: Okta's `filter` expression (the default listing omits DEPROVISIONED users).
            q: a prefix match on first name, last name or email.
            limit: users per page (default: the connection's `page_size`).
            fields: Okta's `fields` projection.
            sort_by: order a `search` by this attribute (e.g. `created`); Okta breaks ties by id.
            sort_order: `asc` or `desc`, with `sort_by`.
        """
        limit = limit or self.page_size
        params = _list_params(search=search, filter=filter, q=q, limit=limit, fields=fields, sortBy=sort_by,
                              sortOrder=sort_order)
        return UserListing(self, params, limit)

    def _pages(self, params: dict[str, Any], limit: int, decode: Callable[[bytes], Any]) -> Iterator[list[dict[str, Any]]]:
        """Each page, following `rel="next"` until Okta sends none; a page larger than `limit` is refused."""
        for page in self.transport.iter_pages(
            USERS_PATH, bucket=BUCKET_USERS_LIST, scopes=self.read_scopes, params=params, decode=decode,
        ):
            if not isinstance(page.data, list):
                raise OktaSyncError(f"GET {USERS_PATH}: expected a JSON array of users, got {type(page.data).__name__}")
            if len(page.data) > limit:
                raise ResponseLimitError(
                    f"GET {USERS_PATH}: a page holds {len(page.data)} users, more than the limit={limit} asked for; "
                    f"refused (a server must not send more than `limit`)", setting="limit",
                )
            self.transport.metrics.incr("users.listed", len(page.data))
            yield page.data
            del page  # not held through the next request: one page in memory at a time

    def get_user(self, id_or_login: str) -> dict[str, Any]:
        """One user, as `GET /api/v1/users/{id or login}` resolves it.

        Okta also resolves an unambiguous login shortname there (`jdoe` finds `jdoe@example.com`): to get exactly
        the user with a given id or login, use `find_user`. A key holding `/`, `;` or `\\` cannot be sent in the
        path (ValueError, no request): Okta fetches such logins only by id.
        """
        return self.get_user_with_etag(id_or_login).user

    def get_user_with_etag(self, id_or_login: str) -> UserVersion:
        """`get_user` plus the `ETag` of the version read, for a conditional `update_profile(if_match=...)`."""
        response = self.transport.request(
            "GET", user_path(id_or_login), bucket=BUCKET_USER_READ, scopes=self.read_scopes
        )
        return UserVersion(response.data, _entity_tag(response.headers.get("ETag")))

    def find_user(self, key_kind: str, key: str) -> dict[str, Any] | None:
        """The user whose id (`key_kind="id"`) or login (`"login"`, case-insensitive) is exactly `key`, or None.

        Never the user Okta resolves otherwise (a login shortname, a login cut at `;`): what the path answers is
        checked against the key. A login Okta cannot take in the path (`/`, `;`, `\\`) is looked up with
        `search=profile.login eq "..."` and then re-read by id (search is eventually consistent).
        """
        if key_kind not in ("id", "login"):
            raise ValueError(f"key_kind must be 'id' or 'login', not {key_kind!r}")
        if names_no_user(key_kind, key):
            return None
        if NOT_IN_PATH.intersection(key):
            return self._find_login_by_search(key)
        try:
            user = self.get_user(key)
        except NotFoundError:
            return None
        return user if is_user(user, key_kind, key) else None

    def _find_login_by_search(self, login: str) -> dict[str, Any] | None:
        expression = f'profile.login eq "{search_literal(login)}"'
        pages = self.list_users(search=expression, limit=2).pages()
        try:
            page = next(pages, [])  # logins are unique: one page answers
        finally:
            pages.close()
        found = [user for user in page if is_user(user, "login", login)]
        if len(found) != 1 or not isinstance(found[0].get("id"), str) or NOT_IN_PATH.intersection(found[0]["id"]):
            return None
        try:
            user = self.get_user(found[0]["id"])
        except NotFoundError:
            return None
        return user if is_user(user, "login", login) else None

    def update_profile(self, user_id: str, profile: Mapping[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        """Partial update: `POST /api/v1/users/{id}` with `{"profile": {...}}`; attributes not given are kept.

        With `if_match` (an ETag from `get_user_with_etag`) the update is conditional: if the user changed since
        that read, Okta answers 412 and `PreconditionFailedError` is raised; nothing was written.
        """
        headers = {"If-Match": if_match} if if_match is not None else None
        response = self.transport.request(
            "POST", user_path(user_id), bucket=BUCKET_USER_UPDATE, scopes=self.manage_scopes,
            json_body={"profile": dict(profile)}, headers=headers,
        )
        return response.data

    def replace_profile(self, user_id: str, profile: Mapping[str, Any]) -> dict[str, Any]:
        """DESTRUCTIVE: `PUT /api/v1/users/{id}` replaces the whole profile; attributes not given are deleted.

        Use `update_profile` unless you hold the complete profile and mean to drop everything else.
        """
        response = self.transport.request(
            "PUT", user_path(user_id), bucket=BUCKET_USER_UPDATE, scopes=self.manage_scopes,
            json_body={"profile": dict(profile)},
        )
        return response.data


class UserListing:
    """A user listing as a value (stripe's `auto_paging_iter`): iterating it yields every user, `pages()` yields
    the pages; one page in memory at a time, nothing requested until iterated, and each iteration lists anew."""

    def __init__(self, users: UsersClient, params: dict[str, Any], limit: int):
        self._users, self._params, self._limit = users, params, limit

    def __repr__(self) -> str:
        return f"UserListing({self._params})"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # chain hands out each user in C: no generator frame resumed per user, and it drops a page once exhausted.
        return itertools.chain.from_iterable(self.pages())

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """Each page (a list of user dicts), decoded as `json.loads` would, a large page in runs
        (`okta_sync.users.pages.decode_page`: no page-sized `str`, so concurrent paging keeps memory flat)."""
        return self._users._pages(self._params, self._limit, decode_page)

    def text_pages(self) -> Iterator[UserPage]:
        """Each page as a `UserPage` that also keeps each user's JSON text as the server sent it: for the export,
        which writes it without re-encoding (`okta_sync.sync.export`)."""
        return self._users._pages(self._params, self._limit, decode_user_page)


def user_path(id_or_login: str) -> str:
    if not id_or_login:
        raise ValueError("a user id or login is required")
    if id_or_login in (".", ".."):  # dot segments: the URL would be normalised to another endpoint
        raise ValueError("'.' and '..' are neither a user id nor a login")
    if NOT_IN_PATH.intersection(id_or_login):
        raise ValueError(
            "a login holding '/', ';' or '\\' cannot be fetched by path (Okta answers for another key or not at "
            "all); use find_user('login', ...), which searches for it"
        )
    return f"{USERS_PATH}/{quote(id_or_login, safe='')}"


def names_no_user(key_kind: str, key: str) -> bool:
    """Whether a key can name no Okta user at all, so `find_user` answers None without a request: empty, a dot
    segment, a control character, or an id holding `/`, `;` or `\\` (Okta ids are alphanumeric)."""
    if key in ("", ".", "..") or any(ord(c) < 0x20 or c == "\x7f" for c in key):
        return True
    return key_kind == "id" and bool(NOT_IN_PATH.intersection(key))


def is_user(user: Any, key_kind: str, key: str) -> bool:
    """Whether `user` is the one a feed row keyed by `key_kind` names: the same id, or the same login ignoring
    case (Okta logins are unique regardless of case). A user Okta resolved another way is not."""
    if not isinstance(user, Mapping):
        return False
    if key_kind == "id":
        return user.get("id") == key
    profile = user.get("profile")
    login = profile.get("login") if isinstance(profile, Mapping) else None
    return isinstance(login, str) and login.lower() == key.lower()


def search_literal(value: str) -> str:
    """`value` inside a double-quoted `search`/`filter` string: backslash and double quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _entity_tag(value: str | None) -> str | None:
    if value is None:
        return None
    if _ETAG.fullmatch(value.strip()):
        return value.strip()
    log.warning("The org sent an ETag that is not an RFC 9110 entity tag; updating without If-Match")
    return None


def _list_params(**params: Any) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}
