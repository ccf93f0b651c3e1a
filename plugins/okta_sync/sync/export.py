"""Streaming users to JSON Lines: one user per line, one page in memory at a time; and the export's manifest
(okta_sync.sync.manifest): what kind of listing it is, when, its counts and its file's SHA-256."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import IO, Any, Protocol

from okta_sync.errors import ConfigurationError, ManifestError
from okta_sync.sync.manifest import FileDigest, Manifest, Producer
from okta_sync.sync.progress import Progress
from okta_sync.sync.sync_window import ALL_USERS_SEARCH
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


USERS_DATASET = "users"
FULL, INCREMENTAL, USER_IDS = "full", "incremental", "user_ids"
EXPORT_KINDS = (FULL, INCREMENTAL, USER_IDS)  # only a full export says who no longer exists


def check_export_kind(kind: str, search: str | None, filter: str | None) -> None:
    """A `full` export defines the population (users it does not list are deleted downstream), so it must be the
    listing of every user of every status: `ALL_USERS_SEARCH`, no filter. Anything narrower is not full, whatever
    rendered the `kind` (an edited XCom, a hand-made trigger)."""
    if kind not in EXPORT_KINDS:
        raise ConfigurationError("kind", f"must be one of {', '.join(EXPORT_KINDS)}")
    if kind == FULL and (search != ALL_USERS_SEARCH or filter is not None):
        raise ConfigurationError("kind", "full needs the search of every status (okta_sync.sync.sync_window."
                                         "ALL_USERS_SEARCH) and no filter; a narrower listing is incremental")


def users_manifest(*, producer: Producer, kind: str, search: str | None, exported_at: str, finished_at: str,
                   result: ExportResult, file: FileDigest) -> Manifest:
    """The manifest of a users export, written beside it once the export file is complete."""
    manifest = Manifest(dataset=USERS_DATASET, producer=producer, kind=kind, search=search, exported_at=exported_at,
                        finished_at=finished_at, watermark=result.max_last_updated,
                        counts={"users": result.users, "pages": result.pages},
                        by_status={str(k): v for k, v in result.by_status.items() if isinstance(k, str)},
                        files=(file,))
    check_users_manifest(manifest)
    return manifest


def check_users_manifest(manifest: Manifest) -> None:
    """What a users export's manifest must say beyond the generic format: ManifestError naming the member."""
    if manifest.dataset != USERS_DATASET:
        raise ManifestError(f"manifest: dataset is not {USERS_DATASET}")
    if manifest.kind not in EXPORT_KINDS:
        raise ManifestError(f"manifest: kind is not one of {', '.join(EXPORT_KINDS)}")
    if manifest.kind == FULL and manifest.search != ALL_USERS_SEARCH:
        raise ManifestError("manifest: kind is full but search is not the listing of every status")
    if set(manifest.counts) != {"users", "pages"}:
        raise ManifestError("manifest: counts is not {users, pages}")
    if len(manifest.files) != 1:
        raise ManifestError("manifest: files does not name exactly one export file")
