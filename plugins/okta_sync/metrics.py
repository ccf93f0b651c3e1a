"""The core's one instrumentation channel: counters, timings and live events, to whatever sinks are plugged in.

Every part of a client (transport, rate limiter, circuit breaker, token endpoint and cache, users, push) reports
through the client's `Instruments`: it keeps running totals (what `client.token_requests` or a benchmark reads)
and forwards each measurement to its sinks: the one given at construction (the Airflow layer plugs in Airflow's
`Stats`) and any subscribed for a while (a task's progress log listens for rate-limit waits as they start).

Every name is under the prefix `okta_sync.` (added by the sink):

    token.fetch (timing), token.cache_hit, token.cache_miss, token.requests, token.adopted (a run's shared token),
    token.refreshed_on_401, token.responses.2xx|4xx|5xx, token.status.<code>, token.retries, token.rate_limited
    api.responses.2xx|4xx|5xx, api.status.<code>, api.latency.<bucket> (timing)
    api.retries, api.rate_limited (429s), rate_limit.wait (timing), api.connection_errors
    circuit.opened, circuit.rejected
    users.listed, changes.applied|unchanged|skipped|failed|dry_run|not_attempted

Events (not sent to StatsD; for live logs): `rate_limit.wait_started` with `bucket` (None after a 429) and `seconds`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

PREFIX = "okta_sync"
RATE_LIMIT_WAIT_STARTED = "rate_limit.wait_started"

log = logging.getLogger(__name__)


class Metrics(Protocol):
    """A sink: what `Instruments` forwards to. `event` is optional (see `NoMetrics`)."""

    def incr(self, name: str, count: int = 1) -> None: ...
    def timing(self, name: str, seconds: float) -> None: ...


class NoMetrics:
    """A sink that drops everything; subclass it to listen to only some of the channel."""

    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, seconds: float) -> None:
        pass

    def event(self, name: str, **fields: Any) -> None:
        pass


class RecordingMetrics(NoMetrics):
    """In-memory sink for tests and benchmarks: every timing kept (unbounded: not for production)."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.timings: dict[str, list[float]] = {}

    def incr(self, name: str, count: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + count

    def timing(self, name: str, seconds: float) -> None:
        self.timings.setdefault(name, []).append(seconds)


class Instruments:
    """The channel: running totals (bounded: one number per name) plus fan-out to the sinks.

    A sink that raises is logged and skipped: instrumentation never breaks a request.
    """

    def __init__(self, *sinks: Metrics):
        self._sinks: tuple[Metrics, ...] = sinks
        self._lock = threading.Lock()
        self.counters: dict[str, float] = {}
        self.seconds: dict[str, float] = {}  # total seconds per timing name

    @classmethod
    def of(cls, metrics: "Metrics | Instruments | None") -> "Instruments":
        """`metrics` itself when it is already a channel, else a channel forwarding to it."""
        if isinstance(metrics, Instruments):
            return metrics
        return cls(*(() if metrics is None else (metrics,)))

    @property
    def sinks(self) -> tuple[Metrics, ...]:
        return self._sinks

    def incr(self, name: str, count: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + count
        self._forward("incr", name, count)

    def timing(self, name: str, seconds: float) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + 1
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self._forward("timing", name, seconds)

    def event(self, name: str, **fields: Any) -> None:
        for sink in self._sinks:
            handler = getattr(sink, "event", None)
            if handler is not None:
                self._call(handler, name, **fields)

    def count(self, name: str) -> float:
        """How many times `name` was counted (for a timing: how many timings) so far."""
        with self._lock:
            return self.counters.get(name, 0)

    def total(self, prefix: str) -> float:
        """The sum of every counter whose name starts with `prefix` (e.g. `api.responses.`)."""
        with self._lock:
            return sum(value for name, value in self.counters.items() if name.startswith(prefix))

    @contextmanager
    def subscribed(self, sink: Metrics) -> Iterator[Metrics]:
        """Forward to `sink` too while the block runs (a task's progress log)."""
        with self._lock:
            self._sinks = (*self._sinks, sink)
        try:
            yield sink
        finally:
            with self._lock:
                self._sinks = tuple(s for s in self._sinks if s is not sink)

    def _forward(self, method: str, name: str, value: float) -> None:
        for sink in self._sinks:
            self._call(getattr(sink, method), name, value)

    @staticmethod
    def _call(handler: Any, *args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a metrics backend or progress log must never break a request
            log.debug("a metrics sink failed; ignored", exc_info=True)
