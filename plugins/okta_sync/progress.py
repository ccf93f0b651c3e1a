"""Progress of long work, logged at most every few seconds: counts so far, rate, headroom and time left."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class Progress:
    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger,
        total: int | None = None,
        every: float = 5.0,
        headroom: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self.total = total
        self.counts: dict[str, int] = {}
        self._log = logger
        self._every = every
        self._headroom = headroom
        self._clock = clock
        self._started = clock()
        self._last_logged = self._started
        self._lock = threading.Lock()

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

    def _message(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        main_name, main_count = next(iter(self.counts.items()), ("items", 0))
        parts = [f"{self.what}: " + ", ".join(f"{v} {k}" for k, v in self.counts.items())]
        parts.append(f"{main_count / elapsed:.1f} {main_name}/s")
        if self.total:
            left = max(self.total - main_count, 0)
            rate = main_count / elapsed
            parts.append(f"{main_count}/{self.total}, about {left / rate:.0f}s left" if rate else f"{main_count}/{self.total}")
        if self._headroom is not None:
            for bucket, state in self._headroom().items():
                parts.append(f"{bucket} rate limit {state['remaining']}/{state['limit']} left")
        return "; ".join(parts)

    def summary(self) -> str:
        with self._lock:
            return self._message(self._clock())
