"""Pushing a plan to Okta: partial updates, bounded concurrency, a report row for every intended change.

Before an update the user is re-read by id (the plan came from `search`, which is eventually consistent, or from a
feed planned earlier). Per attribute, against the fresh value:
    fresh == planned old  -> sent (nothing changed since planning)
    fresh == planned new  -> `unchanged` (someone already made the change)
    anything else         -> `skipped` (changed in Okta since planning: never overwrite a newer value)
The update is conditional on the version re-read (`If-Match` with its `ETag`): a change landing between the re-read
and the POST makes Okta answer 412 instead of being overwritten, and the user is re-read and decided again as above
(at most `MAX_PRECONDITION_REREADS` times). An org that sends no ETag gets unconditional updates.
A failure of one user is reported and the push goes on; a failure that would fail every user (the token, the key,
TLS) stops it and the rest is reported `not_attempted`. An update whose response was lost (it may have landed) is
never re-sent blindly: the user is re-read and only what is still missing is sent again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from okta_sync.sync.change_plan import DEPROVISIONED, DEPROVISIONED_REASON
from okta_sync.http.concurrency import DEFAULT_CEILING, AdaptiveConcurrency
from okta_sync.errors import (
    AuthenticationError, ConfigurationError, OktaApiError, OktaConnectionError, OutcomeUnknownError,
    PreconditionFailedError, RateLimitError, TokenRequestError,
)
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.metrics import NoMetrics
from okta_sync.server_text import server_text
from okta_sync.sync.progress import Progress
from okta_sync.sync.reports import ReportRow, ReportStatus, rows_for_change
from okta_sync.users.api import UserVersion

log = logging.getLogger(__name__)

CHANGED_SINCE_PLANNING = "changed in Okta since the plan was made; not overwritten (the next run re-plans it)"
ALREADY_THERE = "Okta already has this value"
CONFIRMED_BY_REREAD = "the update's response was lost; a re-read confirmed it was applied"
MAX_UPDATE_SENDS = 3  # an update whose response keeps getting lost is sent at most this often
MAX_PRECONDITION_REREADS = 2  # a user changing under every conditional update is re-read at most this often
KEPT_CHANGING = (f"the user kept changing in Okta (HTTP 412 after {MAX_PRECONDITION_REREADS} re-reads); nothing was "
                 f"written (the next run re-plans it)")


class UsersApi(Protocol):
    """What the push needs. `get_user_with_etag` and `if_match` are optional: without them updates are
    unconditional (a change landing between the re-read and the POST would be overwritten)."""

    def get_user(self, id_or_login: str) -> dict[str, Any]: ...
    def update_profile(self, user_id: str, profile: dict[str, Any]) -> dict[str, Any]: ...


class ReportSink(Protocol):
    def write(self, row: ReportRow) -> None: ...


class Journal(Protocol):
    """Durable per-change progress: what a retried task must not redo."""

    def done(self, user_id: str) -> list[ReportRow] | None: ...
    def record(self, user_id: str, rows: list[ReportRow]) -> None: ...


@dataclass
class PushOptions:
    """`adaptive`: `max_concurrency` is where the in-flight count starts; it then follows the observed time per
    change and the update bucket's limit (Little's law), up to `concurrency_ceiling` (see `okta_sync.concurrency`).
    Without it, `max_concurrency` changes are in flight at most."""

    dry_run: bool = False
    max_concurrency: int = 4
    reread: bool = True
    adaptive: bool = False
    concurrency_ceiling: int = DEFAULT_CEILING


def push_changes(
    users: UsersApi,
    changes: Iterable[ProfileChange],
    report: ReportSink,
    options: PushOptions,
    *,
    journal: Journal | None = None,
    progress: Progress | None = None,
) -> None:
    """Apply every change and write its report rows. Raises after reporting if the push had to stop."""
    metrics = getattr(users, "metrics", None) or NoMetrics()
    if options.dry_run:
        for change in changes:
            for row in rows_for_change(change, ReportStatus.DRY_RUN):
                report.write(row)
                metrics.incr(f"changes.{row.status}")
        return
    _Pusher(users, report, options, journal, progress, metrics).run(changes)


class _Pusher:
    def __init__(self, users, report, options, journal, progress, metrics):
        self.metrics = metrics
        self.users = users
        self.report = report
        self.options = options
        self.journal = journal
        self.progress = progress
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self.in_flight = _in_flight(options, getattr(users, "rate_limiter", None))

    def run(self, changes: Iterable[ProfileChange]) -> None:
        pending: dict[Future, ProfileChange] = {}
        remaining = iter(changes)
        with ThreadPoolExecutor(max_workers=self.in_flight.ceiling, thread_name_prefix="okta-push") as pool:
            for change in remaining:
                if self.fatal is not None:
                    self._not_attempted(change)
                    continue
                replay = self.journal.done(change.user_id) if self.journal else None
                if replay is not None:
                    self._write(replay)
                    continue
                pending[pool.submit(self._timed_apply, change)] = change
                if len(pending) >= self.in_flight.ceiling * 2:  # bounded: the plan is never all in memory
                    self._collect(pending, wait(pending, return_when=FIRST_COMPLETED).done)
            self._collect(pending, list(pending))
        if self.fatal is not None:
            raise self.fatal

    def _timed_apply(self, change: ProfileChange) -> list[ReportRow]:
        with self.in_flight.slot():
            began = time.monotonic()
            rows = self._apply(change)
            self.in_flight.observe(time.monotonic() - began)
        return rows

    def _collect(self, pending: dict[Future, ProfileChange], done: Iterable[Future]) -> None:
        for future in list(done):
            change = pending.pop(future)
            try:
                rows = future.result()
            except _Fatal as fatal:
                self.fatal = self.fatal or fatal.error
                rows = list(rows_for_change(change, ReportStatus.NOT_ATTEMPTED, reason=f"push stopped: {fatal.error}"))
            self._write(rows)
            if self.journal is not None and rows and rows[0].status != ReportStatus.NOT_ATTEMPTED:
                self.journal.record(change.user_id, rows)

    def _not_attempted(self, change: ProfileChange) -> None:
        self._write(list(rows_for_change(change, ReportStatus.NOT_ATTEMPTED, reason=f"push stopped: {self.fatal}")))

    def _write(self, rows: list[ReportRow]) -> None:
        for row in rows:
            self.report.write(row)
            self.metrics.incr(f"changes.{row.status}")
        if self.progress is not None:
            self.progress.advance(users=1, **{str(rows[0].status): 1} if rows else {})

    def _apply(self, change: ProfileChange) -> list[ReportRow]:
        if self.fatal is not None:
            raise _Fatal(self.fatal)
        rows: list[ReportRow] = []  # attributes already settled (unchanged, skipped) keep their rows on failure
        try:
            rows.extend(self._apply_one(change))
            return rows
        except OktaApiError as error:
            # every user would fail the same way (ScopeNotConfiguredError is also a ConfigurationError)
            if isinstance(error, (RateLimitError, AuthenticationError, TokenRequestError, ConfigurationError)):
                raise _Fatal(error) from None
            reason = KEPT_CHANGING if isinstance(error, PreconditionFailedError) else error.hint
            return rows + list(rows_for_change(_unsettled(change, rows), ReportStatus.FAILED, error_code=error.error_code,
                                               error_summary=error.error_summary, reason=reason))
        except OktaConnectionError as error:
            return rows + list(rows_for_change(_unsettled(change, rows), ReportStatus.FAILED, reason=str(error)))
        except Exception as error:  # token, key, TLS, configuration: every other user would fail the same way
            raise _Fatal(error) from None

    def _apply_one(self, change: ProfileChange) -> Iterator[ReportRow]:
        fresh_profile, etag = None, None
        if self.options.reread:
            fresh = self._read(change.user_id)
            if fresh.user.get("status") == DEPROVISIONED:
                yield from rows_for_change(change, ReportStatus.SKIPPED, reason=DEPROVISIONED_REASON)
                return
            fresh_profile, etag = _profile(fresh.user), fresh.etag
        to_send = yield from _against_fresh(change, change.changes, fresh_profile, ReportStatus.UNCHANGED, ALREADY_THERE)
        lost = rereads = 0
        while to_send:
            update = ProfileChange(change.user_id, change.login, change.status, to_send, change.source, change.line)
            try:
                self._update(change.user_id, update.update_body()["profile"], etag)
            except OutcomeUnknownError as error:
                lost += 1
                if not self.options.reread or lost == MAX_UPDATE_SENDS:
                    raise
                log.warning("%s; re-reading user %s to see whether it landed", error, server_text(change.user_id))
                fresh = self._read(change.user_id)
                fresh_profile, etag = _profile(fresh.user), fresh.etag
                to_send = yield from _against_fresh(change, to_send, fresh_profile, ReportStatus.APPLIED,
                                                    CONFIRMED_BY_REREAD)
                continue
            except PreconditionFailedError:
                if rereads == MAX_PRECONDITION_REREADS:
                    raise
                rereads += 1
                log.info("user %s changed in Okta after it was re-read (412); re-reading it and deciding again",
                         server_text(change.user_id))  # from the plan file: escaped like a server's text
                fresh = self._read(change.user_id)
                if fresh.user.get("status") == DEPROVISIONED:
                    yield from rows_for_change(update, ReportStatus.SKIPPED, reason=DEPROVISIONED_REASON)
                    return
                fresh_profile, etag = _profile(fresh.user), fresh.etag
                to_send = yield from _against_fresh(change, to_send, fresh_profile, ReportStatus.UNCHANGED,
                                                    ALREADY_THERE)
                continue
            yield from rows_for_change(update, ReportStatus.APPLIED)
            return

    def _read(self, user_id: str) -> UserVersion:
        read = getattr(self.users, "get_user_with_etag", None)
        if read is None:  # a UsersApi without ETags: updates stay unconditional
            return UserVersion(self.users.get_user(user_id), None)
        return read(user_id)

    def _update(self, user_id: str, profile: dict[str, Any], etag: str | None) -> None:
        if etag is None:
            self.users.update_profile(user_id, profile)
        else:
            self.users.update_profile(user_id, profile, if_match=etag)


class _FixedConcurrency:
    """`count` threads: each is one change in flight."""

    def __init__(self, count: int):
        if count < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.ceiling = count

    def slot(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def observe(self, seconds: float) -> None:
        pass


def _in_flight(options: PushOptions, rate_limiter: Any) -> AdaptiveConcurrency | _FixedConcurrency:
    if not options.adaptive:
        return _FixedConcurrency(options.max_concurrency)
    ceiling = max(options.max_concurrency, options.concurrency_ceiling)
    return AdaptiveConcurrency(options.max_concurrency, ceiling, rate_limiter=rate_limiter)


class _Fatal(Exception):
    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _against_fresh(change: ProfileChange, changes: dict[str, tuple[Any, Any]], fresh_profile: dict[str, Any] | None,
                   done: ReportStatus, done_reason: str) -> Generator[ReportRow, None, dict[str, tuple[Any, Any]]]:
    """Per attribute against the fresh profile: yield the rows of those already at the new value (`done`) or changed
    by someone else (skipped); return those still to send. Without a fresh profile everything is still to send."""
    to_send: dict[str, tuple[Any, Any]] = {}
    for name, (old, new) in changes.items():
        current = fresh_profile.get(name) if fresh_profile is not None else old
        if _same(current, old):
            to_send[name] = (old, new)
        elif _same(current, new):
            yield _row(change, name, old if done == ReportStatus.APPLIED else current, new, done, reason=done_reason)
        else:
            yield _row(change, name, current, new, ReportStatus.SKIPPED, reason=CHANGED_SINCE_PLANNING)
    return to_send


def _profile(user: dict[str, Any]) -> dict[str, Any]:
    profile = user.get("profile")
    return profile if isinstance(profile, dict) else {}


def _unsettled(change: ProfileChange, settled: list[ReportRow]) -> ProfileChange:
    done = {row.attribute for row in settled}
    remaining = {name: values for name, values in change.changes.items() if name not in done}
    return ProfileChange(change.user_id, change.login, change.status, remaining, change.source, change.line)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _row(change: ProfileChange, name: str, old: Any, new: Any, status: ReportStatus, reason: str) -> ReportRow:
    return ReportRow(change.user_id, change.login, name, old, new, status, reason=reason, source=change.source,
                     line=change.line)


