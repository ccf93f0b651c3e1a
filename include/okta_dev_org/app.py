"""DevOrgApp: the org's state and the request pipeline (routing, rate limits, faults, stats), free of sockets."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, unquote_plus

from . import admin_api, errors, groups_api, users_api
from .dpop import DPoPVerifier
from .errors import OAuthRefusal
from .faults import Fault, FaultInjector, FaultSettings
from .options import BUCKETS, DevOrgOptions
from .population import Population
from .ratelimits import RateLimiter, Verdict
from .responses import REASONS, Response, request_id
from .stats import Stats
from .tokens import CUSTOM_SERVERS, AuthorizationServer
from .groups import GroupStore
from .users import UserStore

USER_PATH = re.compile(r"^/api/v1/users/([^/]+)$")
USER_GROUPS_PATH = re.compile(r"^/api/v1/users/([^/]+)/groups$")
GROUP_PATH = re.compile(r"^/api/v1/groups/([^/]+)$")
GROUP_USERS_PATH = re.compile(r"^/api/v1/groups/([^/]+)/users$")
GROUP_USER_PATH = re.compile(r"^/api/v1/groups/([^/]+)/users/([^/]+)$")
CUSTOM_TOKEN_PATH = re.compile(r"^/oauth2/([^/]+)/v1/token$")
UNLIMITED_HEADER = 1_000_000  # what X-Rate-Limit-Limit says when a bucket is unlimited


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: object  # email.message.Message: case-insensitive get()
    body: bytes
    scheme: str
    host: str
    params: dict = field(default_factory=dict)

    @property
    def url_without_query(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    @property
    def htu(self) -> str:
        """What a DPoP proof's `htu` must equal: Okta compares it with the percent-decoded path (okta-sdk-python
        #541, okta-sdk-nodejs #521, okta-sdk-java #1526/#1528), so `/users/a%40b.example` is proved as `a@b.example`."""
        return f"{self.scheme}://{self.host}{unquote(self.path)}"


@dataclass
class Route:
    key: str  # stats key, e.g. "GET /api/v1/users"
    bucket: str | None  # rate-limit bucket; None for admin
    kind: str  # "api", "token", "admin", "other"
    handler: object
    args: tuple = ()


@dataclass
class Outcome:
    response: Response | None  # None when the connection is to be reset
    post_fault: Fault | None = None
    close: bool = False


class DevOrgApp:
    def __init__(self, options: DevOrgOptions, org_url: str, default_client: dict):
        self.options = options
        self.org_url = org_url
        self.population = Population(options.seed, options.messy_fraction, options.deprovisioned_fraction,
                                     options.other_status_fraction, options.created_distribution)
        self.store = UserStore(self.population, options.users, org_url, options.json_cache_limit)
        self.groups = GroupStore(self.store, options.groups, options.group_memberships, options.seed, org_url)
        self.dpop = DPoPVerifier()
        self.auth = AuthorizationServer(org_url, self.dpop)
        self.auth.register_client(default_client["client_id"], [default_client["jwk"]], options.granted_scopes,
                                  options.dpop == "required")
        self.limiter = RateLimiter({b: options.limit_for(b) for b in BUCKETS}, options.rate_limit,
                                   options.concurrency_limit, options.rate_limit_window)
        self.faults = FaultInjector(FaultSettings(
            fail_rate=options.fail_rate, fail_statuses=options.fail_statuses, reset_rate=options.reset_rate,
            slow_body_rate=options.slow_body_rate, slow_body_ms=options.slow_body_ms,
            truncate_rate=options.truncate_rate, invalid_json_rate=options.invalid_json_rate,
            latency_ms=options.latency_ms), options.seed)
        self.stats = Stats()

    # ---- routing --------------------------------------------------------------------------------------------
    def route(self, method: str, path: str) -> Route:
        if path.startswith("/_dev/"):
            return Route("admin", None, "admin", admin_api.handle)
        if path == "/api/v1/users":
            if method == "GET":
                return Route("GET /api/v1/users", "users_list", "api", users_api.list_users)
            return Route(f"{method} /api/v1/users", "users_list", "api", _method_not_allowed)
        match = USER_PATH.match(path)
        if match:
            if method == "GET":
                return Route("GET /api/v1/users/{id}", "user_read", "api", users_api.get_user, (match.group(1),))
            if method in ("POST", "PUT"):
                return Route(f"{method} /api/v1/users/{{id}}", "user_update", "api", users_api.update_user,
                             (match.group(1), method == "PUT"))
            return Route(f"{method} /api/v1/users/{{id}}", "user_update", "api", _method_not_allowed)
        group_route = self._group_route(method, path)
        if group_route is not None:
            return group_route
        if path == "/oauth2/v1/token":
            return Route(f"{method} /oauth2/v1/token", "token", "token", self.token_endpoint, ("org",))
        match = CUSTOM_TOKEN_PATH.match(path)
        if match:
            return Route(f"{method} /oauth2/{{authServerId}}/v1/token", "token", "token", self.token_endpoint,
                         (match.group(1),))
        return Route("other", "other", "other", _path_not_found)

    @staticmethod
    def _group_route(method: str, path: str) -> Route | None:
        if path == "/api/v1/groups":
            handler = groups_api.list_groups if method == "GET" else _method_not_allowed
            return Route(f"{method} /api/v1/groups", "groups_list", "api", handler)
        if match := GROUP_PATH.match(path):
            handler = groups_api.get_group if method == "GET" else _method_not_allowed
            return Route(f"{method} /api/v1/groups/{{id}}", "group_read", "api", handler, (match.group(1),))
        if match := GROUP_USERS_PATH.match(path):
            handler = groups_api.list_members if method == "GET" else _method_not_allowed
            return Route(f"{method} /api/v1/groups/{{id}}/users", "group_members", "api", handler, (match.group(1),))
        if match := GROUP_USER_PATH.match(path):
            key = f"{method} /api/v1/groups/{{id}}/users/{{userId}}"
            if method not in ("PUT", "DELETE"):
                return Route(key, "group_member_update", "api", _method_not_allowed)
            return Route(key, "group_member_update", "api", groups_api.change_membership,
                         (match.group(1), match.group(2), method == "PUT"))
        if match := USER_GROUPS_PATH.match(path):
            handler = groups_api.list_user_groups if method == "GET" else _method_not_allowed
            return Route(f"{method} /api/v1/users/{{id}}/groups", "user_groups", "api", handler, (match.group(1),))
        return None

    # ---- pipeline -------------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Outcome:
        request.params = dict(parse_qsl(request.query, keep_blank_values=True))
        route = self.route(request.method, request.path)
        if route.kind == "admin":
            return Outcome(route.handler(self, request))
        self.stats.request(route.key, route.bucket)
        verdict = self.limiter.enter(route.bucket)
        try:
            self.faults.latency()
            if not verdict.allowed:
                self.stats.limited(verdict.reason, route.bucket)
                return self._finish(Response(429, errors.okta_error(errors.RATE_LIMITED)), verdict)
            pre, post = self.faults.decide() if self.faults.applies(route.kind) else (None, None)
            if pre is not None:
                self.stats.fault("reset" if pre.kind == "reset" else f"http_{pre.status}")
                if pre.kind == "reset":
                    return Outcome(None, close=True)
                return self._finish(_fault_response(pre.status), verdict)
            response = route.handler(self, request, *route.args) if route.kind != "token" else \
                route.handler(request, *route.args)
            if post is not None:
                self.stats.fault(post.kind)
            return self._finish(response, verdict, post)
        except users_api.Refused as refused:
            return self._finish(refused.response, verdict)
        finally:
            self.limiter.leave()

    def _finish(self, response: Response, verdict: Verdict, post: Fault | None = None) -> Outcome:
        limit = verdict.limit or UNLIMITED_HEADER
        remaining = verdict.remaining if verdict.limit else max(0, UNLIMITED_HEADER - 1)
        response.headers = [("X-Okta-Request-Id", request_id()), ("X-Rate-Limit-Limit", str(limit)),
                            ("X-Rate-Limit-Remaining", str(remaining)),
                            ("X-Rate-Limit-Reset", str(verdict.reset))] + response.headers
        self.stats.response(response.status)
        return Outcome(response, post)

    # ---- token endpoint -------------------------------------------------------------------------------------
    def token_endpoint(self, request: Request, server: str) -> Response:
        if server != "org" and server not in CUSTOM_SERVERS:
            return Response(404, errors.not_found(server, "AuthorizationServer"))
        if request.method != "POST":
            return _method_not_allowed(self, request)
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            refusal = OAuthRefusal(400, "invalid_request",
                                   "The request must be form-encoded (application/x-www-form-urlencoded).",
                                   "not_form_encoded")
            self.stats.token_result(refusal.reason)
            return Response(refusal.status, refusal.body())
        form = {}
        for pair in request.body.decode("utf-8", "replace").split("&"):
            if pair:
                name, _, value = pair.partition("=")
                form.setdefault(unquote_plus(name), unquote_plus(value))
        authorization = request.headers.get("Authorization") or ""
        try:
            body = self.auth.token(form, request.url_without_query, server, request.headers.get("DPoP"),
                                   authorization.lower().startswith("basic "), authorization)
        except OAuthRefusal as refusal:
            self.stats.token_result(refusal.reason)
            return Response(refusal.status, refusal.body(), list(refusal.headers))
        self.stats.token_result(None)
        return Response(200, json.dumps(body, separators=(",", ":")).encode())

    # ---- admin ----------------------------------------------------------------------------------------------
    def configure(self, **settings) -> dict:
        limits = {b: settings.pop(f"rate_limit_{b}") for b in BUCKETS if f"rate_limit_{b}" in settings}
        limits.update(settings.pop("rate_limits", {}) or {})
        self.limiter.configure(limits=limits, default_limit=settings.pop("rate_limit", None),
                               concurrency_limit=settings.pop("concurrency_limit", None))
        if settings.pop("forget_rate_limit_counts", False):
            self.limiter.forget_counts()
        outage = settings.pop("token_outage_seconds", None)
        if outage is not None:
            self.auth.start_outage(float(outage))
        if settings.pop("revoke_tokens", False):
            self.auth.revoke_all()
        seed = settings.pop("fault_seed", None)
        self.faults.configure(seed=seed, **settings)
        return self.settings()

    def settings(self) -> dict:
        f = self.faults.settings
        return {
            "rate_limits": {b: self.limiter.limit_for(b) for b in BUCKETS}, "rate_limit": self.limiter.default_limit,
            "concurrency_limit": self.limiter.concurrency_limit,
            "faults": {"fail_rate": f.fail_rate, "fail_statuses": list(f.fail_statuses), "reset_rate": f.reset_rate,
                       "slow_body_rate": f.slow_body_rate, "slow_body_ms": f.slow_body_ms,
                       "truncate_rate": f.truncate_rate, "invalid_json_rate": f.invalid_json_rate,
                       "latency_ms": f.latency_ms, "scope": f.scope},
            "token_outage_until": self.auth.outage_until,
        }

    def stats_snapshot(self) -> dict:
        snapshot = self.stats.snapshot(self.limiter.peak, self.limiter.in_flight)
        snapshot["settings"] = self.settings()
        snapshot["users"] = {"count": self.store.count, "visible": self.store.visible_count,
                             "serialised": self.store.warmed, "cache_limit": self.store.cache_limit}
        snapshot["groups"] = {"count": len(self.groups.groups),
                              "memberships": sum(self.groups.member_count(g) for g in self.groups.groups)}
        snapshot["time"] = time.time()
        return snapshot


def _method_not_allowed(app, request, *args) -> Response:
    return Response(405, errors.okta_error(errors.METHOD_NOT_ALLOWED), [("Allow", "GET, POST, PUT")])


def _path_not_found(app, request, *args) -> Response:
    return Response(404, errors.okta_error(errors.PATH_NOT_FOUND))


_NGINX = "<html>\r\n<head><title>{0} {1}</title></head>\r\n<body>\r\n<center><h1>{0} {1}</h1></center>\r\n" \
         "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"


def _fault_response(status: int) -> Response:
    if status == 500:
        return Response(500, errors.okta_error(errors.INTERNAL_ERROR))
    # Gateway errors come from the load balancer, as HTML.
    return Response(status, _NGINX.format(status, REASONS.get(status, "Error")).encode(), content_type="text/html")
