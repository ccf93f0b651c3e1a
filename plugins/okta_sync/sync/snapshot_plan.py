"""Planning a large changes feed from one listing of the org instead of one `GET /api/v1/users/{key}` per row.

A full-snapshot feed (an HR export: every user, about 1% differing) planned row by row costs one single-user read
per row: 100,000 reads where one listing is 500 pages. `feed_lookup` chooses by cost:

- per row: `OktaClient.find_user` for each row (small feeds, or a listing that would cost more);
- listing: one partitioned listing (`search`, so DEPROVISIONED users are in it, as a read by id finds them) written
  to a SQLite file in a temporary directory, indexed by id and by lowercased login; each row is then answered from
  disk. Memory stays flat in the feed's and the org's size: pages stream into the index, SQLite's page cache is
  bounded, and no dict of profiles is ever built. Only id, status and profile are kept, in a private (0700)
  temporary directory deleted when planning ends.

Either way a row gets exactly the answer `find_user` would give: the user whose id is the key, or whose login
equals it ignoring case (never one Okta resolved by shortname), or None. Where the listing cannot answer alone it
asks `find_user`: two listed users with one login (Okta forbids it; the server decides), or a listing stopped at
its page budget (a feed much smaller than the org: no listing costs more than the rows' reads would have).

A listing is a `search`, which is eventually consistent: a user created seconds before it may be reported not
found, and a plan made from it may be stale. The push re-reads every change by id before writing (see push.py),
so a stale plan never overwrites a newer value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from okta_sync.users.partitions import Window
from okta_sync.users.api import BUCKET_USER_READ, BUCKET_USERS_LIST, NOT_IN_PATH, is_user, names_no_user

log = logging.getLogger(__name__)

PER_ROW = "per_row"
LISTING = "listing"
AUTO = "auto"
STRATEGIES = (AUTO, PER_ROW, LISTING)

# Okta's per-minute limits differ by plan and endpoint; when no response has shown the org's own (X-Rate-Limit-Limit),
# both buckets are assumed equal, which leaves the choice to the request counts.
DEFAULT_BUCKET_LIMITS = {BUCKET_USERS_LIST: 600, BUCKET_USER_READ: 600}
# Below this many rows a feed is planned row by row unless `strategy="listing"`: a delta feed against a large org
# would pay for a whole listing to answer a handful of rows.
MIN_LISTING_ROWS = 500
# The listing is chosen when its estimate is at most this share of the per-row cost: the org's size is estimated
# from the feed (a snapshot names about every user), so a margin keeps near-ties on the known path.
LISTING_MARGIN = 0.5
PAGES_PER_PARTITION = 8  # fewer partitions for small orgs: each one's last page is partial (an extra request)
SQLITE_CACHE_KIB = 8 * 1024


class FindsUsers(Protocol):
    """What the listing strategy needs: `OktaClient` is one."""

    def find_user(self, key_kind: str, key: str) -> dict[str, Any] | None: ...
    def iter_user_pages_partitioned(self, *, partitions: int | None = None, windows: list[Window] | None = None,
                                    include_deprovisioned: bool = True) -> Iterator[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class FeedCost:
    """The estimate behind the choice, in requests and in minutes of each bucket's limit."""

    rows: int
    org_users: int  # estimated: the hint given, or the feed's rows
    per_row_requests: int
    per_row_minutes: float
    listing_requests: int
    listing_minutes: float
    partitions: int
    page_budget: int | None  # the listing stops after this many pages; rows it did not reach are read one by one
    strategy: str

    def describe(self) -> str:
        return (f"{self.strategy}: {self.rows} rows would cost {self.per_row_requests} single-user reads "
                f"(~{self.per_row_minutes:.1f} min of the {BUCKET_USER_READ} bucket); a listing of ~{self.org_users} "
                f"users ~{self.listing_requests} pages (~{self.listing_minutes:.1f} min of {BUCKET_USERS_LIST})")


def estimate_cost(rows: int, *, page_size: int = 200, max_workers: int = 8, limits: Mapping[str, int] | None = None,
                  org_users: int | None = None, strategy: str = AUTO) -> FeedCost:
    """Per-row reads vs one partitioned listing, for a feed of `rows` rows.

    `limits` holds each bucket's requests per minute (`X-Rate-Limit-Limit` as seen, else `DEFAULT_BUCKET_LIMITS`);
    `org_users` the org's size if known (default: the feed's rows, as a snapshot names about every user).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    limits = {**DEFAULT_BUCKET_LIMITS, **{k: v for k, v in (limits or {}).items() if v and v > 0}}
    users = max(org_users if org_users is not None else rows, 1)
    pages = math.ceil(users / page_size)
    partitions = max(1, min(2 * max_workers, pages // PAGES_PER_PARTITION))
    # The pages, a partial last page per partition, and the probe page that places the windows' boundaries.
    listing_requests = pages + partitions + (1 if partitions > 1 else 0)
    per_row_minutes = rows / limits[BUCKET_USER_READ]
    listing_minutes = listing_requests / limits[BUCKET_USERS_LIST]
    page_budget = None  # a listing asked for is read to the end
    if strategy == AUTO:
        cheaper = listing_minutes <= LISTING_MARGIN * per_row_minutes
        strategy = LISTING if rows >= MIN_LISTING_ROWS and cheaper else PER_ROW
        # The org's size was a guess: never spend more on the listing than the rows' reads would have cost.
        page_budget = max(listing_requests, math.ceil(per_row_minutes * limits[BUCKET_USERS_LIST]))
    return FeedCost(rows, users, rows, per_row_minutes, listing_requests, listing_minutes, partitions, page_budget,
                    strategy)


class ListingIndex:
    """Users from a listing in a SQLite file, found by id or by lowercased login; one row per listed user.

    Thread-safe (one connection behind a lock): planning may run lookups concurrently when some go to the API.
    """

    def __init__(self, directory: str | Path | None = None):
        self._dir = tempfile.TemporaryDirectory(prefix="okta-listing-", dir=directory)
        self.path = Path(self._dir.name) / "users.sqlite"
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{SQLITE_CACHE_KIB}",
                       "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE users (id TEXT, login_key TEXT, user TEXT NOT NULL)")
        self._lock = threading.Lock()
        self.users = 0
        self.pages = 0
        self.complete = False  # every page of the listing was added

    def add_page(self, page: Iterable[Mapping[str, Any]]) -> None:
        rows = [_index_row(user) for user in page]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO users VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self.users += len(rows)
            self.pages += 1

    def finish(self, complete: bool) -> None:
        """Build the lookup indexes once (faster than maintaining them through every insert)."""
        with self._lock:
            self._db.execute("CREATE INDEX users_id ON users (id)")
            self._db.execute("CREATE INDEX users_login ON users (login_key)")
            self._db.execute("ANALYZE")
        self.complete = complete

    def candidates(self, key_kind: str, key: str) -> list[dict[str, Any]]:
        """The listed users whose id is `key` or whose login equals it ignoring case, one per distinct id."""
        column, value = ("id", key) if key_kind == "id" else ("login_key", key.lower())
        with self._lock:
            found = self._db.execute(
                f"SELECT id, user FROM users WHERE {column} = ? ORDER BY rowid DESC LIMIT 8", (value,)).fetchall()
        by_id: dict[Any, dict[str, Any]] = {}
        for user_id, text in found:
            by_id.setdefault(user_id, json.loads(text))  # the same user listed twice: the last version read
        return [user for user in by_id.values() if is_user(user, key_kind, key)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._dir.cleanup()


def _index_row(user: Mapping[str, Any]) -> tuple[Any, Any, str]:
    if not isinstance(user, Mapping):
        user = {}
    user_id = user.get("id")
    profile = user.get("profile")
    login = profile.get("login") if isinstance(profile, Mapping) else None
    # What planning reads (id, status, profile): the rest of Okta's user (links, timestamps) is not kept.
    kept = {name: user[name] for name in ("id", "status", "profile") if name in user}
    return (user_id if isinstance(user_id, str) else None, login.lower() if isinstance(login, str) else None,
            json.dumps(kept, ensure_ascii=False, separators=(",", ":")))


class ListingLookup:
    """`find_user`'s answers from a `ListingIndex`, asking `find_user` itself only where the index cannot answer."""

    def __init__(self, index: ListingIndex, find_user: Callable[[str, str], dict[str, Any] | None]):
        self.index = index
        self._find_user = find_user
        self._lock = threading.Lock()
        self.api_lookups = 0  # rows the index could not answer alone

    def __call__(self, key_kind: str, key: str) -> dict[str, Any] | None:
        if key_kind not in ("id", "login"):
            raise ValueError(f"key_kind must be 'id' or 'login', not {key_kind!r}")
        if names_no_user(key_kind, key):
            return None
        found = self.index.candidates(key_kind, key)
        if len(found) == 1:
            user = found[0]
            if key_kind == "login" and NOT_IN_PATH.intersection(key) and not _readable_by_id(user):
                return None  # find_user searches such a login and re-reads the user by id, which it cannot be
            return user
        if not found and self.index.complete:
            return None
        with self._lock:
            self.api_lookups += 1
        return self._find_user(key_kind, key)  # two users with one login, or a listing stopped at its budget


def _readable_by_id(user: Mapping[str, Any]) -> bool:
    user_id = user.get("id")
    return isinstance(user_id, str) and not NOT_IN_PATH.intersection(user_id)


def build_listing_index(client: FindsUsers, cost: FeedCost, *, directory: str | Path | None = None) -> ListingIndex:
    """One partitioned listing (DEPROVISIONED included) into a new `ListingIndex`, stopped at `cost.page_budget`."""
    index = ListingIndex(directory)
    complete = False
    # One window needs no probe page to place its boundaries; more are the client's own lanes, which split while
    # paged and restart at their cursor under the search cap (fixed windows over the cap are re-read from the start:
    # 1,708 requests for 1,500 pages at 300,000 users).
    windows = {"windows": [Window(None, None)]} if cost.partitions == 1 else {"partitions": None}
    try:
        pages = client.iter_user_pages_partitioned(include_deprovisioned=True, **windows)
        try:
            for page in pages:
                if cost.page_budget is not None and index.pages >= cost.page_budget:
                    break
                index.add_page(page)
            else:
                complete = True
        finally:
            pages.close()  # stops the partition workers when the budget cut the listing short
        index.finish(complete)
    except BaseException:
        index.close()
        raise
    if not complete:
        log.warning("The listing reached its budget of %d pages (%d users) before the end: the org is larger than "
                    "the feed suggests; rows not in the pages read are looked up one by one", cost.page_budget,
                    index.users)
    return index


@dataclass
class FeedLookup:
    """How a feed's rows find their users: pass `find_user` and `max_workers` to `plan_changes_feed`."""

    cost: FeedCost
    find_user: Callable[[str, str], dict[str, Any] | None]
    max_workers: int
    index: ListingIndex | None = None

    @property
    def strategy(self) -> str:
        return self.cost.strategy

    def summary(self) -> dict[str, Any]:
        """Counts for logs and XCom: the strategy, listed users and pages, rows sent to the API."""
        out: dict[str, Any] = {"strategy": self.strategy}
        if self.index is not None:
            out.update(listed_users=self.index.users, listed_pages=self.index.pages,
                       listing_complete=self.index.complete,
                       api_lookups=getattr(self.find_user, "api_lookups", 0))
        return out


@contextlib.contextmanager
def feed_lookup(client: FindsUsers, rows: int, *, strategy: str = AUTO, org_users: int | None = None,
                max_workers: int | None = None, directory: str | Path | None = None) -> Iterator[FeedLookup]:
    """Choose per-row reads or one listing for a feed of `rows` rows, and yield how its rows find their users.

    strategy: "auto" (by `estimate_cost`), "per_row" or "listing". The listing's index is deleted on exit.
    """
    config = getattr(client, "config", None)
    workers = max_workers or getattr(config, "max_concurrency", None) or 4
    cost = estimate_cost(rows, page_size=getattr(config, "page_size", None) or 200, max_workers=workers,
                         limits=_seen_limits(client), org_users=org_users, strategy=strategy)
    log.info("Changes feed lookups: %s", cost.describe())
    if cost.strategy == PER_ROW:
        yield FeedLookup(cost, client.find_user, workers)
        return
    index = build_listing_index(client, cost, directory=directory)
    try:
        lookup = ListingLookup(index, client.find_user)
        # Lookups answered from disk gain nothing from threads; a listing cut short sends rows to the API.
        yield FeedLookup(cost, lookup, 1 if index.complete else workers, index)
    finally:
        index.close()


def _seen_limits(client: Any) -> dict[str, int]:
    """Each bucket's `X-Rate-Limit-Limit` as last seen by the client's rate limiter, scaled to the app's share."""
    limiter = getattr(client, "rate_limiter", None)
    if limiter is None:
        return {}
    fraction = getattr(limiter, "fraction", 1.0) or 1.0
    limits = {}
    for bucket in (BUCKET_USERS_LIST, BUCKET_USER_READ):
        snap = limiter.snapshot(bucket)
        if snap is not None and snap.limit > 0:
            limits[bucket] = max(1, int(snap.limit * fraction))
    return limits
