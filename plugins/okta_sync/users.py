"""The Users API: list (following the `after` cursor through Link headers), read one, update a profile.

Each call asks only for the scope it needs (least privilege): reads `okta.users.read`, updates
`okta.users.manage`, both limited to what the configured scopes allow.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from okta_sync.config import MANAGE_SCOPE, READ_SCOPE
from okta_sync.errors import OktaSyncError
from okta_sync.transport import Transport
from okta_sync.user_pages import decode_user_page

USERS_PATH = "/api/v1/users"

# Rate-limit buckets, named after Okta's own: the list, a single-user read, and user updates are counted apart.
BUCKET_USERS_LIST = "users_list"
BUCKET_USER_READ = "user_read"
BUCKET_USER_UPDATE = "user_update"


def scopes_for(needed: tuple[str, ...], ceiling: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes to request for an operation: what it needs, within the connection's scopes (the ceiling).

    `okta.users.manage` also reads, so a ceiling holding only manage still serves reads. If the ceiling lacks what
    is needed, the needed scopes are requested anyway and Okta's invalid_scope error (with its hint) explains.
    """
    granted = tuple(s for s in needed if s in ceiling)
    if granted == needed:
        return needed
    if needed == (READ_SCOPE,) and MANAGE_SCOPE in ceiling:
        return (MANAGE_SCOPE,)
    return needed


class UsersClient:
    """`/api/v1/users` for one org, on top of a shared `Transport`."""

    def __init__(self, transport: Transport, *, page_size: int = 200):
        self.transport = transport
        self.page_size = page_size
        ceiling = transport.config.scopes
        self.read_scopes = scopes_for((READ_SCOPE,), ceiling)
        self.manage_scopes = scopes_for((MANAGE_SCOPE,), ceiling)

    def iter_user_pages(
        self,
        *,
        search: str | None = None,
        filter: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        fields: str | None = None,
        json_text: bool = False,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Each page of users (a list of user dicts), following `rel="next"` until Okta sends none.

        `json_text=True` yields `UserPage`s that also keep each user's JSON text (the export writes it as is);
        plain `json.loads` is faster when only the dicts are wanted (its key memo spans the whole page).
        `sort_by`/`sort_order` (`asc`, `desc`) order a `search` (Okta breaks ties by id).
        """
        params = _list_params(search=search, filter=filter, q=q, limit=limit or self.page_size, fields=fields,
                              sortBy=sort_by, sortOrder=sort_order)
        for page in self.transport.iter_pages(
            USERS_PATH, bucket=BUCKET_USERS_LIST, scopes=self.read_scopes, params=params,
            decode=decode_user_page if json_text else json.loads,
        ):
            if not isinstance(page.data, list):
                raise OktaSyncError(f"GET {USERS_PATH}: expected a JSON array of users, got {type(page.data).__name__}")
            self.transport.metrics.incr("users.listed", len(page.data))
            yield page.data
            del page  # not held through the next request: one page in memory at a time

    def iter_users(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every user across all pages, one page held in memory at a time. Same arguments as `iter_user_pages`."""
        # chain hands out each user in C: no generator frame resumed per user, and it drops a page once exhausted.
        return itertools.chain.from_iterable(self.iter_user_pages(**kwargs))

    def get_user(self, id_or_login: str) -> dict[str, Any]:
        """One user by id or login (logins hold `@` and may hold `/`: the path segment is fully encoded)."""
        response = self.transport.request(
            "GET", user_path(id_or_login), bucket=BUCKET_USER_READ, scopes=self.read_scopes
        )
        return response.data

    def update_profile(self, user_id: str, profile: Mapping[str, Any]) -> dict[str, Any]:
        """Partial update: `POST /api/v1/users/{id}` with `{"profile": {...}}`; attributes not given are kept."""
        response = self.transport.request(
            "POST", user_path(user_id), bucket=BUCKET_USER_UPDATE, scopes=self.manage_scopes,
            json_body={"profile": dict(profile)},
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


def user_path(id_or_login: str) -> str:
    if not id_or_login:
        raise ValueError("a user id or login is required")
    return f"{USERS_PATH}/{quote(id_or_login, safe='')}"


def _list_params(**params: Any) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}
