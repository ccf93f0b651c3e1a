"""Unauthenticated, loopback-only inspection and control endpoints under /_dev/ (never part of Okta)."""
from __future__ import annotations

import json

from .population import STATUS_CODE
from .responses import Response


def _json(payload, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False).encode())


def _error(message: str, status: int = 400) -> Response:
    return _json({"error": message}, status)


def handle(app, request) -> Response:
    path, method = request.path, request.method
    try:
        payload = json.loads(request.body) if request.body else {}
    except ValueError:
        return _error("body must be JSON")
    store = app.store
    try:
        if path == "/_dev/health":
            return _json({"ok": True, "org_url": app.org_url})
        if path == "/_dev/stats" and method == "GET":
            return _json(app.stats_snapshot())
        if path == "/_dev/stats/reset" and method == "POST":
            app.stats.reset()
            app.limiter.reset_peak()
            return _json({"ok": True})
        if path == "/_dev/users" and method == "GET":
            offset = int(request.params.get("offset", 0))
            limit = int(request.params.get("limit", store.count))
            with store.lock:
                users = [store.as_dict(i) for i in range(offset, min(store.count, offset + limit))]
            return _json(users)
        if path == "/_dev/users" and method == "POST":
            with store.lock:
                index = store.add_user(payload["profile"], payload.get("status", "ACTIVE"))
                app.groups.user_added(index)
            return _json(store.as_dict(index))
        if path == "/_dev/groups" or path.startswith("/_dev/groups/"):
            return _groups(app, method, path[len("/_dev/groups"):].strip("/"), payload)
        if path == "/_dev/messy" and method == "GET":
            return _json({store.user_id(i): store.messy_fields(i) for i in range(store.count) if store.messy[i]})
        if path.startswith("/_dev/users/"):
            rest = path[len("/_dev/users/"):]
            user_ref, _, action = rest.partition("/")
            index = store.index_of(user_ref)
            if index is None:
                return _error("no such user", 404)
            if not action and method == "GET":
                return _json(store.as_dict(index))
            if action == "flags" and method == "POST":
                if "outside_resource_set" in payload:
                    (store.outside_resource_set.add if payload["outside_resource_set"]
                     else store.outside_resource_set.discard)(index)
                return _json(store.as_dict(index))
            if action == "status" and method == "POST":
                if payload.get("status") not in STATUS_CODE:
                    return _error(f"status must be one of {sorted(STATUS_CODE)}")
                store.set_status(index, payload["status"])
                return _json(store.as_dict(index))
        if path == "/_dev/configure" and method == "POST":
            return _json(app.configure(**payload))
        if path == "/_dev/tokens/revoke" and method == "POST":
            return _json({"revoked": app.auth.revoke_all()})
        if path == "/_dev/clients" and method == "POST":
            app.auth.register_client(payload["client_id"], payload.get("jwks") or [],
                                     payload.get("granted_scopes", app.options.granted_scopes),
                                     bool(payload.get("dpop_required", False)), payload.get("client_secret"))
            return _json({"ok": True, "client_id": payload["client_id"]})
    except (KeyError, TypeError, ValueError) as exc:
        return _error(f"{type(exc).__name__}: {exc}")
    return _error(f"no admin endpoint {method} {path}", 404)


def _group_json(app, group) -> dict:
    body = app.groups.as_dict(group, stats=True)
    body["_dev"] = {"members": app.groups.member_count(group)}
    return body


def _groups(app, method: str, rest: str, payload) -> Response:
    """Groups as an admin (or an app import, or a group rule) changes them, between runs: any type, no token.

    GET /_dev/groups, POST /_dev/groups {"profile", "type"}, GET|DELETE /_dev/groups/{id},
    GET /_dev/groups/{id}/members (user ids), POST /_dev/groups/{id}/members {"add": [ids], "remove": [ids]},
    POST /_dev/groups/{id}/profile {"profile": {...}}.
    """
    groups, users = app.groups, app.store
    group_id, _, action = rest.partition("/")
    with groups.lock:
        if not group_id:
            if method == "GET":
                return _json([_group_json(app, g) for g in groups.groups])
            if method == "POST":
                group = groups.create(payload["profile"], payload.get("type", "OKTA_GROUP"), payload.get("source_id"))
                return _json(_group_json(app, group))
            return _error(f"no admin endpoint {method} /_dev/groups", 404)
        group = groups.by_id.get(group_id)
        if group is None:
            return _error("no such group", 404)
        if not action and method == "GET":
            return _json(_group_json(app, group))
        if not action and method == "DELETE":
            groups.delete(group)
            return _json({"deleted": group_id})
        if action == "members" and method == "GET":
            count = groups.member_count(group)
            found, _ = groups.members_page(group, None, count)
            return _json([users.user_id(i) for i in found])
        if action == "members" and method == "POST":
            if group.type == "BUILT_IN":
                return _error("Everyone's members are every user")
            indexes = {}
            for user_id in [*payload.get("add", []), *payload.get("remove", [])]:
                index = users.index_of(user_id)
                if index is None or users.user_id(index) != user_id:
                    return _error("no such user", 404)
                indexes[user_id] = index
            added = sum(groups.add_member(group, indexes[u]) for u in payload.get("add", []))
            removed = sum(groups.remove_member(group, indexes[u]) for u in payload.get("remove", []))
            return _json({"added": added, "removed": removed, **_group_json(app, group)})
        if action == "profile" and method == "POST":
            groups.update_profile(group, payload["profile"])
            return _json(_group_json(app, group))
    return _error(f"no admin endpoint {method} /_dev/groups/{rest}", 404)
