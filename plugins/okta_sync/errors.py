"""One exception hierarchy for everything the connector raises.

Every error carries the fields a person needs to act (HTTP status, Okta's errorCode/errorSummary/errorCauses/errorId,
the request id, method and path) and a hint for the known causes. None of them ever holds a header, a token, an
assertion or key material.
"""

from __future__ import annotations

from collections.abc import Sequence


class OktaSyncError(Exception):
    """Base class of every error raised by okta_sync."""


class ConfigurationError(OktaSyncError, ValueError):
    """A setting is missing or wrong. `field` names the connection field or option to fix."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class PrivateKeyError(ConfigurationError):
    """The private key cannot be read, decrypted, or used for a client assertion."""


class TokenRequestError(OktaSyncError):
    """The token endpoint refused to issue an access token."""

    def __init__(
        self,
        *,
        status: int | None,
        error: str | None,
        error_description: str | None,
        token_url: str,
        request_id: str | None = None,
        hint: str | None = None,
    ):
        self.status = status
        self.error = error
        self.error_description = error_description
        self.token_url = token_url
        self.request_id = request_id
        self.hint = hint
        parts = [f"token request to {token_url} failed"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if error:
            parts.append(error)
        message = ", ".join(parts)
        if error_description:
            message += f": {error_description}"
        if request_id:
            message += f" (X-Okta-Request-Id {request_id})"
        if hint:
            message += f"\nHint: {hint}"
        super().__init__(message)


class OktaApiError(OktaSyncError):
    """An Okta API call answered with an error status."""

    def __init__(
        self,
        *,
        status: int,
        method: str,
        path: str,
        error_code: str | None = None,
        error_summary: str | None = None,
        error_causes: Sequence[str] = (),
        error_id: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ):
        self.status = status
        self.method = method
        self.path = path
        self.error_code = error_code
        self.error_summary = error_summary
        self.error_causes = list(error_causes)
        self.error_id = error_id
        self.request_id = request_id
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        message = f"{self.method} {self.path} failed: HTTP {self.status}"
        if self.error_code:
            message += f" {self.error_code}"
        if self.error_summary:
            message += f": {self.error_summary}"
        if self.error_causes:
            message += " (" + "; ".join(self.error_causes) + ")"
        ids = [f"errorId {self.error_id}" if self.error_id else "", f"X-Okta-Request-Id {self.request_id}" if self.request_id else ""]
        ids = [i for i in ids if i]
        if ids:
            message += " [" + ", ".join(ids) + "]"
        if self.hint:
            message += f"\nHint: {self.hint}"
        return message


class RateLimitError(OktaApiError):
    """429 E0000047 still answered after the bounded retries."""


class RateLimitWaitError(RateLimitError):
    """A rate-limit window ends further away than the client may wait (`max_rate_limit_wait`): a server announcing
    a reset days ahead must not park a task for days. Raised before the request is (re)sent."""

    def __init__(self, *, bucket: str, seconds: float, max_wait: float, method: str = "", path: str = "",
                 error_code: str | None = None, request_id: str | None = None):
        self.bucket = bucket
        self.seconds = seconds
        self.max_wait = max_wait
        super().__init__(
            status=429, method=method, path=path, error_code=error_code, request_id=request_id,
            error_summary=(
                f"the rate limit of bucket {bucket!r} is spent and its window ends in {seconds:.0f} s "
                f"(X-Rate-Limit-Reset), more than max_rate_limit_wait ({max_wait:.0f} s); not waiting"
            ),
            hint=(
                "Another client may be draining this org's rate limit, or the server's X-Rate-Limit-Reset is wrong. "
                "Run later, lower rate_limit_fraction, or raise the connection's max_rate_limit_wait."
            ),
        )

    def _message(self) -> str:
        where = f"{self.method} {self.path}: " if self.method else ""
        message = f"{where}{self.error_summary}"
        if self.request_id:
            message += f" [X-Okta-Request-Id {self.request_id}]"
        return message + f"\nHint: {self.hint}"


class PreconditionFailedError(OktaApiError):
    """412: a conditional update (`If-Match`) named a version of the user that is no longer current; nothing was
    written. Re-read the user and decide again."""


class OktaConnectionError(OktaSyncError):
    """The org could not be reached (connection refused or reset, timeout) after the bounded retries."""


class OutcomeUnknownError(OktaConnectionError):
    """A write was sent but its response was lost or damaged, so it may or may not have taken effect. It is not
    re-sent blindly (that could overwrite a value changed meanwhile): the caller re-reads first."""


class TLSVerificationError(OktaConnectionError):
    """The server's certificate failed verification: never retried, it is not a passing fault."""


class RequestDeadlineError(OktaConnectionError):
    """A request (connect, headers and the whole body) took longer than `request_deadline`: a server trickling its
    body byte by byte never trips the per-read timeout, so the whole request has a deadline too."""


class ResponseLimitError(OktaSyncError):
    """A response broke a bound the client sets on what a server may send (body size, users per page, number of
    pages, a repeated cursor). `setting` names the bound. The message never repeats what was refused."""

    def __init__(self, message: str, *, setting: str):
        self.setting = setting
        super().__init__(message)


class MissingScopeError(ConfigurationError):
    """An operation needs a scope the connection's `scopes` do not include; raised before any request."""

    def __init__(self, *, operation: str, scope: str, configured: Sequence[str]):
        self.operation = operation
        self.scope = scope
        super().__init__(
            "scopes",
            f"{operation} needs the scope {scope}, which the connection's scopes ({' '.join(configured)}) do not "
            f"include. Grant {scope} to the service app (Okta Admin Console > Applications > the app > Okta API "
            f"Scopes) and add it to the connection's `scopes` extra.",
        )


class UnsafeUrlError(OktaSyncError):
    """A URL would send the token somewhere it must not go (another host, or http:// off loopback)."""


class LinkHeaderError(OktaSyncError):
    """A Link header could not be parsed: paging stops loudly, never silently early."""


class CircuitOpenError(OktaSyncError):
    """Okta kept failing; calls are paused until the cool-down ends."""
