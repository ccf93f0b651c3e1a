"""A bounded pool of workers paging `list_users` queries for one consumer: the partitioned listing's loop, apart from
what it pages (`partition_stealing` decides that).

Workers take an item of work (a lane), page it and hand the pages to the consumer through a queue of
`workers` slots, so at most that many pages wait in memory. A worker's error stops the others and is raised to the
consumer; closing the consumer's generator stops the workers and joins them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from okta_sync.users.pages import UserPage

DEPROVISIONED = "DEPROVISIONED"
STOP_POLL_SECONDS = 0.1

Item = TypeVar("Item")


class PagingPool(Generic[Item]):
    """The pool and the hand-off; a subclass says what an item is through `_take_item`, `_page_item` and
    `_finish_item`, and pages with `_query_pages`, `_kept` and `_put`."""

    idle_wait = STOP_POLL_SECONDS  # how long an idle worker waits for work before looking again

    def __init__(self, client: Any, search: str | None, workers: int, include_deprovisioned: bool,
                 split_at: int | None, limit: int | None, *, keep_text: bool = False):
        self.client = client
        self.search = search
        self.workers = workers
        self.include_deprovisioned = include_deprovisioned
        self.split_at = split_at
        self.limit = limit
        self.keep_text = keep_text  # ask for `UserPage`s (each user's JSON text kept, for the export)
        self.active = 0  # items being paged: one may still add work while any is active
        self.lock = threading.Condition()
        self.out: queue.Queue = queue.Queue(maxsize=workers)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    # -- what a subclass decides --------------------------------------------------------------------------------
    def _take_item(self) -> Item | None:
        """Under the lock: the next item to page, or None when there is none right now."""
        raise NotImplementedError

    def _page_item(self, item: Item) -> None:
        """Page one item, handing its pages to `_put`."""
        raise NotImplementedError

    def _finish_item(self, item: Item) -> None:
        """Under the lock: the item is done (paged, stopped or failed)."""

    # -- the consumer -------------------------------------------------------------------------------------------
    def pages(self) -> Iterator[list[dict[str, Any]]]:
        threads = [threading.Thread(target=self._work, name=f"okta-partition-{n}", daemon=True)
                   for n in range(self.workers)]
        for thread in threads:
            thread.start()
        finished = 0
        try:
            while finished < len(threads):
                item = self.out.get()
                if self.error is not None:
                    raise self.error
                if item is None:
                    finished += 1
                else:
                    yield item
            if self.error is not None:
                raise self.error
        finally:
            self.stop.set()
            with self.lock:
                self.lock.notify_all()
            for thread in threads:
                thread.join()

    # -- the workers --------------------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while (item := self._next_item()) is not None:
                try:
                    self._page_item(item)
                finally:
                    with self.lock:
                        self._finish_item(item)
                        self.active -= 1
                        self.lock.notify_all()
        except BaseException as error:  # handed to the consumer, which raises it
            with self.lock:
                self.error = self.error or error
            self.stop.set()
        finally:
            self._put(None, force=True)

    def _next_item(self) -> Item | None:
        """The next item, waiting while others are paged (they may add work); None once all is done or stopping."""
        with self.lock:
            while not self.stop.is_set():
                item = self._take_item()
                if item is not None:
                    self.active += 1
                    return item
                if self.active == 0:
                    return None
                self.lock.wait(self.idle_wait)
            return None

    def _query_pages(self, search: str, **sort: str) -> Iterator[list[dict[str, Any]]]:
        return query_pages(self.client, search, self.limit, self.keep_text, **sort)

    def _kept(self, page: list[dict[str, Any]], skip: frozenset[str], taken: list[int] | None = None
              ) -> list[dict[str, Any]]:
        """The page's users at `taken` (all by default), less those in `skip` and, unless included, DEPROVISIONED
        ones."""
        if taken is None:
            if not skip and self.include_deprovisioned:
                return page
            taken = range(len(page))
        indexes = [i for i in taken if page[i]["id"] not in skip
                   and (self.include_deprovisioned or page[i].get("status") != DEPROVISIONED)]
        return subset(page, indexes)

    def _put(self, item: Any, *, force: bool = False) -> bool:
        """Hand an item to the consumer, waiting while it is busy; False once the run is stopping."""
        while True:
            if self.stop.is_set() and not force:
                return False
            try:
                self.out.put(item, timeout=STOP_POLL_SECONDS)
                return True
            except queue.Full:
                if force and self.stop.is_set():
                    try:  # the consumer is gone; make room so the sentinel never blocks a join
                        self.out.get_nowait()
                    except queue.Empty:
                        pass


def query_pages(client: Any, search: str, limit: int | None, keep_text: bool, **sort: str
                ) -> Iterator[list[dict[str, Any]]]:
    """The pages of one `search` (as `UserPage`s keeping each user's JSON text when `keep_text`)."""
    listing = client.list_users(search=search, limit=limit, **sort)
    return listing.text_pages() if keep_text else listing.pages()


def subset(page: list[dict[str, Any]], indexes: list[int]) -> list[dict[str, Any]]:
    """The users at `indexes`, keeping a `UserPage`'s JSON text; the page itself when that is all of them."""
    if len(indexes) == len(page):
        return page
    if isinstance(page, UserPage):
        return page.subset(indexes)
    return [page[i] for i in indexes]
