"""Partitioned extraction: disjoint `search` windows on `created`, paged concurrently, merged exactly once.

One `after` cursor is latency-bound (one page per round trip); with a 300/min users-list bucket and 500 ms per
request it needs 250 s for 500 pages where the rate limit allows about 100 s. Splitting the listing into disjoint
`search` partitions and paging them concurrently (a bounded pool sharing the client's rate limiter, transport and
token) fills each rate-limit window as fast as latency allows.

Why `created`: it never changes, so a user belongs to exactly one window for the whole run (a `lastUpdated` window
would let a user who changes mid-run appear twice or not at all). The windows are `created lt b1`,
`created ge b1 and created lt b2`, ... `created ge bN`: open at both ends, so every user is covered whatever the
boundaries are; the boundaries only decide balance. They sit at quantiles of the `created` values of one probe page,
largest windows first, and there are more partitions than workers, so a skewed org still keeps every worker busy.

`search` returns DEPROVISIONED users (the default listing omits them); `include_deprovisioned=False` drops them.
A peer (SailPoint's Okta connector) reports that paging a `search` stops at 50,000 results: each window is paged
sorted by `created`, and one that has read `split_at` users starts its query again at its cursor (skipping the ids
it passed at exactly that millisecond), so no query ever relies on paging past that cap and nothing is read twice.
Pages arrive in completion order, not id order.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from okta_sync.errors import ConfigurationError
from okta_sync.timestamps import okta_time, parse_okta_time

DEFAULT_SPLIT_AT = 40_000  # under the 50,000 results a `search` is reported to stop at


class Listing(Protocol):
    def pages(self) -> Iterator[list[dict[str, Any]]]: ...
    def text_pages(self) -> Iterator[list[dict[str, Any]]]: ...


class PagedUsers(Protocol):
    """What partitioned listing needs: `OktaClient` is one (its `config` gives `max_concurrency`, `page_size`)."""

    def list_users(self, *, search: str | None = None, limit: int | None = None, sort_by: str | None = None,
                   sort_order: str | None = None) -> Listing: ...


@dataclass(frozen=True)
class Window:
    """Users created in [start, end) in epoch milliseconds; None is open-ended."""

    start: int | None
    end: int | None
    skip: frozenset[str] = frozenset()  # ids to leave out (already yielded elsewhere)

    def expression(self, search: str | None) -> str:
        terms = []
        if self.start is not None:
            terms.append(f'created ge "{okta_time(self.start)}"')
        if self.end is not None:
            terms.append(f'created lt "{okta_time(self.end)}"')
        window = " and ".join(terms) or 'created pr'
        return f"({search}) and {window}" if search else window


def created_windows(oldest_ms: int, newest_ms: int, partitions: int) -> list[Window]:
    """`partitions` windows covering all time: evenly spaced boundaries in (oldest, newest], open at both ends."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    span = max(newest_ms - oldest_ms, partitions)
    bounds = sorted({oldest_ms + span * i // partitions for i in range(1, partitions)})
    edges: list[int | None] = [None, *bounds, None]
    return [Window(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def sized_windows(created: list[int], now_ms: int, partitions: int, *, largest: float = 3.0) -> list[Window]:
    """`partitions` windows cut at quantiles of a sample of `created`, largest first, shrinking to 1/`largest`.

    Equal time spans leave some windows empty and others crowded (an org's sign-ups are uneven); quantiles
    balance them. Shrinking sizes let the pool's last windows be short, so workers finish together instead of
    one cursor paging alone at latency speed. Too small a sample falls back to equal time spans.
    """
    if len(created) < 2 * partitions:
        return created_windows(min(created, default=now_ms - 1), now_ms, partitions)
    ordered = sorted(created)
    weights = [largest + (1 / largest - largest) * i / (partitions - 1) for i in range(partitions)] \
        if partitions > 1 else [1.0]
    total, cumulative, bounds = sum(weights), 0.0, []
    for weight in weights[:-1]:
        cumulative += weight / total
        bounds.append(ordered[min(len(ordered) - 1, int(cumulative * len(ordered)))])
    edges: list[int | None] = [None, *sorted(set(bounds)), None]
    return [Window(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def probe_windows(client: PagedUsers, search: str | None, partitions: int, *,
                  limit: int | None = None) -> list[Window]:
    """One page of the listing samples `created` (windows at its quantiles); now is the newest possible."""
    now = int(time.time() * 1000) + 1
    pages = client.list_users(search=search, limit=limit).pages()
    try:
        first = next(pages, [])
    finally:
        pages.close()
    created = [parse_okta_time(u["created"]) for u in first if u.get("created")]
    return sized_windows(created, now, partitions)


def iter_user_pages_partitioned(
    client: PagedUsers,
    *,
    search: str | None = None,
    partitions: int | None = None,
    max_workers: int | None = None,
    windows: list[Window] | None = None,
    include_deprovisioned: bool = True,
    split_at: int | None = DEFAULT_SPLIT_AT,
    limit: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every user matching `search` (DEPROVISIONED included), exactly once, as pages fetched by a bounded pool;
    see `PartitionedUserListing` for the arguments."""
    return PartitionedUserListing(client, search=search, partitions=partitions, max_workers=max_workers,
                                  windows=windows, include_deprovisioned=include_deprovisioned, split_at=split_at,
                                  limit=limit).pages()


class PartitionedUserListing:
    """A partitioned listing as a value: iterate it for users, `pages()` for pages (in completion order).

    Args:
        search: Okta's `search` expression the windows narrow (default: every user).
        partitions: how many fixed `created` windows, placed at quantiles of one probe page of `limit` users;
            `windows` gives them instead (no probe). With neither, the client decides: lanes split while they
            are paged whenever a worker goes idle (`okta_sync.users.partition_stealing`).
        max_workers: concurrent cursors (default: the client's `max_concurrency`); at most this many pages wait
            in memory for the consumer. Closing the page generator stops the workers.
        include_deprovisioned: keep DEPROVISIONED users (which `search` returns).
        split_at: a window's query that has read this many users starts again at its cursor (Okta's search stops
            at 50,000 results).
        limit: users per page, for the probe too (default: the client's `page_size`).
        created_hint: for the client's own partitions, the `created_hint` of an earlier listing of the same org
            (see `parse_created_hint`): the first lanes start at once at its `created` quantiles instead of after
            a probe round trip. It only decides balance; a stale hint is corrected by splitting.

    After a complete iteration of the client's own partitions, `created_hint` holds the hint for next time.
    """

    def __init__(self, client: PagedUsers, *, search: str | None = None, partitions: int | None = None,
                 max_workers: int | None = None, windows: list[Window] | None = None,
                 include_deprovisioned: bool = True, split_at: int | None = DEFAULT_SPLIT_AT,
                 limit: int | None = None, created_hint: dict[str, Any] | None = None):
        config = getattr(client, "config", None)
        self.client = client
        self.search, self.partitions, self.windows = search, partitions, windows
        self.workers = max_workers or getattr(config, "max_concurrency", None) or 4
        if self.workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.include_deprovisioned, self.split_at = include_deprovisioned, split_at
        self.limit = limit or getattr(config, "page_size", None)
        if created_hint is not None:
            from okta_sync.users.partition_stealing import parse_created_hint

            if parse_created_hint(created_hint) is None:
                raise ConfigurationError("created_hint", "must be a listing's created_hint: {quantiles: 2 to 257 "
                                         "ascending epoch milliseconds, users: a whole number}")
        self._hint = created_hint
        self._stealing = None

    @property
    def created_hint(self) -> dict[str, Any] | None:
        """The hint for the next listing, from the last complete iteration of the client's own partitions (else
        None): quantiles of the `created` values it read and how many users it read."""
        return self._stealing.created_hint() if self._stealing is not None else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.chain.from_iterable(self.pages())

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        return self._run(text=False)

    def text_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Pages as `UserPage`s keeping each user's JSON text, for the export (see `UserListing.text_pages`)."""
        return self._run(text=True)

    def _run(self, *, text: bool) -> Iterator[list[dict[str, Any]]]:
        from okta_sync.users.partition_stealing import StealingRun

        windows = self.windows
        if self.partitions is not None and windows is None:
            windows = probe_windows(self.client, self.search, self.partitions, limit=self.limit)
        workers = self.workers if windows is None else min(self.workers, len(windows))
        run = StealingRun(self.client, self.search, workers, self.include_deprovisioned, self.split_at, self.limit,
                          self.limit or 200, keep_text=text, created_hint=self._hint if windows is None else None,
                          windows=windows)
        if windows is None:
            self._stealing = run
        return run.pages()
