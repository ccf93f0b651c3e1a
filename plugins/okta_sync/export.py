"""Streaming users to JSON Lines: one user per line, one page in memory at a time."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from okta_sync.progress import Progress

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
        lines = []
        for user in page:
            if keep is not None and not keep(user):
                continue
            lines.append(_encode(user))
            result.by_status[user.get("status")] += 1
            last_updated = user.get("lastUpdated")
            # Okta's timestamps share one ISO-8601 UTC format, so string order is time order.
            if last_updated and (result.max_last_updated is None or last_updated > result.max_last_updated):
                result.max_last_updated = last_updated
        if lines:
            file.write(("\n".join(lines) + "\n").encode("utf-8"))
        result.users += len(lines)
        if progress is not None:
            progress.advance(pages=1, users=len(lines))
    return result


def read_users_jsonl(file: IO[bytes]) -> Iterable[dict[str, Any]]:
    """Users back from an export, one at a time."""
    for number, line in enumerate(file, start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                raise ValueError(f"users export line {number} is not valid JSON (a truncated file?)") from None
