"""The incremental membership export: every group (groups are few: one listing, also how deleted groups are seen),
and the full membership of each group whose `lastMembershipUpdated` moved since the watermark (of every group on the
first run or a full refresh).

Files (JSON Lines, UTF-8, one object per line):
  groups.jsonl.gz       each group as Okta listed it
  memberships.jsonl.gz  {"group_id", "user_id"} for every member of every group read
  groups_read.jsonl.gz  {"group_id"} for every group whose whole membership is in memberships.jsonl.gz
and, once they are complete, the manifest beside them (`groups.manifest.json`, the shared format of
`okta_sync.sync.manifest`, dataset `groups`): the task instance, kind, times, watermark, counts, and each file's
content SHA-256 and length.

The next watermark is never later than the moment the listing started, on the server's clock (`Date`, through the
rate limiter's `ServerClock`), less a margin: a membership change made while the listing ran (to a group listed
before the change) carries a later `lastMembershipUpdated` and is read next run. Re-reading a group is harmless: a
group read replaces its whole membership.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from okta_sync.errors import ConfigurationError, GroupExportError, ManifestError, WarehouseLoadError
from okta_sync.sync.manifest import DigestWriter, FileDigest, Manifest, Producer, manifest_name
from okta_sync.timestamps import okta_time, parse_okta_time

DATASET = "groups"
GROUPS_FILE = "groups.jsonl.gz"
MEMBERSHIPS_FILE = "memberships.jsonl.gz"
READ_FILE = "groups_read.jsonl.gz"
FILES = (GROUPS_FILE, MEMBERSHIPS_FILE, READ_FILE)
MANIFEST_FILE = manifest_name(GROUPS_FILE)  # groups.manifest.json
KINDS = ("full", "incremental")
COUNTS = ("groups", "groups_read", "memberships", "group_pages", "member_pages")
# Okta's `Date` has one-second resolution and its nodes' clocks differ a little: the watermark stays this far behind
# the listing's start (a group changed in that margin is read once more next run).
WATERMARK_MARGIN_MS = 5_000
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_OKTA_ID = re.compile(r"[A-Za-z0-9]{1,64}\Z")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def parse_watermark(value: Any, *, field_name: str = "watermark") -> str | None:
    """A stored watermark (Asset state: untrusted) in Okta's timestamp form, or None; `ConfigurationError` naming
    the field for anything else (the value is not repeated)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise ConfigurationError(field_name, "is not an Okta timestamp (YYYY-MM-DDThh:mm:ss.sssZ); run with "
                                             "full_refresh to start again")
    return value


class LineWriter(DigestWriter):
    """A `DigestWriter` (content SHA-256 and length, before compression) that also counts lines."""

    def __init__(self, file: IO[bytes]):
        super().__init__(file)
        self.lines = 0

    def write_lines(self, lines: list[bytes]) -> None:
        self.write(b"".join(lines))
        self.lines += len(lines)


@dataclass
class GroupExportResult:
    kind: str  # "full" (every group's members read) or "incremental"
    previous_watermark: str | None
    watermark: str | None  # the next run's; None when the server's clock was never seen (kept as it was)
    groups: int = 0
    groups_read: list[str] = field(default_factory=list)  # whose full membership is in memberships.jsonl
    memberships: int = 0
    group_pages: int = 0
    member_pages: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    files: tuple[FileDigest, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Counts for XCom and Asset events: never the group ids."""
        return {"kind": self.kind, "previous_watermark": self.previous_watermark, "watermark": self.watermark,
                "groups": self.groups, "groups_read": len(self.groups_read), "memberships": self.memberships,
                "group_pages": self.group_pages, "member_pages": self.member_pages, "by_type": dict(self.by_type)}

    def manifest(self, *, producer: Producer, exported_at: str, finished_at: str) -> Manifest:
        """The export's manifest (the shared format, dataset `groups`), written once the files are complete."""
        manifest = Manifest(dataset=DATASET, producer=producer, kind=self.kind, exported_at=exported_at,
                            finished_at=finished_at, watermark=self.watermark, files=self.files,
                            counts={"groups": self.groups, "groups_read": len(self.groups_read),
                                    "memberships": self.memberships, "group_pages": self.group_pages,
                                    "member_pages": self.member_pages})
        check_groups_manifest(manifest)
        return manifest


def check_groups_manifest(manifest: Manifest) -> None:
    """What a membership export's manifest must say beyond the generic format: ManifestError naming the member."""
    if manifest.dataset != DATASET:
        raise ManifestError(f"manifest: dataset is not {DATASET}")
    if manifest.kind not in KINDS:
        raise ManifestError(f"manifest: kind is not one of {', '.join(KINDS)}")
    if set(manifest.counts) != set(COUNTS):
        raise ManifestError(f"manifest: counts is not {{{', '.join(COUNTS)}}}")
    if sorted(f.name for f in manifest.files) != sorted(FILES):
        raise ManifestError(f"manifest: files does not name {', '.join(FILES)}")


def export_groups(client: Any, groups_file: IO[bytes], memberships_file: IO[bytes], read_file: IO[bytes], *,
                  watermark: str | None,
                  full_refresh: bool = False, max_workers: int | None = None, limit: int | None = None,
                  progress: Any = None, monotonic: Callable[[], float] = time.monotonic) -> GroupExportResult:
    """List every group into `groups_file`, then write the members of the groups that moved into `memberships_file`.

    Args:
        client: an `OktaClient`.
        watermark: the last complete export's (None: a full export).
        full_refresh: read every group's members whatever the watermark.
        max_workers: groups read at once (default: the connection's `max_concurrency`).
    Raises:
        OktaSyncError (any): nothing is complete; the caller discards the files and keeps the watermark.
    """
    previous = parse_watermark(watermark)
    full = full_refresh or previous is None
    result = GroupExportResult(kind="full" if full else "incremental", previous_watermark=previous, watermark=None)
    started = monotonic()
    groups_writer = LineWriter(groups_file)
    newest, to_read = _write_groups(client, groups_writer, result, None if full else previous, limit)
    listing_started = _server_now_ms(client, monotonic() - started)
    if progress is not None:
        progress.advance(groups=result.groups)
    writer = LineWriter(memberships_file)
    finished = set()
    for page in client.read_group_members(to_read, max_workers=max_workers, limit=limit):
        lines = [_membership_line(page.group_id, user) for user in page.users]
        writer.write_lines(lines)
        result.memberships += len(lines)
        result.member_pages += 1
        if page.last:
            finished.add(page.group_id)
        if progress is not None:
            progress.advance(member_pages=1, memberships=len(lines))
    missing = [g for g in to_read if g not in finished]
    if missing:  # a pool that ended without a group's last page: never a complete export
        raise GroupExportError(f"the members of {len(missing)} group(s) were not read to the end")
    result.groups_read = to_read
    read_writer = LineWriter(read_file)
    read_writer.write_lines([b'{"group_id":"%s"}\n' % group_id.encode() for group_id in to_read])
    result.files = (groups_writer.digest(GROUPS_FILE), writer.digest(MEMBERSHIPS_FILE), read_writer.digest(READ_FILE))
    result.watermark = _next_watermark(previous, newest, listing_started)
    return result


def _write_groups(client: Any, writer: LineWriter, result: GroupExportResult, since: str | None,
                  limit: int | None) -> tuple[int | None, list[str]]:
    """Each group as one line; returns the newest `lastMembershipUpdated` (ms) and the groups to read, largest
    first (`expand=stats`): a group's pages follow one cursor, so a large group started last would be a tail that
    no worker can share."""
    newest: int | None = None
    since_ms = parse_okta_time(since) if since else None
    to_read: list[tuple[int, str]] = []
    seen: set[str] = set()
    for page in client.list_groups(limit=limit, expand="stats").pages():
        result.group_pages += 1
        lines = []
        for group in page:
            group_id = _group_id(group)
            if group_id in seen:
                raise GroupExportError("the group listing named one group twice (a cursor that moved back)")
            seen.add(group_id)
            kind = group.get("type") if isinstance(group.get("type"), str) else "UNKNOWN"
            result.by_type[kind] = result.by_type.get(kind, 0) + 1
            moved = _membership_updated(group)
            if moved is not None and (newest is None or moved > newest):
                newest = moved
            # Unknown or unreadable `lastMembershipUpdated`: read the members (reading too much is safe).
            if since_ms is None or moved is None or moved > since_ms:
                to_read.append((_members_count(group), group_id))
            lines.append(_encode(group).encode("utf-8") + b"\n")
        writer.write_lines(lines)
        result.groups += len(lines)
    to_read.sort(key=lambda counted: -counted[0])  # stable: equal sizes keep the listing's order
    return newest, [group_id for _, group_id in to_read]


def _members_count(group: dict[str, Any]) -> int:
    """`_embedded.stats.usersCount` (only an ordering hint: anything else counts as 0)."""
    embedded = group.get("_embedded")
    stats = embedded.get("stats") if isinstance(embedded, dict) else None
    count = stats.get("usersCount") if isinstance(stats, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < 10**9 else 0


def _server_now_ms(client: Any, elapsed: float) -> int | None:
    """When the listing started on the server's clock (None when no `Date` was ever seen)."""
    server_clock = client.rate_limiter.server_clock
    if not server_clock.observed:
        return None
    return int((server_clock.now() - elapsed) * 1000)


def _next_watermark(previous: str | None, newest: int | None, listing_started: int | None) -> str | None:
    if listing_started is None:
        return previous  # no server time: advancing could hide a change made while listing
    if newest is None:
        return previous
    candidate = min(newest, listing_started - WATERMARK_MARGIN_MS)
    if previous is not None and candidate <= parse_okta_time(previous):
        return previous
    return okta_time(candidate)


def _group_id(group: Any) -> str:
    group_id = group.get("id") if isinstance(group, dict) else None
    if not isinstance(group_id, str) or not _OKTA_ID.match(group_id):
        raise GroupExportError("a listed group has no usable `id` (an Okta id: letters and digits)")
    return group_id


def _membership_updated(group: dict[str, Any]) -> int | None:
    value = group.get("lastMembershipUpdated")
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    return parse_okta_time(value)


def _membership_line(group_id: str, user: Any) -> bytes:
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not _OKTA_ID.match(user_id):
        raise GroupExportError("a group member has no usable `id` (an Okta id: letters and digits)")
    return b'{"group_id":"%s","user_id":"%s"}\n' % (group_id.encode(), user_id.encode())


def read_groups_read(lines: Iterable[bytes]) -> Iterable[str]:
    """The group id of each line of a groups_read file; `WarehouseLoadError` naming the line otherwise."""
    for number, line in enumerate(lines, 1):
        try:
            group_id = json.loads(line)["group_id"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deeply
            raise WarehouseLoadError(f"groups_read line {number}: not a {{group_id}} object") from None
        if not isinstance(group_id, str) or not _OKTA_ID.match(group_id):
            raise WarehouseLoadError(f"groups_read line {number}: group_id must be an Okta id")
        yield group_id


# The exact line `_membership_line` writes; any other spelling of the same object goes through json.loads.
_MEMBERSHIP_LINE = re.compile(r'\{"group_id":"([A-Za-z0-9]{1,64})","user_id":"([A-Za-z0-9]{1,64})"\}\n?')


def read_memberships(lines: Iterable[bytes]) -> Iterable[tuple[str, str]]:
    """(group_id, user_id) of each line of a memberships file; `WarehouseLoadError` naming the line otherwise."""
    exact_line = _MEMBERSHIP_LINE.fullmatch
    for number, line in enumerate(lines, 1):
        try:
            exact = exact_line(line.decode("ascii"))  # one decode, the ids come out as str
        except UnicodeDecodeError:
            exact = None
        if exact is not None:
            yield exact.groups()
            continue
        try:
            row = json.loads(line)
            group_id, user_id = row["group_id"], row["user_id"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested too deeply
            raise WarehouseLoadError(f"memberships line {number}: not a {{group_id, user_id}} object") from None
        if not (isinstance(group_id, str) and _OKTA_ID.match(group_id) and isinstance(user_id, str)
                and _OKTA_ID.match(user_id)):
            raise WarehouseLoadError(f"memberships line {number}: group_id and user_id must be Okta ids")
        yield group_id, user_id

