"""One exception hierarchy for everything the connector raises, subclassed by meaning.

Every error carries the fields a person needs to act (HTTP status, Okta's errorCode/errorSummary/errorCauses/errorId,
the request id, method and path) and a hint for the known causes. None of them ever holds a header, a token, an
assertion or key material, nor echoes a value it refused. What the server wrote (Okta's error fields, OAuth's
`error`/`error_description`, the request id, a scope from `WWW-Authenticate`) is held and shown escaped
(`okta_sync.server_text`): a newline or an ANSI escape in it never starts or colours a log line.

    OktaSyncError                      retryable  meaning
      ConfigurationError (ValueError)    no       a setting is missing or wrong (`field` names it)
        PrivateKeyError                  no       the key cannot be read, decrypted or used
      OktaApiError                       by status  Okta answered an API call with an error status
        AuthenticationError              no       401, or the token endpoint's invalid_client
        PermissionDeniedError            no       403
          MissingScopeError              no       the token lacks a scope (`scope` names it; invalid_scope too)
            ScopeNotConfiguredError      no       ... and the connection's `scopes` lack it: raised before any
                                                  request (also a ConfigurationError, `field` "scopes")
          MissingAdminRoleError          no       E0000006: the app has no admin role covering the user
        NotFoundError                    no       404 / E0000007
        InvalidRequestError              no       400 (E0000001 validation, E0000003, E0000031 ...)
        PreconditionFailedError          no       412: If-Match no longer matches; nothing was written
        RateLimitError                   yes      429 still answered after the bounded retries
          RateLimitWaitError             yes      the window ends later than max_rate_limit_wait: not waiting
        ServerError                      yes      5xx still answered after the bounded retries
        TokenRequestError                by status  the token endpoint refused (429/5xx retryable); by meaning:
          InvalidClientError             no         invalid_client (also an AuthenticationError)
          InvalidScopeError              no         invalid_scope (also a MissingScopeError)
      OktaConnectionError                yes      the org could not be reached after the bounded retries
        OutcomeUnknownError              yes      a write was sent, its response lost: re-read, then decide
        TLSVerificationError             no       the certificate failed verification
        RequestDeadlineError             yes      a request took longer than request_deadline (a trickling body)
      ResponseLimitError                 no       a response broke a bound (max_response_bytes, max_pages, ...)
      CircuitOpenError                   yes      calls are paused after repeated failures
      LinkHeaderError                    no       a Link header could not be parsed
      UnsafeUrlError                     no       a URL (a Link's next) would send the token where it must not go
      PushFailedError                    yes      some changes of a plan failed; the report says which
      InputFileError (ValueError)        no       a file handed to the connector cannot be used:
        ChangesFeedError                          a changes feed, refused as a whole
        PlanFileError                             a plan file, truncated, edited or of another version
        NormalizerConfigError                     a normalisation configuration
        LocationError                             a location outside the allowed roots, or bad roots
        InputTooLargeError                        a non-seekable input longer than the spool allows
        WarehouseLoadError                        an export or its Asset event that cannot be loaded
        ManifestError                             a manifest (what a task wrote, beside its files), or a file
                                                  that does not match its manifest
      UntrustedValueError (ValueError) no       a value read from XCom, an Asset event or Asset state that
                                                  cannot be used (`field` names it)
      SealedTokenError                   no       a sealed run token cannot be opened (a new one is minted)
      PartitionTooLargeError             no       a created-window that cannot be narrowed further
      GroupExportError                   no       a listed group or member without a usable Okta id

`retryable` says whether running the same work again can succeed; the Airflow layer ends a task at once (no
retries) on an error whose `retryable` is False.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from okta_sync.server_text import server_text, server_texts


class OktaSyncError(Exception):
    """Base class of every error raised by okta_sync."""

    retryable: ClassVar[bool] = False
    """Whether the same work, run again later, can succeed (a passing fault). False: a person must fix something."""


class ConfigurationError(OktaSyncError, ValueError):
    """A setting is missing or wrong. `field` names the connection field or option to fix."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class PrivateKeyError(ConfigurationError):
    """The private key cannot be read, decrypted, or used for a client assertion."""


class UnsafeUrlError(OktaSyncError):
    """A URL would send the token somewhere it must not go (another host, or http:// off loopback)."""


class OktaApiError(OktaSyncError):
    """An Okta API call answered with an error status. `api_errors.api_error` picks the subclass by meaning."""

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
        self.error_code = server_text(error_code)
        self.error_summary = server_text(error_summary)
        self.error_causes = server_texts(error_causes)
        self.error_id = server_text(error_id)
        self.request_id = server_text(request_id)
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


class AuthenticationError(OktaApiError):
    """401 (the access token was refused), or the token endpoint's invalid_client (key, kid, client id)."""


class PermissionDeniedError(OktaApiError):
    """403: the app is known but may not do this."""


class MissingScopeError(PermissionDeniedError):
    """The call needs a scope the access token does not carry: Okta's 403 insufficient_scope, the token endpoint's
    invalid_scope (`InvalidScopeError`), or, before any request, a scope the connection does not ask for
    (`ScopeNotConfiguredError`). `scope` names it when Okta or the call says which."""

    def __init__(self, *, scope: str | None = None, **fields):
        self.scope = server_text(scope)  # may come from the server's WWW-Authenticate
        super().__init__(**fields)


class ScopeNotConfiguredError(MissingScopeError, ConfigurationError):
    """An operation needs a scope the connection's `scopes` do not include; raised before any request, so Okta was
    not asked and the API fields (`status`, `method`, `path`, ...) are empty. Also a ConfigurationError whose
    `field` is `scopes`: granting the scope and adding it to the connection is the fix."""

    def __init__(self, *, operation: str, scope: str, configured: Sequence[str]):
        self.scope = scope
        self.operation = operation
        self.configured = tuple(configured)
        self.field = "scopes"
        self.status = self.method = self.path = None
        self.error_code = self.error_summary = self.error_id = self.request_id = None
        self.error_causes = []
        self.hint = (
            f"Grant {scope} to the service app (Okta Admin Console > Applications > the app > Okta API Scopes) and "
            f"add it to the connection's `scopes` extra."
        )
        # neither OktaApiError's message (there is no answer) nor ConfigurationError's __init__ (same text, set here)
        Exception.__init__(
            self,
            f"scopes: {operation} needs the scope {scope}, which the connection's scopes ({' '.join(configured)}) do "
            f"not include. {self.hint}",
        )


class MissingAdminRoleError(PermissionDeniedError):
    """403 E0000006: the app has the scope but no admin role whose resource set covers this user."""


class NotFoundError(OktaApiError):
    """404 (E0000007): no such user (or resource) in this org."""


class InvalidRequestError(OktaApiError):
    """400: Okta refused a value or an expression (E0000001 validation, E0000003 body, E0000030/31 search)."""


class PreconditionFailedError(OktaApiError):
    """412: a conditional update (`If-Match`) named a version of the user that is no longer current; nothing was
    written. Re-read the user and decide again."""


class RateLimitError(OktaApiError):
    """429 E0000047 still answered after the bounded retries."""

    retryable = True


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


class ServerError(OktaApiError):
    """5xx still answered after the bounded retries: Okta (or a gateway in front of it) is failing."""

    retryable = True


_PASSING_TOKEN_STATUSES = (429, 500, 502, 503, 504)


class TokenRequestError(OktaApiError):
    """The token endpoint refused to issue an access token. `error`/`error_description` are OAuth's fields (also
    readable as `error_code`/`error_summary`); `retryable` is True for 429 and 5xx only."""

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
        error, error_description, request_id = map(server_text, (error, error_description, request_id))
        self.status = status
        self.method = "POST"
        self.path = token_url
        self.error = self.error_code = error
        self.error_description = self.error_summary = error_description
        self.error_causes = []
        self.error_id = None
        self.token_url = token_url
        self.request_id = request_id
        self.hint = hint
        self.retryable = status in _PASSING_TOKEN_STATUSES
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
        Exception.__init__(self, message)  # not OktaApiError's: the fields above are the token endpoint's


class InvalidClientError(TokenRequestError, AuthenticationError):
    """invalid_client: Okta did not accept the client assertion (wrong key or kid, unknown client id, bad aud)."""


class InvalidScopeError(TokenRequestError, MissingScopeError):
    """invalid_scope: a requested scope is not granted to the app (or not known to the authorization server)."""

    scope = None


class OktaConnectionError(OktaSyncError):
    """The org could not be reached (connection refused or reset, timeout) after the bounded retries."""

    retryable = True


class OutcomeUnknownError(OktaConnectionError):
    """A write was sent but its response was lost or damaged, so it may or may not have taken effect. It is not
    re-sent blindly (that could overwrite a value changed meanwhile): the caller re-reads first."""


class TLSVerificationError(OktaConnectionError):
    """The server's certificate failed verification: never retried, it is not a passing fault."""

    retryable = False


class RequestDeadlineError(OktaConnectionError):
    """A request (connect, headers and the whole body) took longer than `request_deadline`: a server trickling its
    body byte by byte never trips the per-read timeout, so the whole request has a deadline too."""


class ResponseLimitError(OktaSyncError):
    """A response broke a bound the client sets on what a server may send (body size, users per page, number of
    pages, a repeated cursor). `setting` names the bound. The message never repeats what was refused."""

    def __init__(self, message: str, *, setting: str):
        self.setting = setting
        super().__init__(message)


class CircuitOpenError(OktaSyncError):
    """Okta kept failing; calls are paused until the cool-down ends."""

    retryable = True


class LinkHeaderError(OktaSyncError):
    """A Link header could not be parsed: paging stops loudly, never silently early."""


class PushFailedError(OktaSyncError):
    """Some changes of a plan failed (the report says which and why). Retryable: a rerun re-applies the plan, and
    what the push journal records as applied is not sent again."""

    retryable = True


class InputFileError(OktaSyncError, ValueError):
    """A file or location handed to the connector cannot be used as it is; running again reads the same bytes."""


class ChangesFeedError(InputFileError):
    """The changes feed as a whole cannot be used; nothing from it may be planned."""

    def __init__(self, message: str, *, line: int | None = None, byte_offset: int | None = None,
                 column: str | None = None):
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"changes feed: {where}{message}")
        self.line = line
        self.byte_offset = byte_offset
        self.column = column


class PlanFileError(InputFileError):
    """A plan file that cannot be trusted: truncated, edited by hand, or written by another version."""

    def __init__(self, message: str, *, line: int | None = None):
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"plan file: {where}{message}")
        self.line = line


class NormalizerConfigError(InputFileError):
    """A normalisation configuration (Airflow param or connection extra) that cannot be used."""


class LocationError(InputFileError):
    """A location that may not be read, or a list of roots that cannot be used. Retrying does not help."""


class InputTooLargeError(InputFileError):
    """A non-seekable input longer than the spool allows."""

    def __init__(self, limit: int):
        super().__init__(f"the input is longer than {limit} bytes; it is not read")
        self.limit = limit


class WarehouseLoadError(InputFileError):
    """An export or its Asset event cannot be loaded; names the field and never echoes the refused value.
    `reason` is a short code for the load log of refusals (`okta_sync_refused`)."""

    def __init__(self, message: str, *, reason: str = "unreadable"):
        self.reason = reason
        super().__init__(message)


class ManifestError(InputFileError):
    """A manifest that cannot be used (missing, too large, not the schema), or a file that does not match the
    manifest written beside it (SHA-256, size). Names the field; never echoes a value."""


class UntrustedValueError(OktaSyncError, ValueError):
    """A value someone other than our tasks may have written (XCom, an Asset event's extra, Asset state) that cannot
    be used: of the wrong type, too large, or in the future. `field` names where it was read."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class SealedTokenError(OktaSyncError):
    """A sealed token could not be opened (another run, another key, or tampered with)."""


class PartitionTooLargeError(OktaSyncError):
    """A window holds more users than `split_at` and cannot be narrowed further (one millisecond wide)."""


class UnsortedListingError(OktaSyncError):
    """The server returned a `created`-sorted listing out of order: splitting it could lose or repeat users."""


class GroupExportError(OktaSyncError):
    """Okta sent a group or member the membership export cannot use (no id, an id that is not an Okta id, a group
    listed twice); names the field, never the value. Running again reads the same data: a person must look."""
