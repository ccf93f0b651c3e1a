"""Okta's concurrent-request limit (org-wide, shared with every integration): a 429 that refuses concurrency halves
the requests this client keeps in flight; successes raise the cap again (AIMD) until it is lifted."""

from __future__ import annotations

import email.utils
import math
import threading
import time

from okta_sync.http.ratelimit import MAX_CAPPED_CONCURRENCY, RateLimiter


def _refusal(reset_in: float) -> dict[str, str]:
    now = time.time()
    return {"Date": email.utils.formatdate(now, usegmt=True), "X-Rate-Limit-Limit": "75",
            "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(now + reset_in))}


def _limiter() -> RateLimiter:
    return RateLimiter(jitter=lambda: 0.0, margin=lambda: 0.0)


def test_a_concurrency_refusal_halves_what_is_in_flight_and_blocks_the_next_request():
    limiter = _limiter()
    for _ in range(8):
        limiter.acquire("user_read")
    limiter.release("user_read", None)  # the refused request is done
    limiter.wait_for_reset(_refusal(reset_in=1), bucket="user_read")
    assert limiter.concurrency_ceiling == 4.0  # 7 still in flight + the refused one, halved
    for _ in range(3):  # 7 -> 4 in flight: still at the cap
        limiter.release("user_read", None)
    sent = threading.Event()
    waiter = threading.Thread(target=lambda: (limiter.acquire("user_read"), sent.set()), daemon=True)
    waiter.start()
    assert not sent.wait(0.3), "a fifth request went out while four were in flight under a cap of four"
    limiter.release("user_read", None)
    assert sent.wait(5), "the request waiting for a free slot was never sent"


def test_a_window_that_resets_later_is_a_budget_not_concurrency():
    limiter = _limiter()
    limiter.acquire("users_list")
    limiter.release("users_list", None)
    limiter.wait_for_reset(_refusal(reset_in=40), bucket="users_list")
    assert limiter.concurrency_ceiling == math.inf


def test_successes_raise_the_cap_again_until_it_is_lifted():
    limiter = _limiter()
    limiter.wait_for_reset(_refusal(reset_in=1))
    assert limiter.concurrency_ceiling == 1.0
    limiter.concurrency_ok()
    assert limiter.concurrency_ceiling == 2.0
    successes = 0
    while limiter.concurrency_ceiling != math.inf:
        limiter.concurrency_ok()
        successes += 1
        assert successes < 100_000
    # additive increase: about ceiling^2 / 2 successes to climb back past the cap
    assert MAX_CAPPED_CONCURRENCY ** 2 / 4 < successes < MAX_CAPPED_CONCURRENCY ** 2
