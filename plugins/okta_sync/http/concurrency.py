"""How many changes a push keeps in flight: enough to spend a rate-limit bucket early in each window, never more
than a share of Okta's concurrent-request limit.

Little's law: to sustain a rate of R changes per second when each takes T seconds (a re-read then an update), about
R x T must be in flight. R is the bucket's limit over its window (`X-Rate-Limit-Limit`, the ceiling Okta applies to
this app, over one minute; the window is read from `X-Rate-Limit-Reset`), doubled so a window's budget is spent in
its first half as a client with more in flight would (Okta's windows are fixed: budget left at a window's end is
lost). T is the median time of recent changes. The pacing in `RateLimiter` still guards every request, so a
generous count costs threads, not 429s.

The ceiling: Okta limits simultaneous requests per org (75 for Workforce and Customer Identity orgs, 35 on the
Integrator Free plan; https://developer.okta.com/docs/reference/rl2-concurrency), shared by every integration, and
says even large bulk loads rarely need more than 10. `DEFAULT_CEILING` takes a third of the common 75 (below 35),
leaving the rest to other clients.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

OKTA_ORG_CONCURRENCY = 75  # simultaneous API requests per org (Workforce / Customer Identity default)
DEFAULT_CEILING = 24
_SAMPLES = 32
_HEADROOM = 2.0
_LONGEST_WINDOW = 60.0  # Okta counts in one-minute windows
_RECHECK_SECONDS = 0.05


class AdaptiveConcurrency:
    """The in-flight target for one push: starts at `initial` and rises with observed change times and the bucket
    (never below `initial`: fewer in flight would only finish each window's budget later)."""

    def __init__(self, initial: int, ceiling: int = DEFAULT_CEILING, *, rate_limiter: Any = None,
                 bucket: str = "user_update"):
        if initial < 1 or ceiling < 1:
            raise ValueError("concurrency must be at least 1")
        self.initial = min(initial, ceiling)
        self.ceiling = ceiling
        self.rate_limiter = rate_limiter
        self.bucket = bucket
        self._times: deque[float] = deque(maxlen=_SAMPLES)
        self._window = 0.0  # the longest time-to-reset seen: a window's length, read from Okta's headers
        self._lock = threading.Lock()
        self._gate = threading.Condition()
        self._active = 0
        self.peak_target = self.initial
        self.peak_active = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `target()` places in flight for the duration of a change."""
        with self._gate:
            while self._active >= self.target():
                self._gate.wait(_RECHECK_SECONDS)  # the target may grow while we wait (a new header, a new time)
            self._active += 1
            self.peak_active = max(self.peak_active, self._active)
        try:
            yield
        finally:
            with self._gate:
                self._active -= 1
                self._gate.notify_all()

    def observe(self, seconds: float) -> None:
        """One change took `seconds` from its re-read to its update's response."""
        with self._lock:
            self._times.append(seconds)

    def target(self) -> int:
        """How many changes to keep in flight now."""
        with self._lock:
            if not self._times:
                return self.initial
            per_change = statistics.median(self._times)
        rate = self._bucket_rate()
        if rate is None:  # no limit reported (or none yet): latency alone bounds the push
            wanted = self.ceiling
        else:
            wanted = math.ceil(_HEADROOM * rate * per_change)
        target = max(self.initial, min(self.ceiling, wanted))  # never below the configured start
        self.peak_target = max(self.peak_target, target)
        return target

    def _bucket_rate(self) -> float | None:
        """Requests per second the bucket allows this app, or None when unknown or unlimited."""
        limiter = self.rate_limiter
        snapshot = limiter.snapshot(self.bucket) if limiter is not None else None
        if snapshot is None or snapshot.limit <= 0:
            return None
        left = snapshot.reset - limiter.server_clock.now()
        with self._lock:
            self._window = min(_LONGEST_WINDOW, max(self._window, math.ceil(left)))
            window = self._window or _LONGEST_WINDOW
        usable = snapshot.limit * getattr(limiter, "fraction", 1.0)
        if usable >= 1_000_000:  # a server that reports no real limit
            return None
        return usable / window
