"""Streaming users to JSON Lines: one user per line, one page in memory at a time."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from okta_sync.progress import Progress
from okta_sync.user_pages import UserPage

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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


def write_users_jsonl(pages: Iterable[list[dict[str, Any]]], file: IO[bytes], *,
                      progress: Progress | None = None, keep: Callable[[dict[str, Any]], bool] | None = None) -> ExportResult:
    """Write each user of each page as one JSON line (UTF-8) to a binary file."""
    result = ExportResult()
    for page in pages:
        result.pages += 1
        kept = range(len(page)) if keep is None else [i for i, user in enumerate(page) if keep(user)]
        if kept:
            file.write(_page_lines(page, kept).encode("utf-8"))
            result.by_status.update([page[i].get("status") for i in kept])
            # Okta's timestamps share one ISO-8601 UTC format, so string order is time order.
            newest = max((page[i].get("lastUpdated") or "" for i in kept), default="")
            if newest and (result.max_last_updated is None or newest > result.max_last_updated):
                result.max_last_updated = newest
        result.users += len(kept)
        if progress is not None:
            progress.advance(pages=1, users=len(kept))
    return result


def _page_lines(page: list[dict[str, Any]], kept: Sequence[int]) -> str:
    """One line per user: the server's own JSON text when the page kept it (no re-encoding), else encoded."""
    if isinstance(page, UserPage):
        lines = [page.json_text(i) for i in kept]
        if not any("\n" in line or "\r" in line for line in lines):  # pretty-printed input needs re-encoding
            return "\n".join(lines) + "\n"
    return "\n".join(_encode(page[i]) for i in kept) + "\n"


def read_users_jsonl(file: IO[bytes]) -> Iterable[dict[str, Any]]:
    """Users back from an export, one at a time."""
    for number, line in enumerate(file, start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                raise ValueError(f"users export line {number} is not valid JSON (a truncated file?)") from None
