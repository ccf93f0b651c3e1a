"""Target 4: pushing at the limit (update bucket, 500 ms latency) and with the limit lifted."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from benchmarks.bounds import windowed_bound
from benchmarks.orgs import client_for, dev_org
from okta_sync.config import MANAGE_SCOPE, READ_SCOPE
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.push import PushOptions, push_changes


@dataclass
class PushResult:
    label: str
    updates: int
    elapsed: float
    bound: float
    limit: int
    concurrency: int
    latency: float
    rate_limited: int
    peak_concurrency: int
    tokens_issued: int
    statuses: dict
    per_window: dict

    @property
    def per_minute(self) -> float:
        return self.updates / self.elapsed * 60


class CountingReport:
    def __init__(self):
        self.statuses = Counter()

    def write(self, row) -> None:
        self.statuses[str(row.status)] += 1


def _changes(org, count: int) -> list[ProfileChange]:
    users = [u for u in org.admin.users(limit=count * 2) if u["status"] == "ACTIVE"][:count]
    if len(users) < count:
        raise RuntimeError(f"only {len(users)} ACTIVE users for {count} changes")
    return [ProfileChange(u["id"], u["profile"]["login"], u["status"],
                          {"title": (u["profile"].get("title"), f"Benchmark {n}")}) for n, u in enumerate(users)]


def run(label: str, updates: int, limit: int, latency_ms: float, concurrency: int, log=print, *,
        adaptive: bool = False, ideal_concurrency: int | None = None, window: int = 60,
        start_offset: float | None = None) -> PushResult:
    """`concurrency` in flight (or, `adaptive`, where the adaptive count starts, as with default settings);
    the bound is the ideal pusher with `ideal_concurrency` (default: `concurrency`) in flight and `window`-second
    windows (a shorter window with latency scaled alike compresses time)."""
    latency = latency_ms / 1000
    with dev_org(f"push-{label}", users=max(2 * updates + 200, 1000), latency_ms=latency_ms, rate_limit=0,
                 rate_limits={"user_update": limit, "user_read": limit}, concurrency_limit=75,
                 rate_limit_window=window, deprovisioned_fraction=0.0, other_status_fraction=0.0) as org:
        changes = _changes(org, updates)
        report = CountingReport()
        with client_for(org, max_concurrency=concurrency) as client:
            client.get_token((READ_SCOPE,))
            client.get_token((MANAGE_SCOPE,))
            minted_before = org.admin.stats()["tokens_issued"]  # counted: the reset below is for request windows
            if start_offset is not None:  # a fresh window, so no earlier run's requests count in it
                time.sleep(max(0.0, (int(time.time() // window) + 1) * window + start_offset - time.time()))
            org.admin.reset_stats()
            began = time.time()
            push_changes(client, changes, report, PushOptions(max_concurrency=concurrency, adaptive=adaptive))
            elapsed = time.time() - began
        stats = org.admin.stats()
    per_window = Counter(int(t // window) for t in stats["update_timestamps"])
    result = PushResult(
        label=label, updates=stats["updates_total"], elapsed=elapsed,
        bound=windowed_bound(updates, began, limit, ideal_concurrency or concurrency, latency, requests_per_unit=2,
                             window=window),
        limit=limit, concurrency=concurrency, latency=latency,
        rate_limited=stats["rate_limited"]["rate_limit"] + stats["rate_limited"]["concurrency"],
        peak_concurrency=stats["peak_concurrency"], tokens_issued=minted_before + stats["tokens_issued"],
        statuses=dict(report.statuses), per_window={str(k * window): v for k, v in sorted(per_window.items())})
    log(f"  push {label}: {result.updates} updates in {elapsed:.1f} s = {result.per_minute:.0f}/min; bound "
        f"{result.bound:.1f} s; 429s {result.rate_limited}; peak concurrency {result.peak_concurrency}; "
        f"per window {list(per_window.values())}; {result.statuses}")
    return result
