"""Pushes adapt their in-flight count (Little's law from the bucket and observed latency), never past the ceiling."""
from __future__ import annotations

from collections import Counter

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.http.concurrency import AdaptiveConcurrency
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.http.ratelimit import RateLimitSnapshot


class _Clock:
    def __init__(self, now: float):
        self._now = now

    def now(self) -> float:
        return self._now


class _Limiter:
    """What AdaptiveConcurrency reads from the client's RateLimiter: the bucket's headers and Okta's clock."""

    def __init__(self, limit: int, seconds_to_reset: float, fraction: float = 1.0):
        self.fraction = fraction
        self.server_clock = _Clock(1_000.0)
        self._snapshot = RateLimitSnapshot(limit, limit, int(1_000 + seconds_to_reset))

    def snapshot(self, bucket):
        return self._snapshot


def test_the_target_is_twice_the_rate_times_the_time_per_change_within_the_ceiling():
    needed = AdaptiveConcurrency(8, 24, rate_limiter=_Limiter(600, 60))
    assert needed.target() == 8  # nothing observed yet: the configured start
    for _ in range(5):
        needed.observe(1.0)  # a re-read and an update at 500 ms each
    assert needed.target() == 20  # 600/min = 10/s, x 1 s, x 2 to spend each window early

    capped = AdaptiveConcurrency(8, 16, rate_limiter=_Limiter(600, 60))
    capped.observe(1.0)
    assert capped.target() == 16

    slow_bucket = AdaptiveConcurrency(8, 24, rate_limiter=_Limiter(60, 60))
    slow_bucket.observe(1.0)
    assert slow_bucket.target() == 8  # 1/s needs two in flight: never below the configured start

    compressed = AdaptiveConcurrency(2, 24, rate_limiter=_Limiter(150, 15))  # a 15 s window, read from the reset
    compressed.observe(0.25)
    assert compressed.target() == 5

    unlimited = AdaptiveConcurrency(2, 24, rate_limiter=None)
    unlimited.observe(0.1)
    assert unlimited.target() == 24


def _client(org) -> OktaClient:
    c = org.connection
    return OktaClient(OktaConfig(org_url=c["org_url"], client_id=c["client_id"], key_id=c["key_id"],
                                 private_key_path=c["private_key_path"], max_concurrency=2))


class _Report:
    def __init__(self):
        self.statuses = Counter()

    def write(self, row) -> None:
        self.statuses[str(row.status)] += 1


@pytest.mark.parametrize("ceiling", [6, 10])
def test_a_push_with_default_settings_rises_to_the_needed_level_and_never_past_the_ceiling(tmp_path, ceiling):
    # 300 updates per 2 s window at 40 ms a request: Little's law wants about 2 x 150/s x 0.08 s = 24 in flight.
    options = DevOrgOptions(users=200, seed=3, latency_ms=40, rate_limit=0, rate_limit_window=2,
                            rate_limits={"user_update": 300, "user_read": 300}, concurrency_limit=0,
                            deprovisioned_fraction=0.0, other_status_fraction=0.0, state_dir=tmp_path)
    with DevOrg(options) as org, _client(org) as client:
        users = [u for u in org.admin.users(limit=120)][:120]
        changes = [ProfileChange(u["id"], u["profile"]["login"], u["status"],
                                 {"title": (u["profile"].get("title"), f"Pushed {n}")}) for n, u in enumerate(users)]
        org.app.limiter.reset_peak()
        report = _Report()
        push_changes(client, changes, report, PushOptions(max_concurrency=2, adaptive=True,
                                                          concurrency_ceiling=ceiling))
        stats = org.admin.stats()
    assert report.statuses == {"applied": 120}
    assert stats["rate_limited"]["rate_limit"] == stats["rate_limited"]["concurrency"] == 0
    assert 2 < stats["peak_concurrency"] <= ceiling  # rose from the start of 2, held under the ceiling


def test_a_fixed_count_is_kept_when_one_is_asked_for(tmp_path):
    options = DevOrgOptions(users=100, seed=4, latency_ms=20, rate_limit=0, concurrency_limit=0,
                            deprovisioned_fraction=0.0, other_status_fraction=0.0, state_dir=tmp_path)
    with DevOrg(options) as org, _client(org) as client:
        users = org.admin.users(limit=40)
        changes = [ProfileChange(u["id"], u["profile"]["login"], u["status"], {"title": (u["profile"].get("title"), "x")})
                   for u in users]
        org.app.limiter.reset_peak()
        push_changes(client, changes, _Report(), PushOptions(max_concurrency=3))
        assert org.admin.stats()["peak_concurrency"] <= 3
