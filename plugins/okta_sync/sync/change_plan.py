"""The change plan: which users get which partial update, and why every other user considered gets none.

Two planners, both streaming (one user or one feed row in, one entry out):
- `plan_hygiene(users)`: Okta's own profiles, normalised.
- `plan_changes_feed(rows, lookup)`: desired values from a source system, as read (and normalised with the same
  rules) by `okta_sync.sync.changes_feed.read_changes_feed`.

Each yields one `PlanEntry` per user or row considered: a `ProfileChange` to send, `NoChange`, or `Skipped` with a
reason. A change carrying a value Okta would refuse is skipped whole, never sent in part.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from okta_sync.sync.changes_feed import FeedRow, RowIssue
from okta_sync.sync.profile_attributes import refusal_reason
from okta_sync.sync.profile_diff import CHANGES_FEED, HYGIENE, ProfileChange, change_from_diff
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.users.api import is_user

DEPROVISIONED = "DEPROVISIONED"
DEPROVISIONED_REASON = "user is DEPROVISIONED: Okta does not update the profile of a deactivated user"

Lookup = Callable[[str, str], Union[Mapping[str, Any], None]]


@dataclass(frozen=True)
class NoChange:
    """A user considered whose profile already has the desired values."""

    user_id: str
    login: str | None
    status: str | None
    source: str = HYGIENE
    line: int | None = None


@dataclass(frozen=True)
class Skipped:
    """A user or feed row considered and deliberately not updated.

    `changes` holds what would have changed (old is None when the user was not found or not looked up);
    `issues` the per-attribute problems behind the skip, when there are any.
    """

    reason: str
    user_id: str | None = None
    login: str | None = None
    status: str | None = None
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    issues: tuple[RowIssue, ...] = ()
    source: str = HYGIENE
    line: int | None = None


PlanEntry = Union[ProfileChange, NoChange, Skipped]


def entry_kind(entry: PlanEntry) -> str:
    """"change", "unchanged" or "skipped": the name used in counts and in the plan file."""
    if isinstance(entry, ProfileChange):
        return "change"
    if isinstance(entry, NoChange):
        return "unchanged"
    return "skipped"


def count_entries(entries: Iterable[PlanEntry], counts: Counter[str]) -> Iterator[PlanEntry]:
    """Pass `entries` through, counting them by kind into `counts` (for the XCom summary)."""
    for entry in entries:
        counts[entry_kind(entry)] += 1
        yield entry


def plan_hygiene(users: Iterable[Mapping[str, Any]], normalizer: Normalizer | None = None) -> Iterator[PlanEntry]:
    """One entry per Okta user dict (as listed by GET /api/v1/users): the normalised profile, if it differs."""
    normalizer = normalizer or Normalizer.default()
    for user in users:
        yield _plan_user(user, normalizer.normalize_profile(_profile(user)), HYGIENE, None)


def plan_changes_feed(rows: Iterable[FeedRow], lookup: Lookup, *, max_workers: int = 1) -> Iterator[PlanEntry]:
    """One entry per feed row, in feed order. `lookup(key_kind, key)` returns the Okta user dict or None
    (`OktaClient.find_user` is one; `okta_sync.sync.snapshot_plan.feed_lookup` chooses it by cost, answering a large
    feed from one listing of the org with the same answers).

    Rows with issues are skipped without a lookup; rows for unknown users are skipped, never matched by guess: a
    user whose id (or login, ignoring case) is not the row's key counts as not found, whatever the lookup returned
    (Okta's `GET /api/v1/users/{login}` also resolves a login shortname: `jdoe` finds `jdoe@example.com`).
    Row values are already normalised by the feed reader, with the rules it was given. With `max_workers` > 1 the
    lookups (one API call each) run concurrently, at most `2 * max_workers` rows ahead of the consumer.
    """
    if max_workers <= 1:
        for row in rows:
            yield _plan_row(row, lookup)
        return
    window: deque[Future[PlanEntry]] = deque()
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="okta-lookup") as pool:
        for row in rows:
            window.append(pool.submit(_plan_row, row, lookup))
            if len(window) >= 2 * max_workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def _plan_row(row: FeedRow, lookup: Lookup) -> PlanEntry:
    desired = dict(row.values)
    login = row.key if row.key_kind == "login" else None
    user_id = row.key if row.key_kind == "id" else None
    if row.issues:
        return Skipped(f"row refused: {'; '.join(issue.reason for issue in row.issues)}", user_id=user_id,
                       login=login, changes=_not_looked_up(desired), issues=row.issues, source=CHANGES_FEED,
                       line=row.line)
    assert row.key is not None  # a row without a key always carries an issue
    user = lookup(row.key_kind, row.key)
    if user is None or not is_user(user, row.key_kind, row.key):  # never a user Okta resolved by shortname
        return Skipped(f"no Okta user with {row.key_kind} {row.key!r}", user_id=user_id, login=login,
                       changes=_not_looked_up(desired), source=CHANGES_FEED, line=row.line)
    return _plan_user(user, desired, CHANGES_FEED, row.line)


def _plan_user(user: Mapping[str, Any], desired: Mapping[str, Any], source: str, line: int | None) -> PlanEntry:
    profile = _profile(user)
    user_id, login, status = user.get("id"), profile.get("login"), user.get("status")
    if not isinstance(user_id, str) or not user_id:
        return Skipped("the user has no id", login=login, status=status, source=source, line=line)
    change = change_from_diff(user, desired, source=source, line=line)
    if change is None:
        return NoChange(user_id, login, status, source=source, line=line)
    if status == DEPROVISIONED:  # only when there was something to change: otherwise nothing was intended
        return Skipped(DEPROVISIONED_REASON, user_id, login, status, changes=change.changes, source=source, line=line)
    issues = tuple(
        RowIssue(line, login or user_id, name, reason)
        for name, (_old, new) in change.changes.items()
        if (reason := refusal_reason(name, new))
    )
    if issues:
        return Skipped(f"Okta would refuse: {'; '.join(issue.reason for issue in issues)}", user_id, login, status,
                       changes=change.changes, issues=issues, source=source, line=line)
    return change


def _not_looked_up(desired: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (None, value) for name, value in desired.items()}


def _profile(user: Mapping[str, Any]) -> Mapping[str, Any]:
    profile = user.get("profile")
    return profile if isinstance(profile, Mapping) else {}
