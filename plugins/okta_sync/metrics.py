"""Metrics the core emits, to whatever sink the caller plugs in (the Airflow layer plugs in Airflow's `Stats`).

Every name is under the prefix `okta_sync.` (added by the sink):

    token.fetch (timing), token.cache_hit, token.cache_miss
    api.responses.2xx|4xx|5xx, api.status.<code>, api.latency.<bucket> (timing)
    api.retries, api.rate_limited (429s), rate_limit.wait (timing), api.connection_errors
    circuit.opened, circuit.rejected
    users.listed, changes.applied|unchanged|skipped|failed|dry_run|not_attempted
"""

from __future__ import annotations

from typing import Protocol

PREFIX = "okta_sync"


class Metrics(Protocol):
    def incr(self, name: str, count: int = 1) -> None: ...
    def timing(self, name: str, seconds: float) -> None: ...


class NoMetrics:
    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, seconds: float) -> None:
        pass


class RecordingMetrics:
    """In-memory sink for tests and benchmarks."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.timings: dict[str, list[float]] = {}

    def incr(self, name: str, count: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + count

    def timing(self, name: str, seconds: float) -> None:
        self.timings.setdefault(name, []).append(seconds)
