"""Partitioned listing where the client decides the partitions: `created` ranges paged from both ends, split while
they are paged.

A fixed set of windows leaves its largest one paging alone at the end (one page per round trip while the rate limit
would allow many), whatever their number; how uneven they are depends on the org's `created` distribution, which is
unknown before listing. So the windows are not fixed:

1. Probe, productively: the first page sorted by `created` ascending and the first sorted descending, at once. Their
   users are part of the output; their edges bound the rest of the org to [lo, hi]. Given a `created_hint` (the
   `created_quantiles` of an earlier listing of the org), there is no probe: the first ranges start at once at the
   hint's quantiles, the lowest and highest open-ended, and every worker is busy from the first round trip (no
   more lanes than the hint's users fill pages; an org the probe's two pages hold is still probed).
2. [lo, hi] is cut into one range per two workers, and each range is paged by two lanes from its two ends: a
   `search` sorted by `created` ascending from its start and one sorted descending from its end (Okta breaks ties
   by id). A lane at cursor `c` has read everything between its start and `c`, and some of `c`. The two stop where
   they meet, wherever that is: a lane whose page passes its partner's cursor has read everything between them
   (users at exactly that `created` that the partner passed are skipped) and the partner is finished; a page it
   still has in flight is dropped. A fixed boundary costs a part-filled last page on its one side; a meeting point
   only when the two would otherwise both ask for the last page, so a lane stops when the users left between the
   two fit in its partner's page already in flight.
3. Work stealing: a worker with no lane left helps where the most users are left. A lane paging alone gets a
   partner paging from its far end (no guess where the users are). A pair is cut at the middle of the users between
   their cursors, from the density at both, taken as linear in between: the lower lane stops there and a new lane
   pages up from there to meet the upper one (several waiting workers: several cuts, a lane down and a lane up from
   each). A lane that stopped for its partner's page in flight, which then fell short (an import day hidden between
   two sparse cursors), goes on from its cursor. Alone, a lane's users left come from the density at its cursor and
   just past its end (the first page of the lane starting there, or the probe's newest page): the cursor's alone
   underestimates a lane whose users crowd toward its end (a growing org's newest one by 3x).
4. A lane that has read `split_at` users (a `search` is reported to stop at 50,000 results) restarts its query at
   its cursor, skipping the ids it already passed at exactly that `created`; when all it read share that one
   millisecond, no restart can get further: `PartitionTooLargeError`.

Exactly once: the ranges cover all time (a hint, however wrong, only decides where the first ones are cut) and only
ever split in two; within a range the two lanes read disjoint parts, separated by their cursors and the ids passed at
them, all changed under one lock. The listing's order is checked page by page; a server that does not sort is
refused rather than trusted.

Fixed windows (`partitions=N`, or `windows=`) run here too, for what they share: each is one ascending lane, never
helped nor split, that restarts at its cursor at `split_at` (4.).
"""

from __future__ import annotations

import bisect
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from okta_sync.errors import PartitionTooLargeError, UnsortedListingError
from okta_sync.timestamps import parse_okta_time
from okta_sync.users.paging_pool import PagingPool, query_pages, subset
from okta_sync.users.partitions import Window

_DENSITY_USERS = 20  # a page with fewer tells too little of the density where it ends
_MEET_WITHIN = 0.9  # pages: a pair this close is left to the lane whose page is in flight (both would overlap)
_IDLE_WAIT_SECONDS = 0.05
HINT_POINTS = 33  # the quantiles a listing reports: minimum, 31 inner, maximum (any worker count picks from them)
_MAX_HINT_POINTS = 257
_MAX_READ_SPANS = 4096  # pages remembered for the hint's quantiles (more are merged with their neighbours)
_MAX_EPOCH_MS = 253402300800000  # 10000-01-01: later is not a `created` value


@dataclass(eq=False)
class Lane:
    """Users created in [start, end) in epoch ms (None: open), paged in `created` order: ascending from `start`, or
    descending from `end` when `down`. A lane with a `partner` shares [start, end) with it, paged from the other
    end: the two stop where they meet."""

    start: int | None
    end: int | None
    skip: frozenset[str] = frozenset()
    cursor: int | None = None  # `created` of the last user read
    first: int | None = None  # `created` of the first user read
    read: int = 0
    recent: tuple[int, int] = (0, 0)  # users in the last page and the `created` span (ms) they covered
    finished: bool = False
    ties: set[str] = field(default_factory=set)  # ids passed at exactly `cursor`
    down: bool = False
    partner: Lane | None = field(default=None, repr=False)
    busy: bool = False  # a worker pages it

    def window(self) -> Window:
        """What is left to query: from the cursor on (at it: `ties` are skipped) to the far end."""
        if self.cursor is None:
            return Window(self.start, self.end)
        return Window(self.start, self.cursor + 1) if self.down else Window(self.cursor, self.end)


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
    """The shared pool and hand-off, with `created` ranges paged from both ends and split when a worker is idle."""

    idle_wait = _IDLE_WAIT_SECONDS

    def __init__(self, client, search, workers, include_deprovisioned, split_at, limit, page_size, *,
                 keep_text=False, created_hint: dict[str, Any] | None = None, windows: list[Window] | None = None):
        super().__init__(client, search, workers, include_deprovisioned, split_at, limit, keep_text=keep_text)
        self.page_size = page_size
        self.hint = created_hint
        self.windows = windows  # fixed: one ascending lane each, never split nor helped
        self.completed = False
        self.lanes: list[Lane] = []
        self.todo_lanes: list[Lane] = []
        self.top: int = 0  # the newest `created` seen by the probe + 1 ms: where estimates of open lanes end
        self.splits = 0
        self.users_read = 0  # by the lanes, each once (ties a lane skips are not counted)
        self.density_at: dict[int, float] = {}  # users per ms just past a `created` value: a lane's first page
        self.probe_pages: list[list[dict[str, Any]]] = []
        self.newest_density = 0.0  # users per ms among the newest, when a lane paged down from now
        self.read_spans: list[tuple[int, int, int]] = []  # (oldest, newest, users) of each page a lane read
        self.hinted = False  # the lanes were cut at a hint's quantiles, which then also tell where users are

    # -- plan ---------------------------------------------------------------------------------------------------
    def plan(self) -> None:
        if self.windows is not None:
            self.todo_lanes = [Lane(window.start, window.end, window.skip) for window in self.windows]
            return
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
                         for share in equal_mass_shares(low_density, high_density, _gaps(self.workers))}
                        - {lo, self.top})
        # users created after `hi` are all in the descending page: the listing holds every user created before it
        # began (one created while it runs may or may not be in it, as in any paging)
        self.todo_lanes = _paired_lanes([lo, *bounds, self.top], self.workers, seen)

    def _plan_from_hint(self, hint: dict[str, Any]) -> None:
        """A range per two workers (fewer if the hint's users fill fewer pages) cut at the hint's quantiles, each
        paged from both ends; the outer ranges are open, so all time is covered."""
        quantiles = hint["quantiles"]
        self.hinted = True
        lanes = min(self.workers, math.ceil(hint["users"] / self.page_size))
        bounds = sorted(set(hint_boundaries(quantiles, _gaps(lanes))))
        edges: list[int | None] = [None, *bounds, None]
        self.top = quantiles[-1] + 1
        # the newest lane's end density, as the probe's newest page would give it (users crowd there in a growing
        # org: the last quantile step's mean density can be hundreds of times lower)
        self.density_at[self.top] = hint.get("top_density") or \
            hint["users"] / (len(quantiles) - 1) / max(1, quantiles[-1] - quantiles[-2])
        self.todo_lanes = _paired_lanes(edges, lanes, frozenset())

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
        org. Each page's users are taken as spread evenly over the range it covered: pages are narrow where users
        crowd (an import day is a few pages one second wide)."""
        if not self.completed or self.windows is not None:
            return None
        segments = list(self.read_spans)
        for page in self.probe_pages:
            created = [_created(user) for user in page]
            if created:
                segments.append((min(created), max(created), len(created)))
        quantiles = quantiles_of_segments(segments, points)
        if quantiles is None or quantiles[-1] <= quantiles[0]:
            return None
        hint = {"quantiles": quantiles, "users": self.users_read + sum(len(page) for page in self.probe_pages)}
        newest = max((lane for lane in self.lanes if lane.recent[0] > 1 and not lane.down),
                     key=lambda lane: lane.cursor, default=None)
        top = self.density_at.get(self.top, 0.0)  # the probe's newest page, or the hint's
        if newest is not None and newest.cursor >= self.top - 1:  # a lane read the newest users: its last page
            top = max(top, newest.recent[0] / max(1, newest.recent[1]))  # (over- rather than underestimated)
        top = max(top, self.newest_density)
        if top > 0:
            hint["top_density"] = float(f"{top:.6g}")
        return hint

    # -- scheduling ---------------------------------------------------------------------------------------------
    def _take_item(self) -> Lane | None:
        lane = self.todo_lanes.pop(0) if self.todo_lanes else self._steal()
        if lane is not None:
            if not any(known is lane for known in self.lanes):  # a lane that stopped early may go on
                self.lanes.append(lane)
            lane.busy = True
        return lane

    def _finish_item(self, lane: Lane) -> None:
        lane.finished, lane.busy = True, False

    def _steal(self) -> Lane | None:
        """Under the lock: more hands on the work with the most users left, or None when none is worth it. A lane
        paging alone gets a partner paging from its far end (no guess where the users are: the two meet wherever);
        a pair's range is cut at the middle of the users between them (by the densities at both cursors) into a
        lane that stops there and a new pair. Fixed windows get no help."""
        if self.windows is not None:
            return None
        best, best_left = None, 0.0
        for lane in self.lanes:
            paired = lane.partner is not None and not lane.partner.finished
            if lane.finished or (lane.down and paired):
                continue  # a pair is looked at from its lower lane
            # users left once the pages in flight are read (a busy lane has one): another lane helps when they
            # would take the lanes on them more than one more round trip
            working = [one for one in (lane, lane.partner) if one is not None and one.busy and not one.finished]
            left = self._left(lane) - len(working) * self.page_size
            if left > max(1, len(working)) * self.page_size and left > best_left:
                best, best_left = lane, left
        if best is None:
            return None
        partner = best.partner
        if partner is not None and partner.finished:  # it stopped early (the page this one had in flight was to
            if partner.busy:  # reach it, and did not): it goes on from its cursor once its worker lets it go
                return None
            partner.finished = False
            self.splits += 1
            return partner
        if partner is None:  # page the rest from the other end
            helper = Lane(best.start, best.end, best.skip, down=not best.down, partner=best)
            best.partner = helper
            self.splits += 1
            return helper
        low, high = (partner, best) if best.down else (best, partner)
        idle = self.workers - self.active  # this worker and those waiting with it
        pieces = 2 if idle < 3 else min(idle // 2 + 1, int(best_left // (2 * self.page_size)))  # >= 2 pages each
        cuts = self._cuts(low.cursor, high.cursor, self._density(low), self._density(high), max(2, pieces))
        if idle < 3:  # one more lane, up from the middle to meet the upper one; the lower one stops there
            upper = Lane(cuts[0], high.end, high.skip, partner=high)
            high.partner, high.start = upper, cuts[0]
            low.partner, low.end = None, cuts[0]
            self.splits += 1
            return upper
        # several workers wait: a pair of lanes from each cut, every range between the cursors paged from both ends
        lanes, below = [], low
        for cut in cuts:
            lanes.append(Lane(below.start, cut, high.skip, down=True, partner=below))
            below.partner, below.end = lanes[-1], cut
            below = Lane(cut, high.end, high.skip)
            lanes.append(below)
        below.partner, high.partner, high.start = high, below, cuts[-1]
        self.splits += len(cuts)
        self.todo_lanes[:0] = lanes[1:]
        return lanes[0]

    def _left(self, lane: Lane) -> float:
        """Users left to read by a lane (and its partner, for a pair), if the densities it has seen hold over the
        rest of its range."""
        if lane.finished or lane.cursor is None or lane.read < 2:
            return 0.0
        partner = lane.partner
        if partner is not None:  # from the cursors of both (one that stopped early still bounds this one)
            if partner.cursor is None or partner.read < 2:
                return 0.0
            return self._between(*((partner, lane) if lane.down else (lane, partner))) or 0.0
        far = self._far_end(lane)
        if far is None or abs(far - lane.cursor) < 2:
            return 0.0
        here = self._density(lane)
        there = self.density_at.get(far, here)
        return self._users(far, lane.cursor, there, here) if lane.down else \
            self._users(lane.cursor, far, here, there)

    def _between(self, low: Lane, high: Lane) -> float | None:
        """Users left between a pair's cursors (linear density between theirs), None before both have read."""
        if low.cursor is None or high.cursor is None or low.read < 2 or high.read < 2:
            return None
        return self._users(low.cursor, high.cursor, self._density(low), self._density(high))

    def _users(self, low: int, high: int, at_low: float, at_high: float) -> float:
        """Users created in [low, high): as the hint's quantiles say, where they reach (they know an import day that
        two sparse cursors on either side of it cannot), else from the densities at both ends taken as linear
        (exact for a steadily growing org)."""
        if high <= low:
            return 0.0
        linear = (at_low + at_high) / 2 * (high - low)
        if not self.hinted:
            return linear
        quantiles, users = self.hint["quantiles"], self.hint["users"]
        newest = quantiles[-1]
        known = users * (_rank(quantiles, min(high, newest + 1)) - _rank(quantiles, min(low, newest + 1)))
        return known + (linear * (high - max(low, newest + 1)) / (high - low) if high > newest + 1 else 0.0)

    def _cuts(self, low: int, high: int, at_low: float, at_high: float, pieces: int) -> list[int]:
        """Where to cut [low, high) into `pieces` of equal users (by the hint where it knows, else the densities)."""
        shares = equal_mass_shares(at_low, at_high, pieces)
        if self.hinted:
            quantiles = self.hint["quantiles"]
            below, above = _rank(quantiles, low), _rank(quantiles, high)
            if above - below > 1e-9 and high <= quantiles[-1] + 1:
                points = [_at_rank(quantiles, below + (above - below) * k / pieces) for k in range(1, pieces)]
                shares = [(point - low) / (high - low) for point in points]
        span = high - low
        return sorted({low + max(1, min(span - 1, int(span * share))) for share in shares})

    def _far_end(self, lane: Lane) -> int | None:
        """Where a lane's users end: its end (its start paging down; None if open), or, open upward, the newest user
        known when the run began (now, once the lane reads past that: the org grew since the hint)."""
        if lane.down:
            return lane.start
        if lane.end is not None:
            return lane.end
        if lane.cursor is not None and lane.cursor >= self.top:  # at `top - 1` it still reads that ms's ties
            return int(time.time() * 1000)
        return self.top

    @staticmethod
    def _density(lane: Lane) -> float:
        """Users per ms where the lane's cursor is: its last page's (an import day is dense where the cursor is,
        not before it nor after it), or all it read when that page held too few users to tell."""
        count, span = lane.recent
        if count >= _DENSITY_USERS:
            return count / max(1, span)
        return lane.read / max(1, abs(lane.cursor - lane.first))

    # -- paging -------------------------------------------------------------------------------------------------
    def _page_item(self, lane: Lane) -> None:
        with self.lock:
            window, skip, cursor = lane.window(), frozenset(lane.ties) | lane.skip, lane.cursor
        while not self._page_query(lane, window, skip):
            with self.lock:  # `split_at` reached: go on from the cursor, skipping what was read at it
                if lane.cursor == cursor:  # all of it at one `created` millisecond: a restart would serve it again
                    raise PartitionTooLargeError(f"more than split_at={self.split_at} users share one `created` "
                                                 "millisecond: a search that stops at that many cannot page them")
                window, skip, cursor = lane.window(), frozenset(lane.ties) | lane.skip, lane.cursor

    def _page_query(self, lane: Lane, window: Window, skip: frozenset[str]) -> bool:
        """Page one query of the lane; True when the lane is done, False when it must restart at its cursor."""
        if lane.finished:  # its partner read its range before it began
            return True
        pages = self._query_pages(window.expression(self.search), sort_by="created",
                                  sort_order="desc" if lane.down else "asc")
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
            with self.lock:  # the query ran out: all up to the far end is read, the partner need not ask
                if lane.partner is not None:
                    lane.partner.finished = True
            return True
        finally:
            pages.close()

    def _take(self, lane: Lane, page: list[dict[str, Any]], skip: frozenset[str]) -> tuple[list, bool]:
        """The page's users that are the lane's to read, and True once it has read its range.

        Its range ends where it ends now (a split may have moved the end) or, when its partner has read, at the
        partner's cursor: users at exactly that `created` that the partner passed are skipped, and a user past it
        means the two met (every user between them is now read: the partner is finished; a page it still has in
        flight is dropped)."""
        created = [_created(user) for user in page]
        with self.lock:
            if lane.finished:
                return [], True
            order = created if lane.cursor is None else [lane.cursor, *created]
            _check_order(list(reversed(order)) if lane.down else order)
            partner, taken, done = lane.partner, [], False
            met = partner is not None and partner.cursor is not None
            limit = partner.cursor if met else (lane.start if lane.down else lane.end)
            for i, value in enumerate(created):
                if limit is not None and (value < limit if lane.down else value > limit if met else value >= limit):
                    done = True
                    break
                if value != lane.cursor:
                    lane.ties = set()
                    lane.cursor = value
                    if lane.first is None:
                        lane.first = value
                user_id = page[i]["id"]
                lane.ties.add(user_id)
                if met and value == limit and user_id in partner.ties:
                    continue  # the partner read it
                taken.append(i)
            if done and partner is not None:
                partner.finished = True  # everything in its range is read
            if taken:
                first, last = created[taken[0]], created[taken[-1]]
                if lane.read == 0 and len(taken) > 1:
                    edge = lane.end if lane.down else lane.start
                    if edge is not None:
                        self.density_at.setdefault(edge, len(taken) / max(1, abs(last - edge)))
                    elif lane.down:  # the newest users, read first by the lane paging down from now
                        self.newest_density = len(taken) / max(1, first - last)
                lane.recent = (len(taken), abs(last - first))
                self.read_spans.append((min(first, last), max(first, last), len(taken)))
                if len(self.read_spans) > _MAX_READ_SPANS:  # a huge org: halve them, neighbours in time merged
                    spans = sorted(self.read_spans)
                    self.read_spans = [(a[0], max(a[1], b[1]), a[2] + b[2]) for a, b in zip(spans[::2], spans[1::2])]
                    if len(spans) % 2:
                        self.read_spans.append(spans[-1])
                lane.read += len(taken)
                self.users_read += sum(1 for i in taken if page[i]["id"] not in skip)
                self.lock.notify_all()
            if met and not done and not partner.finished:
                between = self._between(*((partner, lane) if lane.down else (lane, partner)))
                if between is not None and between <= _MEET_WITHIN * self.page_size:
                    done = True  # the partner's next page, already asked for, reads up to here: the rest is its
        return self._kept(page, skip, taken), done or len(page) == 0


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


def _rank(quantiles: list[int], moment: int) -> float:
    """The share of users created before `moment`, by evenly spaced quantiles (linear between them)."""
    if moment <= quantiles[0]:
        return 0.0
    if moment > quantiles[-1]:
        return 1.0
    i = bisect.bisect_left(quantiles, moment) - 1  # quantiles[i] < moment <= quantiles[i + 1]
    step = quantiles[i + 1] - quantiles[i]
    return (i + (moment - quantiles[i]) / step) / (len(quantiles) - 1)


def _at_rank(quantiles: list[int], share: float) -> int:
    """The moment before which `share` of the users were created (the inverse of `_rank`)."""
    position = min(max(share, 0.0), 1.0) * (len(quantiles) - 1)
    i = min(int(position), len(quantiles) - 2)
    return int(quantiles[i] + (quantiles[i + 1] - quantiles[i]) * (position - i))


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


def _gaps(lanes: int) -> int:
    """How many ranges `lanes` first lanes page: two lanes to a range, from both ends."""
    return max(1, (lanes + 1) // 2)


def _paired_lanes(edges: list[int | None], lanes: int, skip: frozenset[str]) -> list[Lane]:
    """A lane ascending and a lane descending over each range between `edges` (the last range alone when `lanes`
    is odd), the ascending ones first."""
    ups = [Lane(start, end, skip) for start, end in zip(edges, edges[1:])]
    downs = []
    for up in ups if 2 * len(ups) <= max(lanes, 2) else ups[:-1]:
        up.partner = Lane(up.start, up.end, skip, down=True, partner=up)
        downs.append(up.partner)
    return [*ups, *downs]


def _check_order(created: list[int]) -> None:
    if any(b < a for a, b in zip(created, created[1:])):
        raise UnsortedListingError("the users listing sorted by created came back out of order; "
                                   "partitions cannot be split safely against this server")


def _created(user: dict[str, Any]) -> int:
    return parse_okta_time(user["created"])

