"""Partitioned listing where the client decides the partitions: `created` lanes split while they are paged.

A fixed set of windows leaves its largest one paging alone at the end (one page per round trip while the rate limit
would allow many), whatever their number; how uneven they are depends on the org's `created` distribution, which is
unknown before listing. So the windows are not fixed:

1. Probe, productively: the first page sorted by `created` ascending and the first sorted descending, at once. Their
   users are part of the output; their edges bound the rest of the org to [lo, hi]. Given a `created_hint` (the
   `created_quantiles` of an earlier listing of the org), there is no probe: the first lanes start at once at the
   hint's quantiles, the lowest and highest open-ended, and every worker is busy from the first round trip (no
   more lanes than the hint's users fill pages; an org the probe's two pages hold is still probed).
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

Exactly once: every lane covers [start, end) of `created`, which never changes (a hint, however wrong, only
decides where the first lanes are cut: they still cover all time); lanes only ever shrink by handing
their upper part to a new lane. The listing's order is checked page by page; a server that does not sort is refused
rather than trusted.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from okta_sync.errors import UnsortedListingError
from okta_sync.timestamps import parse_okta_time
from okta_sync.users.paging_pool import PagingPool, query_pages, subset
from okta_sync.users.partitions import Window

_MIN_PAGES_TO_SPLIT = 2.0  # a lane with fewer pages left finishes in as many round trips as a split would
_IDLE_WAIT_SECONDS = 0.05
HINT_POINTS = 33  # the quantiles a listing reports: minimum, 31 inner, maximum (any worker count picks from them)
_MAX_HINT_POINTS = 257
_MAX_EPOCH_MS = 253402300800000  # 10000-01-01: later is not a `created` value


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
                 keep_text=False, created_hint: dict[str, Any] | None = None):
        super().__init__(client, search, workers, include_deprovisioned, split_at, limit, keep_text=keep_text)
        self.page_size = page_size
        self.hint = created_hint
        self.completed = False
        self.lanes: list[Lane] = []
        self.todo_lanes: list[Lane] = []
        self.top: int = 0  # the newest `created` seen by the probe + 1 ms: where estimates of open lanes end
        self.splits = 0
        self.users_read = 0  # by the lanes, each once (ties a lane skips are not counted)
        self.density_at: dict[int, float] = {}  # users per ms just past a `created` value: a lane's first page
        self.probe_pages: list[list[dict[str, Any]]] = []

    # -- plan ---------------------------------------------------------------------------------------------------
    def plan(self) -> None:
        if self.hint and self.hint["users"] > 2 * self.page_size:
            self._plan_from_hint(self.hint)
            return
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

    def _plan_from_hint(self, hint: dict[str, Any]) -> None:
        """One lane per worker (fewer if the hint's users fill fewer pages) cut at the hint's quantiles; the outer
        lanes are open, so all time is covered."""
        quantiles = hint["quantiles"]
        lanes = min(self.workers, math.ceil(hint["users"] / self.page_size))
        bounds = sorted(set(hint_boundaries(quantiles, lanes)))
        edges: list[int | None] = [None, *bounds, None]
        self.top = quantiles[-1] + 1
        # the newest lane's end density, as the probe's newest page would give it (users crowd there in a growing
        # org: the last quantile step's mean density can be hundreds of times lower)
        self.density_at[self.top] = hint.get("top_density") or \
            hint["users"] / (len(quantiles) - 1) / max(1, quantiles[-1] - quantiles[-2])
        self.todo_lanes = [Lane(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]

    def pages(self):
        self.plan()
        for page in self.probe_pages:
            kept = self._kept(page, frozenset())
            if kept:
                yield kept
        if self.todo_lanes:
            yield from super().pages()
        self.completed = True  # reached only when every lane was paged: an error or a close raises at a yield

    def created_hint(self, points: int = HINT_POINTS) -> dict[str, Any] | None:
        """For the next run: `points` quantiles of `created` (epoch ms; the first is the oldest user, the last the
        newest) over what a completed run read, and how many users it read; None before completion or for an empty
        org. Each lane's users are taken as spread evenly over the range it read: lanes are narrow where users
        crowd."""
        if not self.completed:
            return None
        segments = [(lane.first, lane.cursor, lane.read) for lane in self.lanes
                    if lane.read and lane.first is not None and lane.cursor is not None]
        for page in self.probe_pages:
            created = [_created(user) for user in page]
            if created:
                segments.append((min(created), max(created), len(created)))
        quantiles = quantiles_of_segments(segments, points)
        if quantiles is None or quantiles[-1] <= quantiles[0]:
            return None
        hint = {"quantiles": quantiles, "users": self.users_read + sum(len(page) for page in self.probe_pages)}
        newest = max((lane for lane in self.lanes if lane.recent[0] > 1), key=lambda lane: lane.cursor, default=None)
        top = self.density_at.get(self.top, 0.0)  # the probe's newest page, or the hint's
        if newest is not None and newest.cursor >= self.top - 1:  # a lane read the newest users: its last page
            top = max(top, newest.recent[0] / max(1, newest.recent[1]))  # (over- rather than underestimated)
        if top > 0:
            hint["top_density"] = float(f"{top:.6g}")
        return hint

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
        end = self._estimated_end(best)
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
        end = self._estimated_end(lane)
        if end - lane.cursor < 2:
            return 0.0
        here, there = self._densities(lane, end)
        if there is None:
            return here * (end - lane.cursor)
        return (here + there) / 2 * (end - lane.cursor)  # exact when density runs linearly from cursor to end

    def _estimated_end(self, lane: Lane) -> int:
        """Where a lane's users end: its end, or for the open newest lane the newest user known when the run began
        (now, once the lane reads past that: the org grew since the hint)."""
        if lane.end is not None:
            return lane.end
        if lane.cursor is not None and lane.cursor >= self.top:  # at `top - 1` it still reads that ms's ties
            return int(time.time() * 1000)
        return self.top

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
                self.users_read += inside if not skip else sum(1 for i in range(inside) if page[i]["id"] not in skip)
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


def hint_boundaries(hint: list[int], parts: int) -> list[int]:
    """The inner cut points splitting `hint`'s quantiles (evenly spaced, oldest to newest) into `parts` equal shares."""
    last = len(hint) - 1
    cuts = []
    for i in range(1, parts):
        position = last * i / parts
        low = int(position)
        high = min(last, low + 1)
        cuts.append(int(hint[low] + (hint[high] - hint[low]) * (position - low)))
    return cuts


def quantiles_of_segments(segments: list[tuple[int, int, int]], points: int) -> list[int] | None:
    """`points` evenly spaced quantiles of users given as (oldest, newest, count) ranges, each spread evenly."""
    total = sum(count for _, _, count in segments)
    if not total or points < 2:
        return None
    segments = sorted(segments)
    result, seen, index = [], 0, 0
    for k in range(points):
        target = total * k / (points - 1)
        while index < len(segments) - 1 and seen + segments[index][2] < target:
            seen += segments[index][2]
            index += 1
        low, high, count = segments[index]
        share = min(1.0, max(0.0, (target - seen) / count))
        result.append(int(low + (high - low) * share))
    result[0], result[-1] = segments[0][0], max(high for _, high, _ in segments)
    return sorted(result)


def parse_created_hint(value: Any) -> dict[str, Any] | None:
    """A stored `created_hint`, or None when it is not one (a hint only balances lanes: a bad one is dropped).

    A hint is `{"quantiles": [...], "users": n, "top_density": d}`: 2 to 257 whole epoch milliseconds in ascending
    order within 1970..9999 (evenly spaced quantiles, oldest to newest), the whole number of users they describe and,
    optionally, users per ms among the newest ones."""
    if not isinstance(value, dict):
        return None
    quantiles, users = value.get("quantiles"), value.get("users")
    if not isinstance(quantiles, list) or not 2 <= len(quantiles) <= _MAX_HINT_POINTS:
        return None
    if not all(type(v) is int and 0 <= v < _MAX_EPOCH_MS for v in quantiles):
        return None
    if any(b < a for a, b in zip(quantiles, quantiles[1:])) or quantiles[-1] <= quantiles[0]:
        return None
    if type(users) is not int or not 0 < users < 10**10:
        return None
    parsed: dict[str, Any] = {"quantiles": list(quantiles), "users": users}
    top = value.get("top_density")
    if top is not None:
        if type(top) not in (int, float) or not 0 < top < 1e9:  # NaN and infinity fail the comparison
            return None
        parsed["top_density"] = float(top)
    return parsed


def _check_order(created: list[int]) -> None:
    if any(b < a for a, b in zip(created, created[1:])):
        raise UnsortedListingError("the users listing sorted by created came back out of order; "
                                   "partitions cannot be split safely against this server")


def _created(user: dict[str, Any]) -> int:
    return parse_okta_time(user["created"])

