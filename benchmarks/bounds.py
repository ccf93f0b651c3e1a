"""The ideal client's time under Okta's fixed one-minute windows, for a run's actual start.

The ideal client starts a request whenever fewer than `concurrency` are in flight and the window the request is
counted in (the epoch minute it reaches the server) still has room; each takes `latency` seconds. The last
completion minus the start is the bound: nothing that respects the bucket and the concurrency cap can be faster.
"""

from __future__ import annotations

import heapq
import math


def windowed_bound(requests: int, start: float, limit: int, concurrency: int, latency: float,
                   *, requests_per_unit: int = 1, window: float = 60.0) -> float:
    """Seconds from `start` until `requests` units are done. A unit holds a worker for `requests_per_unit`
    sequential round trips and counts once in the bucket (a push's update after its re-read)."""
    busy: list[float] = []  # completion times of units in flight
    counts: dict[int, int] = {}
    now, last = start, start
    duration = latency * requests_per_unit
    for _ in range(requests):
        while True:
            while busy and busy[0] <= now:
                heapq.heappop(busy)
            if len(busy) >= concurrency:
                now = busy[0]
                continue
            counted_at = now + latency * (requests_per_unit - 1)  # the bucketed request is the unit's last
            minute = math.floor(counted_at / window)
            if limit and counts.get(minute, 0) >= limit:
                now = (minute + 1) * window - latency * (requests_per_unit - 1)
                continue
            counts[minute] = counts.get(minute, 0) + 1
            heapq.heappush(busy, now + duration)
            last = max(last, now + duration)
            break
    return last - start
