"""The Users API: GET /api/v1/users, GET/POST/PUT /api/v1/users/{id or login}, behind Okta's token checks."""
from __future__ import annotations

import json
from urllib.parse import quote, unquote

from . import errors
from .dpop import ProofError
from .query import QueryError, compile_query
from .responses import Response
from .users import MalformedBody, PreconditionFailed, ValidationError

READ_SCOPES = ("okta.users.read", "okta.users.manage")
MANAGE_SCOPES = ("okta.users.manage",)
MAX_LIMIT = 200
TOMCAT_400 = ('<!doctype html><html lang="en"><head><title>HTTP Status 400 – Bad Request</title></head><body>'
              '<h1>HTTP Status 400 – Bad Request</h1></body></html>')
Q_DEFAULT_LIMIT = 10


class Refused(Exception):
    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


def _challenge(app, scheme: str, scope: str, error: str, description: str, resource: str) -> tuple[str, str]:
    parts = []
    if scheme == "DPoP":
        parts.append('algs="RS256 RS384 RS512 ES256 ES384 ES512"')
    parts += [f'authorization_uri="{app.org_url}/oauth2/v1/authorize"', 'realm="IdpRealm"', f'scope="{scope}"',
              f'error="{error}"', f'error_description="{description}"', f'resource="{resource}"']
    return "WWW-Authenticate", f"{scheme} " + ", ".join(parts)


def authorize(app, request, scopes: tuple[str, ...]):
    """The access token for this API call, or Refused with Okta's 401/403."""
    resource = request.path
    scope_hint = scopes[0]
    header = request.headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    value = value.strip()

    def invalid(description: str, challenge_scheme: str = "Bearer", error: str = "invalid_token"):
        return Refused(Response(401, errors.okta_error(errors.INVALID_TOKEN), [
            _challenge(app, challenge_scheme, scope_hint, error, description, resource)]))

    if scheme not in ("Bearer", "DPoP") or not value:
        raise invalid("The access token is invalid.")
    token = app.auth.lookup(value)
    if token is None or token.server != "org":
        raise invalid("The access token is invalid.", scheme)
    if token.jkt is not None:
        if scheme != "DPoP":
            raise invalid("The access token is bound to a DPoP key and must be presented with the DPoP scheme.",
                          "DPoP")
        proof = request.headers.get("DPoP")
        if not proof:
            raise invalid("The DPoP proof JWT header is missing.", "DPoP", "invalid_dpop_proof")
        try:
            _, jkt = app.dpop.verify(proof, request.method, request.htu, access_token=value)
        except ProofError as exc:
            raise invalid(str(exc), "DPoP", "invalid_dpop_proof") from exc
        if jkt != token.jkt:
            raise invalid("The DPoP proof JWT key does not match the access token binding.", "DPoP",
                          "invalid_dpop_proof")
    elif scheme != "Bearer":
        raise invalid("The access token is invalid.", "DPoP")
    app.stats.token_used(value)
    if not token.scopes.intersection(scopes):
        raise Refused(Response(403, errors.okta_error(errors.ACCESS_DENIED), [_challenge(
            app, scheme, scope_hint, "insufficient_scope",
            "The access token provided does not contain the required scopes.", resource)]))
    return token


def _link(url: str, rel: str) -> tuple[str, str]:
    return "Link", f'<{url}>; rel="{rel}"'


def _users_url(app, pairs: list[tuple[str, str]]) -> str:
    query = "&".join(f"{name}={quote(str(value), safe='')}" for name, value in pairs)
    return f"{app.org_url}/api/v1/users" + (f"?{query}" if query else "")


def list_users(app, request) -> Response:
    authorize(app, request, READ_SCOPES)
    params = request.params
    store = app.store
    q = params.get("q")
    search, filter_ = params.get("search"), params.get("filter")
    try:
        limit = int(params["limit"]) if "limit" in params else (Q_DEFAULT_LIMIT if q and not (search or filter_)
                                                                else MAX_LIMIT)
    except ValueError:
        return Response(400, errors.validation_failed("limit", ["limit: The value must be an integer"]))
    limit = MAX_LIMIT if limit < 1 else min(limit, MAX_LIMIT)
    predicate, include_deprovisioned, mode, expression = None, False, None, None
    if search is not None or filter_ is not None:
        mode, expression = ("search", search) if search is not None else ("filter", filter_)
        try:
            predicate = compile_query(store, expression, mode)
        except QueryError:
            return Response(400, errors.okta_error(errors.INVALID_SEARCH, ["Invalid search syntax."]))
        include_deprovisioned = True
    elif q is not None:
        prefix = q.casefold()

        def predicate(i):
            profile = store.profile(i)
            return any(str(profile.get(n) or "").casefold().startswith(prefix)
                       for n in ("firstName", "lastName", "email"))
    after = params.get("after")
    sort_by, sort_order = params.get("sortBy"), (params.get("sortOrder") or "asc").lower()
    if sort_by is not None:
        if mode != "search":
            return Response(400, errors.okta_error(errors.INVALID_SEARCH, ["sortBy needs a search query."]))
        if sort_by != "created" or sort_order not in ("asc", "desc"):
            return Response(400, errors.okta_error(
                errors.INVALID_SEARCH, ["The dev org sorts a search by created only, asc or desc."]))
        return _sorted_search(app, store, predicate, limit, after, sort_order == "desc", expression, sort_order)
    with store.lock:
        start = 0
        if after:
            start = store.first_index_after(after[1:] if after.startswith("0") and len(after) == 21 else after)
        stop = None
        if mode == "search" and app.options.search_cap:
            served_before = sum(1 for i in range(start) if predicate(i)) if start else 0
            remaining_cap = app.options.search_cap - served_before
            if remaining_cap <= 0:
                found, more = [], False
            else:
                found, more = store.page(start, min(limit, remaining_cap), predicate, include_deprovisioned)
                more = more and len(found) < remaining_cap
        else:
            found, more = store.page(start, limit, predicate, include_deprovisioned, stop)
        if q is not None and mode is None:
            more = False  # q does not page
        body = b"[" + b",".join(store.list_item(i) for i in found) + b"]"
        next_after = "0" + store.user_id(found[-1]) if found and more else None
    extra = [(mode, expression)] if mode else ([("q", q)] if q is not None else [])
    self_pairs = ([("after", after)] if after else []) + [("limit", limit)] + extra
    headers = [_link(_users_url(app, self_pairs), "self")]
    if next_after:
        headers.append(_link(_users_url(app, [("after", next_after), ("limit", limit)] + extra), "next"))
    return Response(200, body, headers)


def _sorted_search(app, store, predicate, limit, after, descending, expression, sort_order) -> Response:
    """A `search` with `sortBy=created`: ties by id; the `after` cursor is the last user's id, as Okta's is opaque."""
    with store.lock:
        order = store.created_order(descending)
        position = store.position_after(order, after[1:] if after.startswith("0") and len(after) == 21 else after,
                                        descending) if after else 0
        cap = app.options.search_cap
        if cap:
            served_before = sum(1 for i in order[:position] if predicate(i))
            limit = min(limit, cap - served_before)
        found, more = store.ordered_page(order, position, limit, predicate) if limit > 0 else ([], False)
        if cap:
            more = more and served_before + len(found) < cap
        body = b"[" + b",".join(store.list_item(i) for i in found) + b"]"
        next_after = "0" + store.user_id(found[-1]) if found and more else None
    extra = [("search", expression), ("sortBy", "created"), ("sortOrder", sort_order)]
    headers = [_link(_users_url(app, ([("after", after)] if after else []) + [("limit", limit)] + extra), "self")]
    if next_after:
        headers.append(_link(_users_url(app, [("after", next_after), ("limit", limit)] + extra), "next"))
    return Response(200, body, headers)


def _find(app, raw: str):
    """The user a path segment names: id, login or unambiguous login shortname, read as Okta reads it.

    A segment that decodes to a `/` finds nobody: Okta fetches logins containing `/` only by id (OpenAPI getUser).
    `;` starts a path parameter that Okta drops (`prefix;suffix` is looked up as `prefix`, okta-sdk-java #1526),
    and a `\\` is refused with the servlet container's HTML 400 (same source).
    """
    key = unquote(raw)
    if "\\" in key:
        raise Refused(Response(400, TOMCAT_400.encode(), content_type="text/html;charset=utf-8"))
    key = key.partition(";")[0]
    index = app.store.resolve(key) if key and "/" not in key else None
    if index is None:
        raise Refused(Response(404, errors.not_found(key)))
    return index


def get_user(app, request, raw: str) -> Response:
    authorize(app, request, READ_SCOPES)
    index = _find(app, raw)
    with app.store.lock:
        body, etag = app.store.full_json(index), app.store.etag(index)
    return Response(200, body, [("ETag", etag)])


def update_user(app, request, raw: str, replace: bool) -> Response:
    authorize(app, request, MANAGE_SCOPES)
    store = app.store
    index = _find(app, raw)
    if index in store.outside_resource_set:
        return Response(403, errors.okta_error(errors.ACCESS_DENIED))
    try:
        body = json.loads(request.body.decode("utf-8")) if request.body else None
    except (UnicodeDecodeError, ValueError):
        return Response(400, errors.okta_error(errors.NOT_WELL_FORMED))
    try:
        store.update_profile(index, body, replace, request.headers.get("If-Match"))
    except PreconditionFailed:
        return Response(412, errors.okta_error(errors.PRECONDITION_FAILED))
    except MalformedBody:
        return Response(400, errors.okta_error(errors.NOT_WELL_FORMED))
    except ValidationError as exc:
        return Response(400, errors.validation_failed(exc.field_name, exc.causes))
    app.stats.update(store.user_id(index), request.method)
    with store.lock:
        body, etag = store.full_json(index), store.etag(index)
    return Response(200, body, [("ETag", etag)])
