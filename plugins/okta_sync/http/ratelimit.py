"""Okta rate-limit state: per-bucket `X-Rate-Limit-*` headers read against the server's own clock.

Okta counts requests in fixed one-minute windows; `X-Rate-Limit-Reset` is the epoch second the window ends. A
client that only reacts to 429s causes 429 storms in long syncs, so `RateLimiter.acquire` paces before sending: it
counts the requests in flight against the last `Remaining` it saw, keeps the configured fraction of the bucket for
other apps, and waits for the window's end (on the server's clock, from `Date`) once its share is spent.

No wait is longer than `max_wait` (a minute or two): a window that ends later (a server announcing a reset 30 days
ahead, or a clock gone wrong) raises `RateLimitWaitError` naming the bucket instead of parking the task.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from okta_sync.clock import SYSTEM_CLOCK, Clock
from okta_sync.errors import RateLimitWaitError
from okta_sync.metrics import RATE_LIMIT_WAIT_STARTED, Instruments, NoMetrics

# A 429 whose window resets this soon refused concurrency (Okta's concurrent-request limit), not a minute's budget.
CONCURRENCY_RESET_SECONDS = 2.0
MAX_CAPPED_CONCURRENCY = 256  # past this, the cap is lifted
DEFAULT_MAX_WAIT = 120.0  # Okta's windows are one minute; twice that covers a clock skew and a concurrency reset


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def server_time(headers: Mapping[str, str]) -> float | None:
    """The server's clock from `Date` (1 s resolution), or None when absent or malformed."""
    value = headers.get("Date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


@dataclass
class RateLimitSnapshot:
    limit: int
    remaining: int
    reset: int  # epoch seconds, server clock


class ServerClock:
    """Local time translated to the server's clock.

    `Date` truncates to whole seconds, so each sample can only be behind the truth: the largest recent offset is
    the best estimate, and waiting until `reset` on this clock never wakes up early.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK):
        self._clock = clock.time
        self._offset: float | None = None
        self._sampled_at = 0.0
        self._lock = threading.Lock()

    def observe(self, headers: Mapping[str, str]) -> None:
        server = server_time(headers)
        if server is None:
            return
        local = self._clock()
        offset = server - local
        with self._lock:
            stale = local - self._sampled_at > 300
            if self._offset is None or stale or offset > self._offset:
                self._offset = offset
                self._sampled_at = local

    @property
    def observed(self) -> bool:
        """Whether a `Date` was ever read: before that, `now` is the local clock."""
        return self._offset is not None

    def now(self) -> float:
        return self._clock() + (self._offset or 0.0)

    def seconds_until(self, server_epoch: float) -> float:
        return server_epoch - self.now()


class RateLimiter:
    """Per-bucket pacing shared by every thread of one client."""

    def __init__(
        self,
        *,
        fraction: float = 1.0,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Instruments | NoMetrics | None = None,
        jitter: Callable[[], float] = lambda: random.uniform(0.05, 0.5),
        margin: Callable[[], float] = lambda: random.uniform(0.01, 0.05),
    ):
        self.fraction = fraction
        self.max_wait = max_wait
        self.server_clock = ServerClock(clock)
        self.clock = clock
        self._jitter = jitter  # after a 429: spread the retries of every client that was refused
        self._margin = margin  # pacing: the clock estimate is never ahead of the server's, so wake right at reset
        self._buckets: dict[str, RateLimitSnapshot] = {}
        self._in_flight: dict[str, int] = {}
        self._total_in_flight = 0
        # Okta's concurrency limit is org-wide and shared with every other integration: after a 429 that refuses
        # concurrency, requests in flight are capped (halved, then one more per `ceiling` successes: AIMD).
        self._ceiling = math.inf
        self._cond = threading.Condition()
        self.metrics = metrics or NoMetrics()

    def _notify_wait(self, bucket: str | None, seconds: float) -> None:
        """Every wait is announced before it starts (`rate_limit.wait_started`, for progress logs): pacing names
        its bucket, the wait after a 429 passes None."""
        self.metrics.event(RATE_LIMIT_WAIT_STARTED, bucket=bucket, seconds=seconds)

    def snapshot(self, bucket: str) -> RateLimitSnapshot | None:
        with self._cond:
            snap = self._buckets.get(bucket)
            return RateLimitSnapshot(snap.limit, snap.remaining, snap.reset) if snap else None

    def _reserve(self, bucket: str) -> float:
        """Reserve a slot now (returns 0) or say how long to wait on the server clock for the window to end."""
        snap = self._buckets.get(bucket)
        if snap is None or self.server_clock.now() >= snap.reset:
            return self._take(bucket)
        kept_for_others = snap.limit - int(snap.limit * self.fraction)
        usable = snap.remaining - kept_for_others - self._in_flight.get(bucket, 0)
        if usable > 0:
            return self._take(bucket)
        return max(0.0, self.server_clock.seconds_until(snap.reset))

    def _take(self, bucket: str) -> float:
        self._in_flight[bucket] = self._in_flight.get(bucket, 0) + 1
        self._total_in_flight += 1
        return 0.0

    def concurrency_refused(self) -> None:
        """A 429 refused concurrency (its window resets within seconds): halve the requests allowed in flight."""
        with self._cond:
            before = self._ceiling
            self._ceiling = max(1.0, min(self._ceiling, self._total_in_flight + 1) / 2)
            if self._ceiling < before:
                self.metrics.incr("rate_limit.concurrency_reduced")

    def concurrency_ok(self) -> None:
        """A request succeeded: one more request in flight allowed per `ceiling` successes, until uncapped."""
        with self._cond:
            if self._ceiling != math.inf:
                self._ceiling += 1 / self._ceiling
                if self._ceiling > MAX_CAPPED_CONCURRENCY:
                    self._ceiling = math.inf
                self._cond.notify_all()

    @property
    def concurrency_ceiling(self) -> float:
        return self._ceiling

    def acquire(self, bucket: str) -> float:
        """Block until a request in `bucket` may be sent; returns the seconds waited. Raises `RateLimitWaitError`
        when the window ends more than `max_wait` seconds away."""
        waited = 0.0
        started = self.clock.monotonic()
        while True:
            with self._cond:
                while self._total_in_flight >= self._ceiling:  # freed by `release` (requests have deadlines)
                    self._cond.wait(timeout=1.0)
                delay = self._reserve(bucket)
                if delay <= 0 and waited == 0:
                    return 0.0
                if delay <= 0:
                    return waited
                elapsed = self.clock.monotonic() - started
                if elapsed + delay > self.max_wait:
                    raise RateLimitWaitError(bucket=bucket, seconds=elapsed + delay, max_wait=self.max_wait)
            pause = delay + self._margin()
            self._notify_wait(bucket, pause)
            self.clock.sleep(pause)
            waited += pause

    def release(self, bucket: str, headers: Mapping[str, str] | None) -> None:
        """Record the response's headers (if any) and free the in-flight slot taken by `acquire`."""
        with self._cond:
            self._in_flight[bucket] = max(0, self._in_flight.get(bucket, 0) - 1)
            self._total_in_flight = max(0, self._total_in_flight - 1)
            if headers is not None:
                self._observe(bucket, headers)
            self._cond.notify_all()

    def observe(self, bucket: str, headers: Mapping[str, str]) -> None:
        with self._cond:
            self._observe(bucket, headers)

    def _observe(self, bucket: str, headers: Mapping[str, str]) -> None:
        self.server_clock.observe(headers)
        limit = _header_int(headers, "X-Rate-Limit-Limit")
        remaining = _header_int(headers, "X-Rate-Limit-Remaining")
        reset = _header_int(headers, "X-Rate-Limit-Reset")
        if limit is None or remaining is None or reset is None:
            return
        current = self._buckets.get(bucket)
        if current is None or reset > current.reset:
            self._buckets[bucket] = RateLimitSnapshot(limit, remaining, reset)
        elif reset == current.reset:
            # Responses of one window arrive out of order under concurrency: the smallest Remaining is the latest.
            current.remaining = min(current.remaining, remaining)
            current.limit = limit

    def refuses_concurrency(self, headers: Mapping[str, str]) -> bool:
        """Whether a 429 with these headers refused concurrency (its window resets within seconds)."""
        reset = _header_int(headers, "X-Rate-Limit-Reset")
        return reset is not None and self.server_clock.seconds_until(reset) <= CONCURRENCY_RESET_SECONDS

    def wait_for_reset(self, headers: Mapping[str, str], *, bucket: str = "?") -> float:
        """After a 429: seconds to wait until the window named in the headers ends, on the server's clock.
        Raises `RateLimitWaitError` when that is more than `max_wait`."""
        self.server_clock.observe(headers)
        reset = _header_int(headers, "X-Rate-Limit-Reset")
        if reset is None:
            return 0.0
        seconds = max(0.0, self.server_clock.seconds_until(reset))
        if seconds <= CONCURRENCY_RESET_SECONDS:
            self.concurrency_refused()
        if seconds > self.max_wait:
            raise RateLimitWaitError(bucket=bucket, seconds=seconds, max_wait=self.max_wait, error_code="E0000047",
                                     request_id=headers.get("X-Okta-Request-Id"))
        wait = seconds + self._jitter()
        self._notify_wait(None if bucket == "?" else bucket, wait)
        return wait
