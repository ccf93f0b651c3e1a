"""The one HTTP path to Okta: a keep-alive session, timeouts, rate-limit pacing, retries, error mapping, paging.

Retries (one place decides them): 429 after the window's reset on the server's clock; 500/502/503/504, connection
errors, timeouts and truncated or undecodable bodies with exponential backoff and full jitter; bounded attempts and
total time. A 401 `E0000011` is retried once after a forced token refresh. TLS verification failures and every
other 4xx fail at once. A write (POST, PUT) whose request was sent but whose response was lost or damaged is not
re-sent: it raises `OutcomeUnknownError` and the caller re-reads to learn whether it landed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.wait import wait_random_exponential

from okta_sync.http.api_errors import api_error, www_authenticate_params
from okta_sync.http.circuit import CircuitBreaker
from okta_sync.http.credentials import Credential, TokenSource
from okta_sync.config import OktaConfig
from okta_sync.errors import (
    OktaApiError,
    OktaConnectionError,
    OktaSyncError,
    OutcomeUnknownError,
    RateLimitWaitError,
    RequestDeadlineError,
    ResponseLimitError,
    TLSVerificationError,
    UnsafeUrlError,
)
from okta_sync.http.links import cursor_of, next_page_url, origin_of, parse_link_header
from okta_sync.metrics import Metrics, NoMetrics
from okta_sync.http.ratelimit import RateLimiter
from okta_sync.http.response_body import read_body
from okta_sync.version import USER_AGENT

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ApiResponse:
    """A decoded success response: what callers need, nothing that could carry a secret."""

    status: int
    headers: Mapping[str, str]
    data: Any
    url: str

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Okta-Request-Id")

    def link(self, rel: str) -> str | None:
        return parse_link_header(self.headers.get("Link")).get(rel)


@dataclass
class TransportStats:
    """Counters for progress logs, metrics and benchmarks (thread-safe increments)."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    token_refreshes_on_401: int = 0
    rate_limit_wait_seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def count_status(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1


class _RetryableFailure(Exception):
    """One failed attempt that may succeed later. Carries what the final error needs, never the request."""

    def __init__(self, reason: str, *, wait: float | None = None, error: OktaSyncError, sent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.error = error
        self.sent = sent  # the server may have acted on the request (the response was lost or damaged)


def verify_setting(ca_bundle: str | None) -> str | bool:
    """The explicit CA setting wins; requests would otherwise let REQUESTS_CA_BUNDLE override a session's verify."""
    if ca_bundle:
        if not os.path.exists(ca_bundle):
            from okta_sync.errors import ConfigurationError

            raise ConfigurationError("ca_bundle", f"{ca_bundle} does not exist")
        return ca_bundle
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def build_session(config: OktaConfig) -> requests.Session:
    session = requests.Session()
    # No netrc, no env overrides behind our back: proxies and CA are decided explicitly below.
    session.trust_env = False
    session.verify = verify_setting(config.ca_bundle)
    session.proxies = proxies_for(config)
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(config.max_concurrency, 4), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def proxies_for(config: OktaConfig) -> dict[str, str]:
    """The explicit proxy, else the environment's (HTTPS_PROXY, NO_PROXY) for an https org. A plain-http org (the
    loopback dev org) never goes through a proxy: the token would cross the network in clear."""
    if urlsplit(config.org_url).scheme != "https":
        return {}
    if config.proxy:
        return {"http": config.proxy, "https": config.proxy}
    return requests.utils.get_environ_proxies(config.org_url)


class Transport:
    """Authenticated, paced, retried requests to one org."""

    def __init__(
        self,
        config: OktaConfig,
        tokens: TokenSource,
        *,
        session: requests.Session | None = None,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        metrics: Metrics | None = None,
        breaker: CircuitBreaker | None = None,
    ):
        self.config = config
        self.tokens = tokens
        self.session = session or build_session(config)
        self.rate_limiter = rate_limiter or RateLimiter(fraction=config.rate_limit_fraction,
                                                        max_wait=config.max_rate_limit_wait)
        self.stats = TransportStats()
        self.metrics = metrics or NoMetrics()
        self.breaker = breaker or CircuitBreaker(on_open=lambda reason: self.metrics.incr("circuit.opened"))
        self._sleep = sleep
        self._timeout = (config.connect_timeout, config.read_timeout)
        self._origin = origin_of(config.org_url)

    def close(self) -> None:
        self.session.close()

    # -- URLs ---------------------------------------------------------------------------------------------------
    def url_for(self, path_or_url: str) -> str:
        """The one place that builds request URLs: relative paths join the org URL; absolute URLs must be the org's."""
        if path_or_url.startswith("/"):
            return self.config.org_url + path_or_url
        self.check_same_origin(path_or_url)
        return path_or_url

    def check_same_origin(self, url: str) -> None:
        """Decided as the HTTP stack will connect (see `links.origin_of`); the error never repeats the URL."""
        if origin_of(url) != self._origin:
            raise UnsafeUrlError(
                f"refusing to send the access token to another host: only {self.config.org_url} is trusted "
                f"(a Link header or redirect pointed elsewhere)"
            )

    # -- requests -----------------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        bucket: str,
        scopes: tuple[str, ...],
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        decode: Callable[[bytes], Any] = json.loads,
        headers: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        """`headers` adds request headers (e.g. `If-Match`); Authorization and DPoP are always the transport's."""
        url = self.url_for(path_or_url)
        resend = method.upper() in SAFE_METHODS
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_attempts) | stop_before_delay(self.config.max_retry_time),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, _RetryableFailure) and (resend or not exc.sent)),
            before_sleep=self._before_sleep(method, url),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_with_token(method, url, bucket, scopes, params, json_body, decode, headers)
        except OktaApiError as error:
            _log_api_failure(error)
            raise
        except _RetryableFailure as failure:
            if isinstance(failure.error, OktaApiError):
                _log_api_failure(failure.error)
            if failure.sent and not resend:
                raise OutcomeUnknownError(
                    f"{method} {urlsplit(url).path}: {failure.reason} after the request was sent; it may have taken effect"
                ) from None
            raise failure.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _RetryableFailure) and failure.wait is not None:
            return failure.wait
        return wait_random_exponential(multiplier=0.5, max=30)(state)

    def _before_sleep(self, method: str, url: str) -> Callable[[RetryCallState], None]:
        path = urlsplit(url).path

        def log_retry(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            self.stats.count("retries")
            self.metrics.incr("api.retries")
            log.warning(
                "%s %s: %s; retry %d/%d in %.1fs",
                method, path, getattr(failure, "reason", failure), state.attempt_number, self.config.max_attempts - 1, seconds,
            )

        return log_retry

    def _send_with_token(self, method, url, bucket, scopes, params, json_body, decode=json.loads,
                         extra_headers=None) -> ApiResponse:
        token = self.tokens.get(scopes)
        response, content = self._send_once(method, url, bucket, token, params, json_body, extra_headers)
        if response.status_code == 401 and token.is_dpop and response.headers.get("DPoP-Nonce"):
            # The resource server asks for (a new) nonce: the proof is rebuilt with it once.
            response, content = self._send_once(method, url, bucket, token, params, json_body, extra_headers)
        if response.status_code == 401 and _is_invalid_token(response, content):
            log.info("%s %s: access token refused (401); refreshing it once", method, urlsplit(url).path)
            self.stats.count("token_refreshes_on_401")
            token = self.tokens.get(scopes, force_refresh=True, stale=token)
            response, content = self._send_once(method, url, bucket, token, params, json_body, extra_headers)
        return self._decode(method, url, response, content, decode, bucket)

    def _send_once(self, method, url, bucket, token: Credential, params, json_body,
                   extra_headers=None) -> tuple[requests.Response, bytes]:
        headers = dict(extra_headers or {})
        token.apply(method, url, headers)
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        probe = self.breaker.before_call()
        try:
            waited = self.rate_limiter.acquire(bucket)
        except RateLimitWaitError as error:
            self.breaker.record(True, probe=probe)
            raise _located(error, method, url) from None
        if waited:
            self.stats.count("rate_limit_wait_seconds", waited)
            self.metrics.timing("rate_limit.wait", waited)
        response_headers = None
        started = time.monotonic()
        deadline = started + self.config.request_deadline
        refused_header = False
        try:
            response = self.session.request(
                method, url, params=params,
                data=json.dumps(json_body, separators=(",", ":")).encode() if json_body is not None else None,
                headers=headers, timeout=self._timeout, allow_redirects=False, stream=True,
            )
            response_headers = response.headers
            try:  # read here so a truncated body is one more retryable failure
                content = read_body(response, deadline=deadline, max_bytes=self.config.max_response_bytes,
                                    read_timeout=self.config.read_timeout)
            finally:
                response.close()
        except requests.exceptions.InvalidHeader:
            refused_header = True  # its message holds the header's value: it must not travel in any traceback
        except requests.exceptions.SSLError as exc:
            self.breaker.record(True, probe=probe)  # not Okta failing: a configuration problem
            raise TLSVerificationError(
                f"TLS verification of {self.config.org_url} failed ({type(exc).__name__}); set the connection's "
                f"ca_bundle to the CA that signed the server's certificate"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            reason = type(exc).__name__
            if time.monotonic() >= deadline:
                reason = f"no complete response within request_deadline ({self.config.request_deadline:g} s)"
            self.breaker.record(False, probe=probe, what=f"{method} {urlsplit(url).path}: {reason}")
            self.metrics.incr("api.connection_errors")
            error_class = RequestDeadlineError if reason.startswith("no complete") else OktaConnectionError
            raise _RetryableFailure(
                reason, error=error_class(f"{method} {urlsplit(url).path}: {reason} after retries"),
                sent=_request_was_sent(exc),
            ) from None
        except ResponseLimitError:
            self.breaker.record(True, probe=probe)
            raise
        finally:
            self.rate_limiter.release(bucket, response_headers)
        if refused_header:
            self.breaker.record(True, probe=probe)
            raise OktaSyncError(f"{method} {urlsplit(url).path}: a request header holds a character HTTP forbids "
                                 f"(CR, LF or a control character); nothing was sent")
        self.stats.count_status(response.status_code)
        status = response.status_code
        self.breaker.record(status < 500, probe=probe, what=f"{method} {urlsplit(url).path}: HTTP {status}")
        self.metrics.incr(f"api.responses.{status // 100}xx")
        self.metrics.incr(f"api.status.{status}")
        self.metrics.timing(f"api.latency.{bucket}", time.monotonic() - started)
        token.observe(url, response.headers)
        if response.is_redirect:
            self.check_same_origin(response.headers.get("Location", ""))
        return response, content

    def _decode(
        self, method: str, url: str, response: requests.Response, content: bytes,
        decode: Callable[[bytes], Any] = json.loads, bucket: str | None = None,
    ) -> ApiResponse:
        status = response.status_code
        path = urlsplit(url).path
        if status >= 400 or 300 <= status < 400:
            error = api_error(status=status, method=method, path=path, headers=response.headers, content=content)
            if status in RETRYABLE_STATUS:
                wait = None
                if status == 429:
                    self.stats.count("rate_limited")
                    self.metrics.incr("api.rate_limited")
                    try:
                        wait = self.rate_limiter.wait_for_reset(response.headers, bucket=bucket)
                    except RateLimitWaitError as too_long:
                        raise _located(too_long, method, url) from None
                raise _RetryableFailure(f"HTTP {status} {error.error_code or ''}".strip(), wait=wait, error=error)
            raise error
        try:
            data = decode(content) if content else None
        except ValueError:
            reason = f"HTTP {status} with a body that is not valid JSON ({len(content)} bytes)"
            raise _RetryableFailure(
                reason, error=OktaConnectionError(f"{method} {path}: {reason} after retries"), sent=True
            ) from None
        return ApiResponse(status=status, headers=response.headers, data=data, url=url)

    # -- paging -------------------------------------------------------------------------------------------------
    def iter_pages(
        self, path: str, *, bucket: str, scopes: tuple[str, ...], params: Mapping[str, Any] | None = None,
        decode: Callable[[bytes], Any] = json.loads,
    ) -> Iterator[ApiResponse]:
        """Each page in turn, following `Link: rel="next"`; one page in memory at a time.

        The next URL is rebuilt from the org URL, `path` and the link's cursor (`links.next_page_url`). Paging stops
        with `ResponseLimitError` when a cursor comes back a second time or after `max_pages` pages.
        """
        url: str | None = self.url_for(path)
        page_path = urlsplit(url).path
        cursors = {cursor_of(requests.Request("GET", url, params=params).prepare().url or url)}
        pages = 0
        while url is not None:
            page = self.request("GET", url, bucket=bucket, scopes=scopes, params=params, decode=decode)
            pages += 1
            yield page
            link = page.link("next")
            del page  # the consumer has it: holding it through the next request keeps two pages alive (memory, GC)
            if link is None:
                return
            url, params = next_page_url(link, org_url=self.config.org_url, path=page_path), None
            cursor = cursor_of(url)
            if cursor in cursors:
                raise ResponseLimitError(
                    f"paging loop: the server sent a next link whose cursor was already followed (page {pages} of "
                    f"GET {page_path}); stopping instead of paging forever", setting="max_pages",
                )
            cursors.add(cursor)
            if pages >= self.config.max_pages:
                raise ResponseLimitError(
                    f"GET {page_path}: still a next page after {pages} pages, the max_pages cap; stopping (raise the "
                    f"connection's max_pages if the org really holds that many)", setting="max_pages",
                )


def _located(error: RateLimitWaitError, method: str, url: str) -> RateLimitWaitError:
    return RateLimitWaitError(bucket=error.bucket, seconds=error.seconds, max_wait=error.max_wait, method=method,
                              path=urlsplit(url).path, error_code=error.error_code, request_id=error.request_id)


def _request_was_sent(exc: requests.exceptions.RequestException) -> bool:
    """False only when the connection was never made (nothing reached the server); True when unsure."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, urllib3.exceptions.NewConnectionError)


def _log_api_failure(error: OktaApiError) -> None:
    """One line a person can act on, with Okta's identifiers; never a header, token or body."""
    log.warning(
        "Okta API failure: %s %s -> HTTP %s errorCode=%s errorSummary=%r errorId=%s X-Okta-Request-Id=%s",
        error.method, error.path, error.status, error.error_code, error.error_summary, error.error_id, error.request_id,
    )


def _is_invalid_token(response: requests.Response, content: bytes) -> bool:
    auth = www_authenticate_params(response.headers)
    if auth.get("error") == "invalid_token":
        return True
    return b"E0000011" in content[:512]
