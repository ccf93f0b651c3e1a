"""Progress of long work, logged at most every few seconds: counts so far, rate, headroom and time left.

While the client waits for a rate-limit window to reset nothing advances, so a timer logs instead (which bucket,
how long, every `wait_every` seconds). The time left is the current wait plus the remaining work at the rate seen
while not waiting, and never less than the rate limit allows: `n` more requests in a bucket of `limit` per
minute need at least `ceil(n / limit) - 1` more one-minute windows.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from okta_sync.metrics import RATE_LIMIT_WAIT_STARTED, NoMetrics

WINDOW_SECONDS = 60  # Okta's rate-limit windows are one minute long


class Progress(NoMetrics):
    """A progress log; also a sink of the client's instrumentation channel (`Instruments.subscribed`), from which
    it hears of rate-limit waits as they start."""

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger,
        total: int | None = None,
        every: float = 5.0,
        wait_every: float = 10.0,
        headroom: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self.total = total
        self.counts: dict[str, int] = {}
        self._log = logger
        self._every = every
        self._wait_every = wait_every
        self._headroom = headroom
        self._clock = clock
        self._started = clock()
        self._last_logged = self._started
        self._lock = threading.Lock()
        self._waits: dict[str, tuple[float, float]] = {}  # bucket -> (started, ends), on self._clock
        self._waited = 0.0  # seconds spent in finished waits (counted once, however many threads waited)
        self._timer: threading.Thread | None = None
        self._closed = threading.Event()

    def advance(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self.counts[name] = self.counts.get(name, 0) + amount
            now = self._clock()
            if now - self._last_logged < self._every:
                return
            self._last_logged = now
            message = self._message(now)
        self._log.info(message)

    # -- rate-limit waits -------------------------------------------------------------------------------------
    def event(self, name: str, **fields: Any) -> None:
        if name == RATE_LIMIT_WAIT_STARTED:
            self.on_wait(fields.get("bucket"), fields.get("seconds", 0.0))

    def on_wait(self, bucket: str | None, seconds: float) -> None:
        """A rate-limit wait is starting (`rate_limit.wait_started`): log it now, then every `wait_every`."""
        name = bucket or "refused (429)"
        with self._lock:
            now = self._clock()
            self._expire_waits(now)
            current = self._waits.get(name)
            ends = now + seconds
            if current is not None and ends <= current[1] + 1:
                return  # another thread of the same wait
            self._waits[name] = (current[0] if current else now, max(ends, current[1] if current else ends))
            message = self._wait_message(now)
            start_timer = self._timer is None or not self._timer.is_alive()
            if start_timer:
                self._timer = threading.Thread(target=self._tick, name=f"{self.what}-progress", daemon=True)
        self._log.info(message)
        if start_timer:
            self._timer.start()

    def close(self) -> None:
        self._closed.set()

    def _tick(self) -> None:
        while not self._closed.wait(self._wait_every):
            with self._lock:
                now = self._clock()
                self._expire_waits(now)
                if not self._waits:
                    self._timer = None
                    return
                message = self._wait_message(now)
                self._last_logged = now
            self._log.info(message)

    def _expire_waits(self, now: float) -> None:
        for name, (started, ends) in list(self._waits.items()):
            if ends <= now:
                self._waited += ends - started
                del self._waits[name]

    def _waiting_seconds(self, now: float) -> tuple[float, float]:
        """(seconds spent waiting so far, seconds of the current wait still ahead)."""
        ongoing = [(started, ends) for started, ends in self._waits.values()]
        spent = self._waited + sum(min(now, ends) - started for started, ends in ongoing)
        ahead = max((ends - now for _, ends in ongoing), default=0.0)
        return spent, max(ahead, 0.0)

    def _wait_message(self, now: float) -> str:
        waits = ", ".join(f"the {name} rate limit ({max(ends - now, 0):.0f}s of {ends - started:.0f}s left)"
                          for name, (started, ends) in self._waits.items())
        return f"{self.what}: waiting for {waits} to reset; " + self._done_and_left(now)

    # -- the regular line --------------------------------------------------------------------------------------
    def _main(self) -> tuple[str, int]:
        return next(iter(self.counts.items()), ("items", 0))

    def _done_and_left(self, now: float) -> str:
        main_name, main_count = self._main()
        done = f"{main_count}/{self.total} {main_name}" if self.total else f"{main_count} {main_name}"
        left = self._seconds_left(now)
        return done + (f", about {_duration(left)} left" if left is not None else "")

    def _seconds_left(self, now: float) -> float | None:
        _, main_count = self._main()
        if not self.total or not main_count:
            return None
        remaining = max(self.total - main_count, 0)
        spent_waiting, wait_ahead = self._waiting_seconds(now)
        working = max(now - self._started - spent_waiting, 1e-9)
        work = remaining / (main_count / working)
        limits = [state["limit"] for state in self._headroom().values() if state.get("limit")] if self._headroom else []
        if limits and remaining:
            per_window = min(limits)
            work = max(work, (math.ceil(remaining / per_window) - 1) * WINDOW_SECONDS)
        return wait_ahead + work

    def _message(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        main_name, main_count = self._main()
        parts = [f"{self.what}: " + ", ".join(f"{v} {k}" for k, v in self.counts.items())]
        parts.append(f"{main_count / elapsed:.1f} {main_name}/s")
        if self.total:
            left = self._seconds_left(now)
            parts.append(f"{main_count}/{self.total}" + (f", about {_duration(left)} left" if left is not None else ""))
        if self._headroom is not None:
            for bucket, state in self._headroom().items():
                parts.append(f"{bucket} rate limit {state['remaining']}/{state['limit']} left")
        return "; ".join(parts)

    def summary(self) -> str:
        with self._lock:
            return self._message(self._clock())


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
