"""An org in memory for the partitioned listing: `list_users` over (created ms, id) pairs, honouring the `created`
windows and sort orders the listing asks for (anything else is refused), each page held back `pause` seconds (a
number, or a function called for each page). The stealing run's tests hold pages back at random; `bench rounds` gives
every page one fixed round trip and counts the requests."""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable

from okta_sync.timestamps import okta_time, parse_okta_time

_TERM = re.compile(r'created (ge|lt) "([^"]+)"')


class InMemoryOrg:
    def __init__(self, users: list[tuple[int, str]], pause: float | Callable[[], float] = 0.0):
        self.users, self.pause = sorted(users), pause
        self.created = [created for created, _ in self.users]
        self.requests = 0
        self.lock = threading.Lock()

    def list_users(self, *, search=None, limit=None, sort_by=None, sort_order=None):
        if sort_by != "created" or sort_order not in ("asc", "desc") or not limit:
            raise ValueError("the in-memory org serves listings sorted by created, with a limit")
        if _TERM.sub("", search or "").replace("and", "").replace("created pr", "").strip():
            raise ValueError("the in-memory org serves `created` windows only")
        bounds = {op: parse_okta_time(value) for op, value in _TERM.findall(search or "")}
        low = bisect.bisect_left(self.created, bounds["ge"]) if "ge" in bounds else 0
        high = bisect.bisect_left(self.created, bounds["lt"]) if "lt" in bounds else len(self.users)
        chosen = self.users[low:high] if sort_order == "asc" else self.users[low:high][::-1]
        return _Listing(self, chosen, limit)

    def _held_back(self) -> None:
        with self.lock:
            self.requests += 1
            pause = self.pause() if callable(self.pause) else self.pause
        time.sleep(pause)


class _Listing:
    def __init__(self, org: InMemoryOrg, chosen: list[tuple[int, str]], limit: int):
        self.org, self.chosen, self.limit = org, chosen, limit

    def pages(self):
        for at in range(0, len(self.chosen) + 1, self.limit):
            self.org._held_back()
            page = [{"id": user_id, "created": okta_time(created), "status": "ACTIVE"}
                    for created, user_id in self.chosen[at:at + self.limit]]
            yield page
            if len(page) < self.limit:
                return

    text_pages = pages
