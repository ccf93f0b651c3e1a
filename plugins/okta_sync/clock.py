"""Time as the core reads it, injected at construction (`OktaClient(config, clock=...)`): the transport, the rate
limiter, the circuit breaker and the token cache ask one `Clock` instead of the `time` module, so a test controls
time by handing in its own clock rather than patching private attributes.
"""

from __future__ import annotations

import time as _time


class Clock:
    """`time()` for instants compared with other machines' clocks (token expiry, `X-Rate-Limit-Reset`),
    `monotonic()` for durations and deadlines, `sleep(seconds)` for every wait (retries, rate-limit pacing)."""

    def time(self) -> float:
        return _time.time()

    def monotonic(self) -> float:
        return _time.monotonic()

    def sleep(self, seconds: float) -> None:
        _time.sleep(seconds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


SYSTEM_CLOCK = Clock()
