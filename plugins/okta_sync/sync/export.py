"""Streaming users to JSON Lines: one user per line, one page in memory at a time."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import IO, Any, Protocol

from okta_sync.sync.progress import Progress
from okta_sync.users.pages import UserPage

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode
_ENCODED_PER_CHUNK = 8  # users encoded into one write: a few KB each


@dataclass
class ExportResult:
    users: int = 0
    pages: int = 0
    by_status: Counter = field(default_factory=Counter)
    max_last_updated: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Small metadata for XCom: counts, never users."""
        return {"users": self.users, "pages": self.pages, "by_status": dict(self.by_status),
                "max_last_updated": self.max_last_updated}


class TextListing(Protocol):
    """A listing whose pages can keep each user's JSON text (`UserListing`, `PartitionedUserListing`)."""

    def text_pages(self) -> Iterable[list[dict[str, Any]]]: ...


def write_users_jsonl(users: TextListing | Iterable[list[dict[str, Any]]], file: IO[bytes], *,
                      progress: Progress | None = None, keep: Callable[[dict[str, Any]], bool] | None = None) -> ExportResult:
    """Write each user as one JSON line (UTF-8) to a binary file.

    `users` is a listing (`client.list_users(...)`): its users are written as the server sent them, without
    re-encoding; or any iterable of pages (lists of user dicts), encoded here.
    """
    result = ExportResult()
    pages = users.text_pages() if hasattr(users, "text_pages") else users
    for page in pages:
        written = _write_page(page, file, result, keep)
        del page  # not held through the next request: one page in memory at a time (and less GC work)
        if progress is not None:
            progress.advance(pages=1, users=written)
    return result


def _write_page(page: list[dict[str, Any]], file: IO[bytes], result: ExportResult,
                keep: Callable[[dict[str, Any]], bool] | None) -> int:
    result.pages += 1
    kept = range(len(page)) if keep is None else [i for i, user in enumerate(page) if keep(user)]
    if not kept:
        return 0
    users = page if len(kept) == len(page) else [page[i] for i in kept]
    for chunk in _page_lines(page, kept):
        file.write(chunk)
    result.by_status.update(map(dict.get, users, repeat("status")))
    # Okta's timestamps share one ISO-8601 UTC format, so string order is time order.
    newest = max(filter(None, map(dict.get, users, repeat("lastUpdated"))), default="")
    if newest and (result.max_last_updated is None or newest > result.max_last_updated):
        result.max_last_updated = newest
    result.users += len(kept)
    return len(kept)


def _page_lines(page: list[dict[str, Any]], kept: Sequence[int]) -> list[bytes]:
    """One line per user (UTF-8), in pieces of a few users (a page's whole text is never one block: see
    `okta_sync.users.pages`): the server's own text when the page could be cut (no re-encoding), else encoded."""
    if isinstance(page, UserPage):
        chunks = page.json_line_chunks(kept)
        if chunks is not None:
            return chunks
    return [_encoded_lines(page, kept[i:i + _ENCODED_PER_CHUNK]) for i in range(0, len(kept), _ENCODED_PER_CHUNK)]


def _encoded_lines(page: list[dict[str, Any]], kept: Sequence[int]) -> bytes:
    text = "\n".join(_encode(page[i]) for i in kept) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape) has no UTF-8 form: escape non-ASCII
        return ("\n".join(_encode_ascii(page[i]) for i in kept) + "\n").encode("ascii")


def read_users_jsonl(file: IO[bytes]) -> Iterable[dict[str, Any]]:
    """Users back from an export, one at a time."""
    for number, line in enumerate(file, start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                raise ValueError(f"users export line {number} is not valid JSON (a truncated file?)") from None
