"""Okta-style rate limits: per-bucket counts over fixed one-minute windows, and a cap on requests in flight."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch second at which the window ends
    reason: str | None = None  # "rate_limit" or "concurrency" when refused


class RateLimiter:
    def __init__(self, limits: dict[str, int], default_limit: int, concurrency_limit: int, window_seconds: int = 60):
        self.lock = threading.Lock()
        self.window_seconds = window_seconds  # epoch-aligned, like Okta's minutes
        self.limits = dict(limits)
        self.default_limit = default_limit
        self.concurrency_limit = concurrency_limit
        self.window = 0
        self.counts: dict[str, int] = {}
        self.in_flight = 0
        self.peak = 0

    def limit_for(self, bucket: str) -> int:
        return self.limits.get(bucket, self.default_limit)

    def configure(self, limits: dict[str, int] | None = None, default_limit: int | None = None,
                  concurrency_limit: int | None = None) -> None:
        with self.lock:
            if limits:
                self.limits.update(limits)
            if default_limit is not None:
                self.default_limit = default_limit
            if concurrency_limit is not None:
                self.concurrency_limit = concurrency_limit

    def forget_counts(self) -> None:
        """Forget what the current window counted: the next request meets a window nobody has used (benchmarks
        start each run at a chosen second of a fresh window without waiting out a minute)."""
        with self.lock:
            self.counts = {}

    def enter(self, bucket: str) -> Verdict:
        """Count a request; call leave() afterwards whatever the verdict."""
        now = time.time()
        window = int(now // self.window_seconds)
        reset = (window + 1) * self.window_seconds
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if window != self.window:
                self.window, self.counts = window, {}
            limit = self.limits.get(bucket, self.default_limit)
            if self.concurrency_limit and self.in_flight > self.concurrency_limit:
                # Okta reports the concurrent values in the headers while the cap is exceeded.
                return Verdict(False, self.concurrency_limit, 0, int(now) + 1, "concurrency")
            used = self.counts.get(bucket, 0) + 1
            self.counts[bucket] = used
            if not limit:
                return Verdict(True, 0, 0, reset)
            if used > limit:
                return Verdict(False, limit, 0, reset, "rate_limit")
            return Verdict(True, limit, limit - used, reset)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def reset_peak(self) -> None:
        with self.lock:
            self.peak = self.in_flight
