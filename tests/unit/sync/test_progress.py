"""Progress a person can follow: a rate-limit wait is logged while it lasts (which bucket, how long), and the time
left counts the wait and what the rate limit still allows, not a rate diluted by the wait."""

from __future__ import annotations

import logging
import time
from email.utils import formatdate

from okta_sync.sync.progress import Progress
from okta_sync.http.ratelimit import RateLimiter
from okta_sync.metrics import Instruments


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _logger(name: str) -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(f"test.progress.{name}")
    logger.setLevel(logging.INFO)
    handler = Lines()
    logger.addHandler(handler)
    return logger, handler


def test_a_paced_wait_is_logged_while_it_lasts_naming_the_bucket():
    logger, handler = _logger("paced")
    progress = Progress("push", logger=logger, total=10, wait_every=0.1,
                        headroom=lambda: {"user_update": {"limit": 600, "remaining": 0, "reset": 0}})
    limiter = RateLimiter(metrics=Instruments(progress))  # the progress log listens to the client's channel
    now = time.time()
    # The user_update window is spent and resets in about 1.3 s on the server's clock.
    limiter.observe("user_update", {"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "0",
                                    "X-Rate-Limit-Reset": str(int(now) + 2), "Date": formatdate(now, usegmt=True)})
    progress.advance(users=4)
    waited = limiter.acquire("user_update")
    progress.close()

    assert waited > 0.5
    waits = [line for line in handler.lines if "waiting for the user_update rate limit" in line]
    assert len(waits) >= 3, handler.lines  # at once, then on the timer while the wait lasts
    assert "4/10 users" in waits[0] and "s left)" in waits[0]


def test_the_time_left_counts_the_wait_and_the_rate_limit_not_a_diluted_rate():
    logger, handler = _logger("estimate")
    clock = [0.0]
    progress = Progress("push", logger=logger, total=300, every=0, wait_every=3600, clock=lambda: clock[0],
                        headroom=lambda: {"user_update": {"limit": 100, "remaining": 0, "reset": 0}})
    clock[0] = 10.0
    progress.advance(users=100)  # 10 users/s while working
    progress.on_wait("user_update", 35.0)
    # 35 s of wait ahead, then 200 users: at 10/s that is 20 s, but 100 per minute needs one more window (60 s).
    assert handler.lines[-1].startswith("push: waiting for the user_update rate limit (35s of 35s left) to reset")
    assert handler.lines[-1].endswith("100/300 users, about 1m35s left")
    clock[0] = 45.0  # the wait is over
    progress.advance(users=100)
    # 200 done in 10 s of work (20/s: the 35 s wait does not dilute the rate); 100 left fit in one window.
    assert handler.lines[-1].endswith("200/300, about 5s left; user_update rate limit 0/100 left")
    progress.close()


def test_waiting_threads_of_one_window_log_one_wait():
    logger, handler = _logger("threads")
    progress = Progress("export", logger=logger, wait_every=3600)
    for _ in range(8):
        progress.on_wait("users_list", 20.0)
    progress.on_wait(None, 5.0)  # after a 429
    progress.close()
    assert len(handler.lines) == 2, handler.lines
    assert "users_list rate limit (20s of 20s left)" in handler.lines[0]
    assert "refused (429) rate limit (5s of 5s left)" in handler.lines[1]
