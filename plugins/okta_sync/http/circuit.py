"""A circuit breaker: when Okta keeps failing, stop calling for a cool-down instead of burning every retry.

Closed: calls flow; each outcome is recorded (5xx, timeouts and connection errors are failures; 2xx-4xx are not:
Okta answered). When at least `failure_ratio` of the last `window` calls failed (and `min_calls` were made), the
breaker opens: calls fail at once with `CircuitOpenError` saying why and when calls resume. After the cool-down one
probe call goes through (the others wait for its outcome); success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timezone

from okta_sync.clock import SYSTEM_CLOCK, Clock
from okta_sync.errors import CircuitOpenError
from okta_sync.metrics import Metrics, NoMetrics

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        window: int = 20,
        failure_ratio: float = 0.5,
        min_calls: int = 10,
        cool_down: float = 60.0,
        probe_timeout: float = 120.0,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
    ):
        self.window, self.failure_ratio, self.min_calls = window, failure_ratio, min_calls
        self.cool_down, self.probe_timeout = cool_down, probe_timeout
        self._clock, self._wall = clock.monotonic, clock.time
        self.metrics = metrics or NoMetrics()
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._cond = threading.Condition()
        self.state = CLOSED
        self.reason = ""
        self._open_until = 0.0
        self._probing = False

    def before_call(self) -> bool:
        """Raise CircuitOpenError while open; return True when this call is the probe."""
        with self._cond:
            while True:
                if self.state == CLOSED:
                    return False
                if self.state == OPEN:
                    if self._clock() < self._open_until:
                        self.metrics.incr("circuit.rejected")
                        raise self._error()
                    self.state, self._probing = HALF_OPEN, True
                    return True
                # half open: wait (bounded) for the probe's outcome
                if not self._cond.wait_for(lambda: self.state != HALF_OPEN, timeout=self.probe_timeout):
                    self.metrics.incr("circuit.rejected")
                    raise self._error()

    def record(self, ok: bool, *, probe: bool = False, what: str = "") -> None:
        with self._cond:
            if probe:
                if ok:
                    self.state, self.reason = CLOSED, ""
                    self._outcomes.clear()
                else:
                    self._open(f"the probe call after the cool-down failed too ({what})")
                self._probing = False
                self._cond.notify_all()
                return
            if self.state != CLOSED:
                return  # a call that was in flight when the breaker opened
            self._outcomes.append(ok)
            failures = self._outcomes.count(False)
            if (len(self._outcomes) >= self.min_calls
                    and failures >= self.failure_ratio * len(self._outcomes)):
                self._open(f"{failures} of the last {len(self._outcomes)} calls to Okta failed (5xx, timeouts or "
                           f"connection errors; last: {what})")

    def _open(self, reason: str) -> None:
        self.state, self.reason = OPEN, reason
        self._open_until = self._clock() + self.cool_down
        self._outcomes.clear()
        self.metrics.incr("circuit.opened")

    def _error(self) -> CircuitOpenError:
        resume = self._wall() + max(self._open_until - self._clock(), 0.0)
        at = datetime.fromtimestamp(resume, tz=timezone.utc).strftime("%H:%M:%S UTC")
        return CircuitOpenError(
            f"circuit breaker open: {self.reason}. Calls to Okta are paused; the next attempt probes at {at} "
            f"(cool-down {self.cool_down:.0f}s)."
        )
