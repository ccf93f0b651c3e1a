"""The one HTTP path to Okta, for API calls and the token endpoint alike: a keep-alive session, timeouts, rate-limit
pacing, the circuit breaker, one retry engine, one mapping of `requests` exceptions, bounded response bodies.

Retries (one place decides them, `Transport.call`): 429 after the window's reset on the server's clock;
500/502/503/504, connection errors, timeouts and truncated or undecodable bodies with exponential backoff and full
jitter; bounded attempts and total time (a `RetryPolicy`). TLS verification failures and every other 4xx fail at
once. A write (POST, PUT) whose request was sent but whose response was lost or damaged is not re-sent: it raises
`OutcomeUnknownError` and the caller re-reads to learn whether it landed. Authenticated API calls and paging are
`okta_sync.http.authorized`; the token endpoint (`okta_sync.auth.tokens`) sends through `Transport.send` too,
as google-auth refreshes credentials through the same request interface as API calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_before_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from okta_sync.clock import SYSTEM_CLOCK, Clock
from okta_sync.http.circuit import CircuitBreaker
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
from okta_sync.http.deadline import DeadlineAdapter, HeadersDeadline, watching_headers
from okta_sync.http.links import origin_of
from okta_sync.metrics import Instruments, Metrics
from okta_sync.http.ratelimit import RateLimiter
from okta_sync.http.response_body import read_body
from okta_sync.version import USER_AGENT

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API = "api"  # the kind of request whose metrics are `api.*`; the token endpoint's are `token.*`


T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How one call is retried: at most `max_attempts` attempts within `max_retry_time` seconds, waiting a random
    (full-jitter) exponential backoff of at most `max_wait` (and at least `min_wait`) seconds between them; a 429
    waits for its window's reset instead."""

    max_attempts: int
    max_retry_time: float
    min_wait: float = 0.0
    max_wait: float = 30.0

    @classmethod
    def for_api(cls, config: OktaConfig) -> "RetryPolicy":
        return cls(max_attempts=config.max_attempts, max_retry_time=config.max_retry_time)


class TransientFailure(OktaSyncError):
    """One failed attempt that may succeed later. Carries what the final error needs, never the request.
    A signal inside `Transport.call`, never raised out of it (it is an `OktaSyncError` only so that nothing in the
    package raises outside the tree).

    Raised by `Transport.send` (connection errors, timeouts, damaged bodies) and `Transport.transient_status`
    (429, 5xx); `Transport.call` retries it and, once retries are spent, raises `error`."""

    retryable = True

    def __init__(self, reason: str, *, wait: float | None = None, error: OktaSyncError, sent: bool = False,
                 throttled: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.error = error
        self.sent = sent  # the server may have acted on the request (the response was lost or damaged)
        self.throttled = throttled  # refused by Okta's concurrent-request limit: the request itself never ran


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
    adapter = DeadlineAdapter(pool_connections=2, pool_maxsize=max(config.max_concurrency, 4), max_retries=0)
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
    """Paced, bounded, retried requests to one org: no credentials of its own (`authorized.AuthorizedSession`
    adds the access token; the token endpoint adds its client authentication)."""

    def __init__(
        self,
        config: OktaConfig,
        *,
        session: requests.Session | None = None,
        rate_limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.config = config
        self.session = session or build_session(config)
        self.clock = clock
        self.metrics = Instruments.of(metrics)
        self.rate_limiter = rate_limiter or RateLimiter(fraction=config.rate_limit_fraction,
                                                        max_wait=config.max_rate_limit_wait, clock=clock,
                                                        metrics=self.metrics)
        self.breaker = breaker or CircuitBreaker(metrics=self.metrics, clock=clock)
        self.retry_policy = RetryPolicy.for_api(config)
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

    # -- the retry engine -----------------------------------------------------------------------------------------
    def call(self, method: str, url: str, attempt: Callable[[], T], *, policy: RetryPolicy | None = None,
             resend: bool | None = None, kind: str = API) -> T:
        """`attempt()` until it returns, retrying each `TransientFailure` under `policy` (default: the API's).

        `resend` says whether a request that may have reached the server can be sent again (default: only for
        GET, HEAD and OPTIONS); when it cannot, such a failure raises `OutcomeUnknownError`. Once retries are
        spent, the last failure's error is raised. `kind` names the metrics (`api.retries`, `token.retries`).
        """
        policy = policy or self.retry_policy
        resend = method.upper() in SAFE_METHODS if resend is None else resend
        retrying = Retrying(
            stop=_attempts_spent(policy) | stop_before_delay(policy.max_retry_time),
            wait=self._wait(policy),
            retry=retry_if_exception(lambda exc: isinstance(exc, TransientFailure) and (resend or not exc.sent)),
            before_sleep=self._before_sleep(method, url, policy, kind),
            sleep=self.clock.sleep,
            reraise=True,
        )
        try:
            for attempt_state in retrying:
                with attempt_state:
                    return attempt()
        except OktaApiError as error:
            _log_api_failure(error)
            raise
        except TransientFailure as failure:
            if isinstance(failure.error, OktaApiError):
                _log_api_failure(failure.error)
            if failure.sent and not resend:
                raise OutcomeUnknownError(
                    f"{method} {urlsplit(url).path}: {failure.reason} after the request was sent; it may have taken effect"
                ) from None
            raise failure.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
        backoff = wait_random_exponential(multiplier=0.5, min=policy.min_wait, max=policy.max_wait)

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            if isinstance(failure, TransientFailure) and failure.wait is not None:
                return failure.wait
            return backoff(state)

        return wait

    def _before_sleep(self, method: str, url: str, policy: RetryPolicy, kind: str) -> Callable[[RetryCallState], None]:
        path = urlsplit(url).path

        def log_retry(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            self.metrics.incr(f"{kind}.retries")
            if getattr(failure, "throttled", False):
                log.warning("%s %s: %s (concurrency limit; not counted as a failed attempt); retry in %.1fs",
                            method, path, failure.reason, seconds)
                return
            log.warning(
                "%s %s: %s; retry %d/%d in %.1fs",
                method, path, getattr(failure, "reason", failure), _failed_attempts(state), policy.max_attempts - 1,
                seconds,
            )

        return log_retry

    # -- one exchange ---------------------------------------------------------------------------------------------
    def send(
        self,
        method: str,
        url: str,
        *,
        bucket: str,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        data: bytes | Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        breaker: bool = True,
        kind: str = API,
    ) -> tuple[requests.Response, bytes]:
        """One request and its whole body, read within `request_deadline` and `max_bytes` (default:
        `max_response_bytes`): paced by the rate limiter, guarded by the circuit breaker (unless `breaker=False`),
        `requests` exceptions mapped to ours. The response is closed; its status and headers stay readable.
        `kind` names the metrics: `api.responses.2xx`, `api.status.200`, `api.latency.<bucket>` for API calls,
        `token.responses.2xx`, `token.status.200` for the token endpoint.

        Raises `TransientFailure` for connection errors, timeouts and damaged bodies, `TLSVerificationError`,
        `ResponseLimitError`, `RateLimitWaitError` and `CircuitOpenError`.
        """
        path = urlsplit(url).path
        probe = self.breaker.before_call() if breaker else False
        record = self.breaker.record if breaker else _not_recorded
        try:
            waited = self.rate_limiter.acquire(bucket)
        except RateLimitWaitError as error:
            record(True, probe=probe)
            raise _located(error, method, url) from None
        if waited:
            self.metrics.timing("rate_limit.wait", waited)
        response_headers = None
        started = self.clock.monotonic()
        deadline = started + self.config.request_deadline
        headers_cut = HeadersDeadline.after(self.config.request_deadline)  # the watchdog's, on the real clock
        refused_header = False
        try:
            with watching_headers(headers_cut):
                response = self.session.request(
                    method, url, params=params, data=data, headers=headers, timeout=self._timeout,
                    allow_redirects=False, stream=True,
                )
            response_headers = response.headers
            try:  # read here so a truncated body is one more retryable failure
                if headers_cut.passed:  # the socket was shut mid-headers: what was parsed is not the response
                    raise requests.exceptions.ReadTimeout("request deadline passed while reading the headers")
                content = read_body(response, deadline=deadline,
                                    max_bytes=self.config.max_response_bytes if max_bytes is None else max_bytes,
                                    read_timeout=self.config.read_timeout, monotonic=self.clock.monotonic)
            finally:
                response.close()
        except requests.exceptions.InvalidHeader:
            refused_header = True  # its message holds the header's value: it must not travel in any traceback
        except requests.exceptions.SSLError as exc:
            record(True, probe=probe)  # not Okta failing: a configuration problem
            raise TLSVerificationError(
                f"TLS verification of {self.config.org_url} failed ({type(exc).__name__}); set the connection's "
                f"ca_bundle to the CA that signed the server's certificate"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            reason = type(exc).__name__
            if headers_cut.passed or self.clock.monotonic() >= deadline:
                reason = f"no complete response within request_deadline ({self.config.request_deadline:g} s)"
            record(False, probe=probe, what=f"{method} {path}: {reason}")
            self.metrics.incr(f"{kind}.connection_errors")
            error_class = RequestDeadlineError if reason.startswith("no complete") else OktaConnectionError
            raise TransientFailure(
                reason, error=error_class(f"{method} {path}: {reason} after retries"), sent=_request_was_sent(exc),
            ) from None
        except ResponseLimitError:
            record(True, probe=probe)
            raise
        finally:
            self.rate_limiter.release(bucket, response_headers)
        if refused_header:
            record(True, probe=probe)
            raise OktaSyncError(f"{method} {path}: a request header holds a character HTTP forbids "
                                f"(CR, LF or a control character); nothing was sent")
        status = response.status_code
        record(status < 500, probe=probe, what=f"{method} {path}: HTTP {status}")
        if status < 400:
            self.rate_limiter.concurrency_ok()
        self.metrics.incr(f"{kind}.responses.{status // 100}xx")
        self.metrics.incr(f"{kind}.status.{status}")
        if kind == API:
            self.metrics.timing(f"api.latency.{bucket}", self.clock.monotonic() - started)
        if response.is_redirect:
            self.check_same_origin(response.headers.get("Location", ""))
        return response, content

    def transient_status(self, method: str, url: str, status: int, headers: Mapping[str, str],
                         error: OktaSyncError, bucket: str, kind: str = API) -> TransientFailure | None:
        """The retryable failure for a 429 or 5xx answer (a 429 waits for its window's reset on the server's clock,
        or raises `RateLimitWaitError` when that is too far), None for any other status."""
        if status not in RETRYABLE_STATUS:
            return None
        wait = None
        if status == 429:
            self.metrics.incr(f"{kind}.rate_limited")
            try:
                wait = self.rate_limiter.wait_for_reset(headers, bucket=bucket)
            except RateLimitWaitError as too_long:
                raise _located(too_long, method, url) from None
        code = getattr(error, "error_code", None) or getattr(error, "error", None) or ""
        throttled = status == 429 and self.rate_limiter.refuses_concurrency(headers)
        return TransientFailure(f"HTTP {status} {code}".strip(), wait=wait, error=error, throttled=throttled)


# Refusals by Okta's concurrent-request limit are retried without spending `max_attempts` (the request never ran;
# with the org's concurrency shared, a request can lose the race several times while others get through), up to
# this many per request and within `max_retry_time`.
MAX_THROTTLED_RETRIES = 30


def _failed_attempts(state: RetryCallState) -> int:
    return state.attempt_number - getattr(state, "throttled", 0)


def _attempts_spent(policy: RetryPolicy) -> stop_base:
    """Stop after `max_attempts` failed attempts; refusals of concurrency count apart, up to MAX_THROTTLED_RETRIES."""

    class _Stop(stop_base):
        def __call__(self, state: RetryCallState) -> bool:
            failure = state.outcome.exception() if state.outcome else None
            if getattr(failure, "throttled", False):
                state.throttled = getattr(state, "throttled", 0) + 1
                return state.throttled > MAX_THROTTLED_RETRIES
            return _failed_attempts(state) >= policy.max_attempts

    return _Stop()


def _not_recorded(ok: bool, *, probe: bool = False, what: str = "") -> None:
    """Calls that bypass the circuit breaker record nothing in it."""


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
    """One line a person can act on, with Okta's identifiers (escaped by the error: `server_text`); never a header,
    token or body."""
    log.warning(
        "Okta API failure: %s %s -> HTTP %s errorCode=%s errorSummary=\"%s\" errorId=%s X-Okta-Request-Id=%s",
        error.method, error.path, error.status, error.error_code, error.error_summary, error.error_id, error.request_id,
    )

