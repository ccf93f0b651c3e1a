"""Partitioned listing where the client decides the partitions: `created` lanes split while they are paged.

A fixed set of windows leaves its largest one paging alone at the end (one page per round trip while the rate limit
would allow many), whatever their number; how uneven they are depends on the org's `created` distribution, which is
unknown before listing. So the windows are not fixed:

1. Probe, productively: the first page sorted by `created` ascending and the first sorted descending, at once. Their
   users are part of the output; their edges bound the rest of the org to [lo, hi].
2. [lo, hi] is cut into one lane per worker. Each lane is a `search` sorted by `created` ascending (Okta breaks
   ties by id), so a lane at cursor `c` has read everything in [start, c) and some of `c`.
3. Work stealing: a worker with no lane left takes the upper half of the lane with the most users left: the lane
   [c, end) keeps [c, mid) and a new lane pages [mid, end). The paging lane drops users at or past its new end and
   stops there; no user is read twice or missed. Users left and `mid` come from the density at both ends of what is
   left: at the cursor (the lane's last page) and just past its end (the first page of the lane starting there, or
   the probe's newest page), taken as linear in between. The cursor's density alone underestimates a lane whose
   users crowd toward its end (a growing org's newest lane by 3x), which then pages alone at the end of the run.
4. A lane that has read `split_at` users (a `search` is reported to stop at 50,000 results) restarts its query at
   its cursor, skipping the ids it already read at exactly that `created`.

Exactly once: every lane covers [start, end) of `created`, which never changes; lanes only ever shrink by handing
their upper part to a new lane. The listing's order is checked page by page; a server that does not sort is refused
rather than trusted.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from okta_sync.errors import UnsortedListingError
from okta_sync.timestamps import parse_okta_time
from okta_sync.users.paging_pool import PagingPool, query_pages, subset
from okta_sync.users.partitions import Window

_MIN_PAGES_TO_SPLIT = 2.0  # a lane with fewer pages left finishes in as many round trips as a split would
_IDLE_WAIT_SECONDS = 0.05


@dataclass
class Lane:
    """Users created in [start, end) in epoch ms (None: open), paged in `created` order."""

    start: int | None
    end: int | None
    skip: frozenset[str] = frozenset()
    cursor: int | None = None  # `created` of the last user read
    first: int | None = None  # `created` of the first user read
    read: int = 0
    recent: tuple[int, int] = (0, 0)  # users in the last page and the `created` span (ms) they covered
    finished: bool = False
    ties: set[str] = field(default_factory=set)  # ids read at exactly `cursor`


def first_pages(client: Any, search: str | None, limit: int, keep_text: bool) -> tuple[list, bool, list]:
    """The first page ascending and the first page descending, fetched at once, and whether any user is in neither:
    none when the ascending page is short and holds every user of the descending one (checked, not assumed)."""
    expression = search or "created pr"

    def first(order: str) -> list:
        pages = query_pages(client, expression, limit, keep_text, sort_by="created", sort_order=order)
        try:
            return next(pages, [])
        finally:
            pages.close()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="okta-partition-probe") as pool:
        ascending, descending = pool.submit(first, "asc"), pool.submit(first, "desc")
        low_page, high_page = ascending.result(), descending.result()
    low_ids = {user["id"] for user in low_page}
    more = len(low_page) >= limit or any(user["id"] not in low_ids for user in high_page)
    return low_page, more, high_page


class StealingRun(PagingPool[Lane]):
    """The shared pool and hand-off, with lanes that split when a worker goes idle."""

    idle_wait = _IDLE_WAIT_SECONDS

    def __init__(self, client, search, workers, include_deprovisioned, split_at, limit, page_size, *,
                 keep_text=False):
        super().__init__(client, search, workers, include_deprovisioned, split_at, limit, keep_text=keep_text)
        self.page_size = page_size
        self.lanes: list[Lane] = []
        self.todo_lanes: list[Lane] = []
        self.top: int = 0  # the newest `created` seen by the probe + 1 ms: where estimates of open lanes end
        self.splits = 0
        self.density_at: dict[int, float] = {}  # users per ms just past a `created` value: a lane's first page
        self.probe_pages: list[list[dict[str, Any]]] = []

    # -- plan ---------------------------------------------------------------------------------------------------
    def plan(self) -> None:
        low_page, more, high_page = first_pages(self.client, self.search, self.page_size, self.keep_text)
        _check_order([_created(user) for user in low_page])
        _check_order([_created(user) for user in reversed(high_page)])
        self.probe_pages.append(low_page)
        if not more:
            return
        low_ids = {user["id"] for user in low_page}
        self.probe_pages.append(subset(high_page, [i for i, u in enumerate(high_page) if u["id"] not in low_ids]))
        if not low_page or not high_page:  # an eventually consistent listing disagreed with itself: one open lane
            self.todo_lanes = [Lane(None, None, frozenset(u["id"] for u in (*low_page, *high_page)))]
            return
        lo, hi = _created(low_page[-1]), _created(high_page[-1])
        if lo > hi:
            return  # the two pages met: every user is in one of them
        self.top = hi + 1
        # the lanes skip what the probe yielded at the edges (ties at `lo` and `hi`; more when the pages overlap)
        seen = frozenset(user["id"] for page in (low_page, high_page) for user in page if lo <= _created(user) <= hi)
        newest = max(_created(user) for user in high_page)
        self.density_at[self.top] = len(high_page) / max(1, newest - hi)
        low_density = len(low_page) / max(1, lo - _created(low_page[0]))
        high_density = len(high_page) / max(1, newest - hi)
        bounds = sorted({lo + int((self.top - lo) * share)
                         for share in equal_mass_shares(low_density, high_density, self.workers)} - {lo, self.top})
        edges = [lo, *bounds, self.top]
        self.todo_lanes = [Lane(edges[i], edges[i + 1], seen) for i in range(len(edges) - 1)]
        # the descending page holds every user created after `hi`; a last lane finds those created since it was
        # read (usually none: one short request, in parallel)
        self.todo_lanes.append(Lane(newest + 1, None))

    def pages(self):
        self.plan()
        for page in self.probe_pages:
            kept = self._kept(page, frozenset())
            if kept:
                yield kept
        if self.todo_lanes:
            yield from super().pages()

    # -- scheduling ---------------------------------------------------------------------------------------------
    def _take_item(self) -> Lane | None:
        lane = self.todo_lanes.pop(0) if self.todo_lanes else self._steal()
        if lane is not None:
            self.lanes.append(lane)
        return lane

    def _finish_item(self, lane: Lane) -> None:
        lane.finished = True

    def _steal(self) -> Lane | None:
        """Under the lock: the upper half of the lane with the most users left, or None when none is worth it."""
        best, best_left = None, _MIN_PAGES_TO_SPLIT * self.page_size
        for lane in self.lanes:
            left = self._left(lane)
            if left >= best_left:
                best, best_left = lane, left
        if best is None:
            return None
        end = best.end if best.end is not None else self.top
        here, there = self._densities(best, end)
        share = 0.5 if there is None else equal_mass_shares(here, there, 2)[0]
        middle = best.cursor + max(1, min(end - best.cursor - 1, int((end - best.cursor) * share)))
        if middle <= best.cursor:
            return None
        upper = Lane(middle, best.end, best.skip)
        best.end = middle
        self.splits += 1
        return upper

    def _left(self, lane: Lane) -> float:
        """Users a lane has yet to read, if its density so far holds over the rest of its range."""
        if lane.finished or lane.cursor is None or lane.read < 2:
            return 0.0
        end = lane.end if lane.end is not None else self.top
        if end - lane.cursor < 2:
            return 0.0
        here, there = self._densities(lane, end)
        if there is None:
            return here * (end - lane.cursor)
        return (here + there) / 2 * (end - lane.cursor)  # exact when density runs linearly from cursor to end

    def _densities(self, lane: Lane, end: int) -> tuple[float, float | None]:
        """Users per ms at the lane's cursor and, when a page read there tells, just past its end."""
        overall = lane.read / max(1, lane.cursor - lane.first)
        count, span = lane.recent  # the local density: a huge import day is dense where the cursor is, not before
        return max(overall, count / max(1, span)), self.density_at.get(end)

    # -- paging -------------------------------------------------------------------------------------------------
    def _page_item(self, lane: Lane) -> None:
        start, skip = lane.start, lane.skip
        while not self._page_query(lane, start, skip):
            with self.lock:  # `split_at` reached: go on from the cursor, skipping what was read at it
                start, skip = lane.cursor, frozenset(lane.ties) | lane.skip

    def _page_query(self, lane: Lane, start: int | None, skip: frozenset[str]) -> bool:
        """Page one query of the lane; True when the lane is done, False when it must restart at its cursor."""
        with self.lock:
            window = Window(start, lane.end)
        pages = self._query_pages(window.expression(self.search), sort_by="created", sort_order="asc")
        served = 0
        try:
            for page in pages:
                if self.stop.is_set():
                    return True
                served += len(page)
                kept, done = self._take(lane, page, skip)
                if kept and not self._put(kept):
                    return True
                if done:
                    return True
                if self.split_at is not None and served >= self.split_at:
                    return False
            return True
        finally:
            pages.close()

    def _take(self, lane: Lane, page: list[dict[str, Any]], skip: frozenset[str]) -> tuple[list, bool]:
        """The page's users inside the lane (its end may have moved); True when the lane has read past its end."""
        created = [_created(user) for user in page]
        with self.lock:
            _check_order(created if lane.cursor is None else [lane.cursor, *created])
            end = lane.end
            inside = len(created) if end is None else next(
                (i for i, value in enumerate(created) if value >= end), len(created))
            if inside:
                last = created[inside - 1]
                if last != lane.cursor:
                    lane.ties = set()
                lane.ties.update(page[i]["id"] for i in range(inside) if created[i] == last)
                if lane.first is None:
                    lane.first = created[0]
                    if lane.start is not None and inside > 1:
                        self.density_at.setdefault(lane.start, inside / max(1, last - lane.start))
                lane.recent = (inside, last - created[0])
                lane.cursor = last
                lane.read += inside
                self.lock.notify_all()
        return self._kept(page, skip, inside), inside < len(page)


def equal_mass_shares(low_density: float, high_density: float, parts: int, *, skew_cap: float = 50.0) -> list[float]:
    """Where to cut [0, 1] into `parts` of equal users if density runs linearly from the oldest page's to the newest
    page's (a growing org is denser at the top); a guess that work stealing corrects, so the skew is capped."""
    low = max(low_density, high_density / skew_cap, 1e-12)
    high = max(high_density, low / skew_cap)
    a, b = (high - low) / 2, low  # users up to x (scaled): b x + a x^2
    total = a + b
    shares = []
    for i in range(1, parts):
        target = total * i / parts
        x = target / b if abs(a) < 1e-12 * b else (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)
        shares.append(min(1.0, max(0.0, x)))
    return shares


def _check_order(created: list[int]) -> None:
    if any(b < a for a, b in zip(created, created[1:])):
        raise UnsortedListingError("the users listing sorted by created came back out of order; "
                                   "partitions cannot be split safely against this server")


def _created(user: dict[str, Any]) -> int:
    return parse_okta_time(user["created"])

