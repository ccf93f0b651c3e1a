"""Turning an Okta error response into the `OktaApiError` subclass that says what it means, with a hint a person
can act on. The one place that reads statuses and error codes: callers branch on the class, never on `status`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from okta_sync.config import MANAGE_SCOPE, READ_SCOPE
from okta_sync.server_text import server_text
from okta_sync.errors import (
    AuthenticationError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    MissingAdminRoleError,
    MissingScopeError,
    NotFoundError,
    OktaApiError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitError,
    ServerError,
    TokenRequestError,
)

_WWW_AUTH_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')


def parse_error_body(content: bytes, content_type: str | None) -> dict[str, Any]:
    """Okta's error fields, or a description of a body that is not an Okta error (a proxy's HTML page)."""
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and ("errorCode" in body or "errorSummary" in body):
        causes = body.get("errorCauses")
        causes = causes if isinstance(causes, list) else [causes] if causes else []
        return {
            "error_code": _text(body.get("errorCode")),
            "error_summary": _text(body.get("errorSummary")),
            "error_id": _text(body.get("errorId")),
            "error_causes": [text for text in map(_cause_text, causes) if text],
        }
    if isinstance(body, dict) and "error" in body:  # OAuth-style body
        return {"error_code": _text(body.get("error")), "error_summary": _text(body.get("error_description"))}
    kind = server_text((content_type or "no content type").split(";")[0].strip()[:100])
    size = len(content or b"")
    return {"error_summary": f"the response is not an Okta error ({kind}, {size} bytes): a proxy or gateway answered?"}


def _cause_text(cause: Any) -> str | None:
    """One errorCause as text; a cause without an errorSummary (or not an object) must not break the error."""
    return _text(cause.get("errorSummary")) if isinstance(cause, dict) else _text(cause)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def www_authenticate_params(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): server_text(v) for k, v in _WWW_AUTH_PARAM.findall(headers.get("WWW-Authenticate", ""))}


def scope_needed(method: str, path: str) -> str:
    return READ_SCOPE if method.upper() in ("GET", "HEAD") else MANAGE_SCOPE


def api_error(
    *, status: int, method: str, path: str, headers: Mapping[str, str], content: bytes
) -> OktaApiError:
    fields = parse_error_body(content, headers.get("Content-Type"))
    auth = www_authenticate_params(headers)
    code = fields.get("error_code")
    error_class = api_error_class(status, code, auth.get("error"))
    meaning: dict[str, Any] = {}
    if error_class is MissingScopeError:
        meaning["scope"] = auth.get("scope") or scope_needed(method, path)
    return error_class(
        **meaning,
        status=status,
        method=method.upper(),
        path=path,
        request_id=headers.get("X-Okta-Request-Id"),
        hint=_hint(status, fields.get("error_code"), auth, method, path),
        **fields,
    )


def api_error_class(status: int, error_code: str | None, auth_error: str | None = None) -> type[OktaApiError]:
    """The class for an API error: by meaning (WWW-Authenticate's error, then Okta's errorCode), then by status."""
    if status == 403 and auth_error == "insufficient_scope":
        return MissingScopeError
    if status == 403 and error_code == "E0000006":
        return MissingAdminRoleError
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, OktaApiError)


_BY_STATUS: dict[int, type[OktaApiError]] = {
    400: InvalidRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    412: PreconditionFailedError, 429: RateLimitError,
}


def token_error(*, status: int | None, error: str | None, **fields: Any) -> TokenRequestError:
    """The token endpoint's refusal as its class: invalid_client (authentication), invalid_scope (a missing scope)."""
    error_class = {"invalid_client": InvalidClientError, "invalid_scope": InvalidScopeError}.get(error or "",
                                                                                                 TokenRequestError)
    return error_class(status=status, error=error, **fields)


def _hint(status: int, code: str | None, auth: Mapping[str, str], method: str, path: str) -> str | None:
    if status == 403 and auth.get("error") == "insufficient_scope":
        scope = auth.get("scope") or scope_needed(method, path)
        return (
            f"The access token does not carry {scope}. Grant {scope} to the service app (Admin Console > Applications "
            f"> the app > Okta API Scopes) and include it in the connection's scopes."
        )
    if status == 403 and code == "E0000006":
        return (
            "The app has the scope but no admin role covering this user: assign the service app an admin role "
            "(e.g. a custom role with user permissions) whose resource set includes this user or its group."
        )
    if status == 401:
        if auth.get("error") == "use_dpop_nonce" or auth.get("error") == "invalid_dpop_proof":
            return "The DPoP proof was refused; check the server clock and that dpop is set as the app requires."
        return "The access token was refused (expired, revoked, or issued for another org or authorization server)."
    if status == 404 and code == "E0000007":
        return "No such user in this org (check the id or login; a deleted user is gone for good)."
    if status == 400 and code == "E0000003":
        return 'The request body must be a JSON object of the form {"profile": {...}}.'
    if status == 400 and code == "E0000001":
        return "Okta refused a value; the causes above name the attribute (e.g. firstName longer than 50 characters)."
    if status == 400 and code in ("E0000031", "E0000030"):
        return "Okta refused the search or filter expression; check attribute names, operators and quoting."
    if status == 412:
        return "The user changed in Okta after it was read (If-Match no longer matches); nothing was written."
    if status == 429:
        return "Okta's rate limit for this endpoint was exhausted; lower rate_limit_fraction or max_concurrency, or spread runs."
    return None
