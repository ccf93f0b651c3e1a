"""Membership changes from a feed: read (CSV or JSON Lines: `group`, `user`, `action`), plan against the org, push.

Report, never guess: a row naming an unknown, ambiguous, `BUILT_IN` or `APP_GROUP` group, or an unknown user, is
skipped with the reason and nothing else in that row is done; an add of a member already there (or a remove of a
non-member) is `unchanged`; a second row for the same group and user is skipped (the first decides). Errors and
reasons name line numbers and columns, never a refused value.

    group   a group id (`00g...`) or a group's exact name
    user    a user id (`00u...`) or login (case-insensitive, as Okta compares logins)
    action  add or remove
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import IO, Any

from okta_sync.errors import ChangesFeedError, OktaApiError, OktaSyncError, PushFailedError
from okta_sync.server_text import holds_unsafe_text
from okta_sync.sync.reports import neutralize_formula

COLUMNS = ("group", "user", "action")
ACTIONS = ("add", "remove")
MAX_ROWS = 100_000
MAX_LINE_BYTES = 64 * 1024
MAX_KEY_CHARS = 1024  # a group name or a login
# A feed (and its plan) is held in memory whole: 100,000 rows of ~100 bytes is ~10 MiB, so 64 MiB is ample.
MAX_FEED_BYTES = 64 * 1024 * 1024
WRITABLE_TYPE = "OKTA_GROUP"
_OKTA_ID = re.compile(r"[A-Za-z0-9]{1,64}\Z")
PLANNED, UNCHANGED, SKIPPED = "planned", "unchanged", "skipped"
APPLIED, FAILED, DRY_RUN, NOT_ATTEMPTED = "applied", "failed", "dry_run", "not_attempted"
REPORT_COLUMNS = ("line", "group", "user", "action", "group_id", "user_id", "status", "reason", "error_code",
                  "error_summary")


def read_bounded(file: IO[bytes], max_bytes: int, *, what: str) -> bytes:
    """All of `file`, refused (`ChangesFeedError`) once it holds more than `max_bytes`: reads at most one byte more."""
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ChangesFeedError(f"{what} is larger than {max_bytes} bytes; split it")
    return data


@dataclass(frozen=True)
class MembershipRow:
    line: int
    group: str | None
    user: str | None
    action: str | None
    issue: str | None = None  # why the row cannot be used as it is (named by column, never by value)


@dataclass(frozen=True)
class MembershipEntry:
    """One feed row, decided: `planned` (to push), `unchanged` or `skipped` (with the reason)."""

    line: int
    group: str | None
    user: str | None
    action: str | None
    status: str
    group_id: str | None = None
    user_id: str | None = None
    reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, number: int) -> "MembershipEntry":
        """A plan line (a file in the run folder: checked again, ids must be Okta ids)."""
        try:
            entry = cls(**json.loads(text))
        except (ValueError, TypeError, RecursionError):
            raise ChangesFeedError(f"plan line {number}: not a membership plan entry") from None
        if entry.status not in (PLANNED, UNCHANGED, SKIPPED) or not isinstance(entry.line, int) \
                or isinstance(entry.line, bool):
            raise ChangesFeedError(f"plan line {number}: status must be planned, unchanged or skipped, line a number")
        if entry.status == PLANNED and not (entry.action in ACTIONS and _is_id(entry.group_id)
                                            and _is_id(entry.user_id)):
            raise ChangesFeedError(f"plan line {number}: a planned change needs an action and Okta ids")
        return entry


@dataclass(frozen=True)
class MembershipOutcome:
    entry: MembershipEntry
    status: str
    error_code: str | None = None
    error_summary: str | None = None

    def report_row(self) -> dict[str, Any]:
        e = self.entry
        return {"line": e.line, "group": e.group, "user": e.user, "action": e.action, "group_id": e.group_id,
                "user_id": e.user_id, "status": self.status, "reason": e.reason, "error_code": self.error_code,
                "error_summary": self.error_summary}


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_OKTA_ID.match(value))


# -- reading ------------------------------------------------------------------------------------------------------
def read_membership_feed(file: IO[bytes], *, format: str | None = None, max_rows: int = MAX_ROWS,
                         max_line_bytes: int = MAX_LINE_BYTES,
                         max_bytes: int = MAX_FEED_BYTES) -> list[MembershipRow]:
    """The feed's rows (at most `max_rows` and `max_bytes`; a longer feed is refused as a whole,
    `ChangesFeedError`, after reading at most `max_bytes` + 1 bytes and parsing at most `max_rows` + 1 rows)."""
    data = read_bounded(file, max_bytes, what="the feed")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ChangesFeedError("not valid UTF-8; save the file as UTF-8") from None
    del data
    if format is None:  # the first non-blank line's first character
        first = re.search(r"\S", text)
        format = "jsonl" if first is not None and first.group() == "{" else "csv"
    if format not in ("csv", "jsonl"):
        raise ChangesFeedError("format must be csv or jsonl")
    rows = _jsonl_rows(text, max_line_bytes) if format == "jsonl" else _csv_rows(text, max_line_bytes)
    kept = list(islice(rows, max_rows + 1))  # never more than one row past the cap is made
    if len(kept) > max_rows:
        raise ChangesFeedError(f"the feed holds more than {max_rows} rows; split it")
    return kept


def _text_lines(text: str) -> Iterator[str]:
    """`text`'s lines, each with its `\\n`, split on `\\n` only (U+2028 and the like may stand in a JSON string)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _csv_rows(text: str, max_line_bytes: int) -> Iterator[MembershipRow]:
    reader = csv.reader(_text_lines(text), strict=True)
    header = _next_record(reader)
    if header is None:
        raise ChangesFeedError("the feed is empty")
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing or len(names) != len(set(names)):
        raise ChangesFeedError(f"the CSV header must name each of {', '.join(COLUMNS)} once (missing: "
                               f"{', '.join(missing) or 'none'})")
    position = {c: names.index(c) for c in COLUMNS}
    while (cells := _next_record(reader)) is not None:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if sum(len(c.encode("utf-8", "surrogatepass")) for c in cells) > max_line_bytes:
            yield MembershipRow(line, None, None, None, f"longer than {max_line_bytes} bytes")
            continue
        values = {c: (cells[i].strip() if i < len(cells) else "") for c, i in position.items()}
        yield _row(line, values)


def _next_record(reader: Any) -> list[str] | None:
    """The next CSV record; a malformed one (a stray quote, a cell past the csv module's field limit) refuses the
    feed naming the line, never the text."""
    try:
        return next(reader, None)
    except csv.Error:
        raise ChangesFeedError("not valid CSV (a stray quote, or a cell longer than the csv module's limit)",
                               line=reader.line_num) from None


class _Members(dict):
    """A JSON object whose repeated names are noted (the feed must not be guessed from the last one)."""

    repeated = False


def _members(pairs: list[tuple[str, Any]]) -> _Members:
    members = _Members(pairs)
    members.repeated = len(members) != len(pairs)
    return members


def _refuse_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON values")


def _jsonl_rows(text: str, max_line_bytes: int) -> Iterator[MembershipRow]:
    for line, raw in enumerate(_text_lines(text), 1):
        if not raw.strip():
            continue
        if len(raw.encode("utf-8", "surrogatepass")) > max_line_bytes:
            yield MembershipRow(line, None, None, None, f"longer than {max_line_bytes} bytes")
            continue
        try:
            obj = json.loads(raw, object_pairs_hook=_members, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            yield MembershipRow(line, None, None, None, "not a JSON object")
            continue
        if not isinstance(obj, dict):
            yield MembershipRow(line, None, None, None, "not a JSON object")
            continue
        if obj.repeated:
            yield MembershipRow(line, None, None, None, "a member is repeated")
            continue
        values = {c: obj.get(c) for c in COLUMNS}
        if not all(v is None or isinstance(v, str) for v in values.values()):
            yield MembershipRow(line, None, None, None, "group, user and action must be strings")
            continue
        yield _row(line, {c: (v or "").strip() for c, v in values.items()})


def _row(line: int, values: dict[str, str]) -> MembershipRow:
    for column in COLUMNS:
        if not values[column]:
            return MembershipRow(line, None, None, None, f"{column} is empty")
        if len(values[column]) > MAX_KEY_CHARS or holds_unsafe_text(values[column]):
            return MembershipRow(line, None, None, None, f"{column} is longer than {MAX_KEY_CHARS} characters "
                                                         "or holds control characters")
    action = values["action"].lower()
    if action not in ACTIONS:
        return MembershipRow(line, values["group"], values["user"], None, "action must be add or remove")
    return MembershipRow(line, values["group"], values["user"], action)


# -- planning -----------------------------------------------------------------------------------------------------
def plan_membership_changes(client: Any, rows: Iterable[MembershipRow]) -> Iterator[MembershipEntry]:
    """Decide each row against the org: one listing of the groups, one lookup per distinct user key and one read of
    each distinct user's groups (`okta.groups.read` and `okta.users.read`)."""
    by_id: dict[str, dict[str, Any]] = {}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for group in client.list_groups():
        if isinstance(group, dict) and _is_id(group.get("id")):
            by_id[group["id"]] = group
            name = (group.get("profile") or {}).get("name") if isinstance(group.get("profile"), dict) else None
            if isinstance(name, str):
                by_name.setdefault(name, []).append(group)
    users: dict[str, dict[str, Any] | None] = {}
    groups_of: dict[str, set[str]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for row in rows:
        base = dict(line=row.line, group=row.group, user=row.user, action=row.action)
        if row.issue is not None:
            yield MembershipEntry(**base, status=SKIPPED, reason=row.issue)
            continue
        group, reason = _resolve_group(row.group, by_id, by_name)
        if group is None:
            yield MembershipEntry(**base, status=SKIPPED, reason=reason)
            continue
        if row.user not in users:
            users[row.user] = client.find_user("id" if _looks_like_user_id(row.user) else "login", row.user)
        user = users[row.user]
        if user is None or not _is_id(user.get("id")):
            yield MembershipEntry(**base, status=SKIPPED, group_id=group["id"], reason="unknown user")
            continue
        ids = dict(group_id=group["id"], user_id=user["id"])
        pair = (group["id"], user["id"])
        if pair in first_line:
            yield MembershipEntry(**base, **ids, status=SKIPPED,
                                  reason=f"line {first_line[pair]} already names this group and user")
            continue
        first_line[pair] = row.line
        if user["id"] not in groups_of:
            groups_of[user["id"]] = {g["id"] for g in client.list_user_groups(user["id"])
                                     if isinstance(g, dict) and _is_id(g.get("id"))}
        member = group["id"] in groups_of[user["id"]]
        if member == (row.action == "add"):
            yield MembershipEntry(**base, **ids, status=UNCHANGED,
                                  reason="already a member" if member else "not a member")
            continue
        yield MembershipEntry(**base, **ids, status=PLANNED)


def _looks_like_user_id(key: str) -> bool:
    return key.startswith("00u") and _is_id(key)


def _resolve_group(key: str, by_id: dict, by_name: dict) -> tuple[dict | None, str | None]:
    group = by_id.get(key)
    if group is None:
        named = by_name.get(key, [])
        if len(named) > 1:
            return None, f"ambiguous group name: {len(named)} groups have it; use the group id"
        if not named:
            return None, "unknown group"
        group = named[0]
    kind = group.get("type")
    if kind != WRITABLE_TYPE:
        return None, (f"{kind} group: Okta changes memberships of OKTA_GROUP groups only"
                      if kind in ("BUILT_IN", "APP_GROUP") else "not an OKTA_GROUP group")
    return group, None


# -- pushing ------------------------------------------------------------------------------------------------------
def push_membership_changes(client: Any, entries: Iterable[MembershipEntry], *, dry_run: bool,
                            done: Callable[[MembershipEntry], MembershipOutcome | None] = lambda e: None,
                            record: Callable[[MembershipOutcome], None] = lambda o: None
                            ) -> Iterator[MembershipOutcome]:
    """Each entry's outcome, in order. `done` returns an outcome a journal already holds (a retried push sends it
    no more); `record` is called once a change is applied, before the next is sent. After an error a retry may
    fix, the rest is `not_attempted` and that error is raised once every outcome was handed out; failed changes
    (refused by Okta) raise `PushFailedError` at the end, so a retry sends them (and only them) again."""
    stop: OktaSyncError | None = None
    failed = 0
    for entry in entries:
        if entry.status != PLANNED:
            yield MembershipOutcome(entry, entry.status)
            continue
        if dry_run:
            yield MembershipOutcome(entry, DRY_RUN)
            continue
        replayed = done(entry)
        if replayed is not None:
            yield replayed
            continue
        if stop is not None:
            yield MembershipOutcome(entry, NOT_ATTEMPTED)
            continue
        try:
            if entry.action == "add":
                client.add_group_member(entry.group_id, entry.user_id)
            else:
                client.remove_group_member(entry.group_id, entry.user_id)
            outcome = MembershipOutcome(entry, APPLIED)
        except OktaApiError as error:
            if error.retryable:
                stop = error
                yield MembershipOutcome(entry, NOT_ATTEMPTED)
                continue
            failed += 1
            yield MembershipOutcome(entry, FAILED, getattr(error, "error_code", None),
                                    getattr(error, "error_summary", None))
            continue
        except OktaSyncError as error:
            if not error.retryable:
                raise
            stop = error
            yield MembershipOutcome(entry, NOT_ATTEMPTED)
            continue
        record(outcome)
        yield outcome
    if stop is not None:
        raise stop
    if failed:
        raise PushFailedError(f"{failed} membership change(s) failed; the report says which and why")


def write_report(outcomes: Iterable[MembershipOutcome], file: IO[str]) -> dict[str, int]:
    """The report as CSV (cells a spreadsheet would run as a formula are neutralised); counts by status."""
    writer = csv.DictWriter(file, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        row = outcome.report_row()
        writer.writerow({k: neutralize_formula(v) if isinstance(v, str) else v for k, v in row.items()})
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
