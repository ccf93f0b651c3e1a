"""The Groups API (OpenAPI listGroups, getGroup, listGroupUsers, assignUserToGroup, unassignUserFromGroup) and the
Users API's listUserGroups, behind the same token checks as the users endpoints.

Where the spec is silent the dev org picks, and says so (README, "Groups"): members are listed in user-id order, a
member page holds at most 1,000 users (the spec's default), a membership change to a `BUILT_IN` or `APP_GROUP` group
is refused with 403 E0000006 (the spec lists 403 and says only `OKTA_GROUP` memberships can be changed).
"""
from __future__ import annotations

from urllib.parse import quote, unquote

from . import errors
from .groups import OKTA_GROUP, Group
from .groups_query import QueryError, compile_group_query, sort_key
from .responses import Response
from .users_api import READ_SCOPES as USER_READ_SCOPES, Refused, _find, _link, authorize

READ_SCOPES = ("okta.groups.read", "okta.groups.manage")
MANAGE_SCOPES = ("okta.groups.manage",)
MAX_GROUPS_LIMIT = 10_000
Q_DEFAULT_LIMIT = 300  # "The default limit for a query is 300 results" (listGroups `q`)
MEMBERS_DEFAULT_LIMIT = 1_000
MAX_MEMBERS_LIMIT = 1_000


def _url(app, path: str, pairs: list[tuple[str, object]]) -> str:
    query = "&".join(f"{name}={quote(str(value), safe='')}" for name, value in pairs)
    return f"{app.org_url}{path}" + (f"?{query}" if query else "")


def _limit(params: dict, default: int, most: int) -> int:
    try:
        limit = int(params["limit"]) if "limit" in params else default
    except ValueError:
        raise Refused(Response(400, errors.validation_failed("limit", ["limit: The value must be an integer"])))
    return default if limit < 1 else min(limit, most)


def _group(app, raw: str) -> Group:
    key = unquote(raw)
    group = app.groups.by_id.get(key)
    if group is None:
        raise Refused(Response(404, errors.not_found(key, "UserGroup")))
    return group


def list_groups(app, request) -> Response:
    authorize(app, request, READ_SCOPES)
    params = request.params
    q, search, filter_ = params.get("q"), params.get("search"), params.get("filter")
    expand = params.get("expand")
    if expand not in (None, "stats", "app"):
        return Response(400, errors.okta_error(errors.INVALID_SEARCH, ["expand must be stats or app."]))
    limit = _limit(params, Q_DEFAULT_LIMIT if q is not None else MAX_GROUPS_LIMIT, MAX_GROUPS_LIMIT)
    sort_by, sort_order = params.get("sortBy"), (params.get("sortOrder") or "asc").lower()
    mode, expression, predicate = None, None, None
    try:
        if search is not None:
            mode, expression, predicate = "search", search, compile_group_query(search, "search")
        elif filter_ is not None:
            mode, expression, predicate = "filter", filter_, compile_group_query(filter_, "filter")
        if sort_by is not None:
            if mode != "search" or sort_order not in ("asc", "desc"):
                raise QueryError("sortBy needs a search, sortOrder asc or desc")
            key = sort_key(sort_by)
    except QueryError:
        return Response(400, errors.okta_error(errors.INVALID_SEARCH, ["Invalid search syntax."]))
    after = params.get("after")
    store = app.groups
    with store.lock:
        groups = [g for g in store.groups if predicate is None or predicate(g)]
        if q is not None:
            prefix = q.casefold()
            groups = [g for g in groups if str(g.profile.get("name") or "").casefold().startswith(prefix)]
        if sort_by is not None:
            groups.sort(key=key, reverse=sort_order == "desc")
            start = next((n + 1 for n, g in enumerate(groups) if g.id == after), len(groups)) if after else 0
        else:
            start = next((n for n, g in enumerate(groups) if g.id > after), len(groups)) if after else 0
        found = groups[start:start + limit]
        more = start + limit < len(groups) and q is None  # q does not page
        body = b"[" + b",".join(store.to_json(g, stats=expand == "stats") for g in found) + b"]"
    extra = [(mode, expression)] if mode else ([("q", q)] if q is not None else [])
    if sort_by is not None:
        extra += [("sortBy", sort_by), ("sortOrder", sort_order)]
    if expand:
        extra.append(("expand", expand))
    headers = [_link(_url(app, "/api/v1/groups", ([("after", after)] if after else []) + [("limit", limit)] + extra),
                     "self")]
    if found and more:
        headers.append(_link(_url(app, "/api/v1/groups", [("after", found[-1].id), ("limit", limit)] + extra), "next"))
    return Response(200, body, headers)


def get_group(app, request, raw: str) -> Response:
    authorize(app, request, READ_SCOPES)
    with app.groups.lock:
        return Response(200, app.groups.to_json(_group(app, raw)))


def list_members(app, request, raw: str) -> Response:
    authorize(app, request, READ_SCOPES)
    limit = _limit(request.params, MEMBERS_DEFAULT_LIMIT, MAX_MEMBERS_LIMIT)
    after = request.params.get("after")
    store = app.groups
    with store.lock:
        group = _group(app, raw)
        found, more = store.members_page(group, after, limit)
        body = b"[" + b",".join(app.store.list_item(i) for i in found) + b"]"
        next_after = app.store.user_id(found[-1]) if found and more else None
    path = f"/api/v1/groups/{group.id}/users"
    headers = [_link(_url(app, path, ([("after", after)] if after else []) + [("limit", limit)]), "self")]
    if next_after:
        headers.append(_link(_url(app, path, [("after", next_after), ("limit", limit)]), "next"))
    return Response(200, body, headers)


def change_membership(app, request, raw_group: str, raw_user: str, add: bool) -> Response:
    authorize(app, request, MANAGE_SCOPES)
    store = app.groups
    with store.lock:
        group = _group(app, raw_group)
        user_id = unquote(raw_user)
        index = app.store.index_of(user_id)
        if index is None or app.store.user_id(index) != user_id:  # pathUserId: an id, never a login
            return Response(404, errors.not_found(user_id))
        if group.type != OKTA_GROUP:
            return Response(403, errors.okta_error(errors.ACCESS_DENIED))
        changed = store.add_member(group, index) if add else store.remove_member(group, index)
    if changed:
        app.stats.membership(group.id, request.method)
    return Response(204, b"")


def list_user_groups(app, request, raw: str) -> Response:
    authorize(app, request, USER_READ_SCOPES)
    index = _find(app, raw)
    store = app.groups
    with store.lock:
        body = b"[" + b",".join(store.to_json(g) for g in store.groups_of(index)) + b"]"
    return Response(200, body)
