"""Server-side counters that tests and benchmarks assert on (served at GET /_dev/stats)."""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

UPDATE_TIMESTAMPS_KEPT = 200_000


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.started = time.time()
            self.requests = Counter()  # "GET /api/v1/users" style route keys
            self.by_bucket = Counter()
            self.by_status = Counter()
            self.token_ok = 0
            self.token_refused = Counter()  # reason -> count
            self.tokens_issued = 0
            self.tokens_used: set[str] = set()
            self.updates = defaultdict(Counter)  # user id -> {"POST": n, "PUT": n}
            self.update_times: list[float] = []
            self.rate_limited = Counter()  # "rate_limit" / "concurrency"
            self.rate_limited_by_bucket = Counter()
            self.faults = Counter()
            self.membership_changes = defaultdict(Counter)  # group id -> {"PUT": n, "DELETE": n} (changes made)

    def request(self, route: str, bucket: str | None) -> None:
        with self.lock:
            self.requests[route] += 1
            if bucket:
                self.by_bucket[bucket] += 1

    def response(self, status: int) -> None:
        with self.lock:
            self.by_status[str(status)] += 1

    def token_result(self, refused_reason: str | None) -> None:
        with self.lock:
            if refused_reason is None:
                self.token_ok += 1
                self.tokens_issued += 1
            else:
                self.token_refused[refused_reason] += 1

    def token_used(self, value: str) -> None:
        if value not in self.tokens_used:
            with self.lock:
                self.tokens_used.add(value)

    def update(self, user_id: str, method: str) -> None:
        with self.lock:
            self.updates[user_id][method] += 1
            if len(self.update_times) < UPDATE_TIMESTAMPS_KEPT:
                self.update_times.append(time.time())

    def membership(self, group_id: str, method: str) -> None:
        with self.lock:
            self.membership_changes[group_id][method] += 1

    def limited(self, reason: str, bucket: str) -> None:
        with self.lock:
            self.rate_limited[reason] += 1
            self.rate_limited_by_bucket[bucket] += 1

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def snapshot(self, peak_concurrency: int, in_flight: int) -> dict:
        with self.lock:
            return {
                "started_at": self.started,
                "requests": dict(self.requests),
                "requests_by_bucket": dict(self.by_bucket),
                "responses_by_status": dict(self.by_status),
                "token_requests": {"ok": self.token_ok, "refused": sum(self.token_refused.values()),
                                   "refused_reasons": dict(self.token_refused)},
                "tokens_issued": self.tokens_issued,
                "distinct_tokens_used": len(self.tokens_used),
                "updates": {uid: dict(c) for uid, c in self.updates.items()},
                "updates_total": sum(sum(c.values()) for c in self.updates.values()),
                "update_timestamps": list(self.update_times),
                "rate_limited": {"rate_limit": self.rate_limited["rate_limit"],
                                 "concurrency": self.rate_limited["concurrency"],
                                 "by_bucket": dict(self.rate_limited_by_bucket)},
                "faults": dict(self.faults),
                "membership_changes": {gid: dict(c) for gid, c in self.membership_changes.items()},
                "peak_concurrency": peak_concurrency,
                "in_flight": in_flight,
            }
