"""Okta's two error shapes: Management API bodies (errorCode...) and OAuth token-endpoint bodies (error...)."""
from __future__ import annotations

import json
import secrets

# Texts as Okta's error-code reference and recordings give them.
INVALID_TOKEN = ("E0000011", "Invalid token provided")
ACCESS_DENIED = ("E0000006", "You do not have permission to perform the requested action")
NOT_WELL_FORMED = ("E0000003", "The request body was not well-formed.")
RATE_LIMITED = ("E0000047", "API call exceeded rate limit due to too many requests.")
INVALID_SEARCH = ("E0000031", "Invalid search criteria.")
INTERNAL_ERROR = ("E0000009", "Internal Server Error")
PATH_NOT_FOUND = ("E0000008", "The requested path was not found")
METHOD_NOT_ALLOWED = ("E0000022", "The endpoint does not support the provided HTTP method")
# Okta documents If-Match on user updates but neither the 412 body nor an errorCode for it: the shape is Okta's,
# the code a dev-org placeholder (clients must decide on the status, 412, alone).
PRECONDITION_FAILED = ("E0000412", "The resource was modified since the version named in If-Match.")


def error_id() -> str:
    return "oae" + secrets.token_urlsafe(16)


def okta_error(code_summary: tuple[str, str], causes: list[str] | None = None, summary: str | None = None) -> bytes:
    code, default_summary = code_summary
    body = {
        "errorCode": code,
        "errorSummary": summary if summary is not None else default_summary,
        "errorLink": code,
        "errorId": error_id(),
        "errorCauses": [{"errorSummary": cause} for cause in (causes or [])],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def not_found(resource: str, kind: str = "User") -> bytes:
    return okta_error(("E0000007", ""), summary=f"Not found: Resource not found: {resource} ({kind})")


def validation_failed(field_name: str, causes: list[str]) -> bytes:
    return okta_error(("E0000001", ""), causes=causes, summary=f"Api validation failed: {field_name}")


def oauth_error(error: str, description: str) -> bytes:
    return json.dumps({"error": error, "error_description": description}, separators=(",", ":")).encode()


class OAuthRefusal(Exception):
    """A refused token request: status, OAuth error, Okta's description, and a short reason for the stats."""

    def __init__(self, status: int, error: str, description: str, reason: str, headers: list | None = None):
        super().__init__(f"{error}: {description}")
        self.status, self.error, self.description, self.reason = status, error, description, reason
        self.headers = headers or []

    def body(self) -> bytes:
        return oauth_error(self.error, self.description)
