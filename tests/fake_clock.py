"""A `Clock` whose sleeps return at once and count as time that passed: tests inject it instead of patching."""

from __future__ import annotations

import time
from collections.abc import Callable

from okta_sync.clock import Clock


class FakeClock(Clock):
    """Real time plus every second slept or `advance`d, so retries and rate-limit waits happen instantly while the
    client sees them as elapsed; `frozen=True` stops real time (instants start at `start`, durations at 0).

    `slept` lists each wait asked for; `on_sleep(seconds)` runs first (e.g. to raise when a test forbids waiting).
    """

    def __init__(self, *, start: float | None = None, frozen: bool = False,
                 on_sleep: Callable[[float], None] | None = None):
        self._frozen = frozen
        self._time0 = time.time() if start is None else start
        self._mono0 = time.monotonic()
        self.skipped = 0.0
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    def _real_elapsed(self) -> float:
        return 0.0 if self._frozen else time.monotonic() - self._mono0

    def time(self) -> float:
        return self._time0 + self._real_elapsed() + self.skipped

    def monotonic(self) -> float:
        return (0.0 if self._frozen else self._mono0) + self._real_elapsed() + self.skipped

    def sleep(self, seconds: float) -> None:
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.skipped += seconds
