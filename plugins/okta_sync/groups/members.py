"""Many groups' members read concurrently, on the users' paging pool (`users.paging_pool.PagingPool`): a bounded
number of workers each page one group's members at a time, handing pages to one consumer through a queue of
`workers` slots (at most that many pages wait in memory). The shared rate limiter paces every worker against the
`group_members` bucket, so more workers never mean more than the bucket allows.

A worker's error (a group deleted mid-run answers 404, a bound broken) stops the others and is raised to the
consumer: a part-way read is never mistaken for a complete one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from okta_sync.users.paging_pool import PagingPool


@dataclass(frozen=True)
class MemberPage:
    """One page of a group's members. `last` is True on the group's final page: its membership is then complete."""

    group_id: str
    users: list[dict[str, Any]]
    last: bool


class _MembersPool(PagingPool[str]):
    def __init__(self, groups: Any, group_ids: Iterable[str], workers: int, limit: int | None):
        super().__init__(groups, None, workers, True, None, limit)
        self._todo: deque[str] = deque(group_ids)

    def _take_item(self) -> str | None:
        return self._todo.popleft() if self._todo else None

    def _page_item(self, group_id: str) -> None:
        pages = self.client.list_group_members(group_id, limit=self.limit).pages()
        try:
            held: list[dict[str, Any]] | None = None
            for page in pages:  # one page held back, so the final one can say it is last
                if held is not None and not self._put(MemberPage(group_id, held, False)):
                    return
                held = page
            self._put(MemberPage(group_id, held or [], True))
        finally:
            pages.close()


def read_members(groups: Any, group_ids: Iterable[str], *, workers: int, limit: int | None = None
                 ) -> Iterator[MemberPage]:
    """Every page of every group's members, `workers` groups at a time (pages of different groups interleave; a
    group's own pages come in order, its last with `last=True`). Closing the iterator stops the workers.

    Args:
        groups: a `GroupsClient` (or anything with `list_group_members(group_id, limit=)`).
        group_ids: the groups to read (validated as Okta ids when each is read).
        workers: groups read at once (the connection's `max_concurrency`).
        limit: members per page (default: the connection's `page_size`).
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    return _MembersPool(groups, group_ids, workers, limit).pages()
