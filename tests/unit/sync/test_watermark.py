"""The incremental watermark (okta_sync.sync.sync_window): refused when read back or committed if it lies in the
future, committed only from a manifest whose export covered every change, and a loud word when nobody changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from okta_sync.errors import UntrustedValueError
from okta_sync.sync.manifest import FileDigest, Manifest, Producer
from okta_sync.sync.sync_window import (
    ALL_USERS_SEARCH,
    next_watermark,
    quiet_warning,
    stored_watermark,
    users_search,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
STORED = "2026-03-01T10:00:00.000Z"


def manifest(kind="incremental", search=None, watermark="2026-03-01T11:58:00.000Z", users=3,
             finished_at="2026-03-01T11:59:00.000Z") -> Manifest:
    search = search if search is not None else (ALL_USERS_SEARCH if kind == "full" else users_search(watermark=STORED))
    return Manifest(dataset="users", producer=Producer("okta_user_sync", "r", "export_users"), kind=kind,
                    exported_at="2026-03-01T11:58:30.000Z", finished_at=finished_at,
                    files=(FileDigest("users.jsonl.gz", "0" * 64, 0),), counts={"users": users, "pages": 1},
                    search=search, watermark=watermark)


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59.000Z", "2026-03-01T12:06:00.000Z", 5, ["a"], {"a": 1},
                                   "x" * 100_000, "2026-02-30T00:00:00.000Z", "yesterday SECRET"])
def test_a_stored_watermark_in_the_future_or_not_a_timestamp_is_refused_naming_the_field(value):
    with pytest.raises(UntrustedValueError) as caught:
        stored_watermark(value, now=NOW)
    assert caught.value.field == "asset state okta_users_export.watermark"
    assert "SECRET" not in str(caught.value) and "9999" not in str(caught.value)


def test_a_stored_watermark_within_the_skew_is_used():
    assert stored_watermark("2026-03-01T12:04:00.000Z", now=NOW) == "2026-03-01T12:04:00.000Z"
    assert stored_watermark(None, now=NOW) is None


def test_the_committed_watermark_is_the_manifests_when_the_export_covered_every_change():
    assert next_watermark(manifest(), stored=STORED, now=NOW)[0] == "2026-03-01T11:58:00.000Z"
    assert next_watermark(manifest("full"), stored=None, now=NOW)[0] == "2026-03-01T11:58:00.000Z"
    # a search narrower than the stored watermark's (an edited select_users XCom): kept
    narrow = manifest(search='lastUpdated gt "2026-03-01T11:00:00.000Z"')
    assert next_watermark(narrow, stored=STORED, now=NOW)[0] is None
    assert next_watermark(manifest("user_ids", search='id eq "00u1"'), stored=STORED, now=NOW)[0] is None
    assert next_watermark(manifest(watermark=None, users=0), stored=STORED, now=NOW)[0] is None
    assert next_watermark(manifest(watermark="2026-03-01T09:00:00.000Z"), stored=STORED, now=NOW)[0] is None


@pytest.mark.parametrize("watermark, finished_at, message", [
    ("9999-12-31T23:59:59.000Z", "9999-12-31T23:59:59.000Z", "later than now"),
    ("2026-03-01T11:50:00.000Z", "2026-03-01T11:30:00.000Z", "later than the export's own end"),
])
def test_a_watermark_later_than_now_or_the_export_is_refused_when_committed(watermark, finished_at, message):
    with pytest.raises(UntrustedValueError, match=message) as caught:
        next_watermark(manifest(watermark=watermark, finished_at=finished_at), stored=STORED, now=NOW)
    assert caught.value.field == "manifest.watermark" and "9999" not in str(caught.value)


def test_a_run_selecting_nobody_long_after_the_watermark_is_worth_a_warning():
    quiet = manifest(watermark=None, users=0)
    assert quiet_warning(quiet, stored=STORED, now=NOW) is None  # two hours: an ordinary quiet spell
    day_later = NOW + timedelta(hours=30)
    warning = quiet_warning(quiet, stored=STORED, now=day_later)
    assert "32 hours" in warning and "full_refresh" in warning
    assert quiet_warning(manifest(users=4), stored=STORED, now=day_later) is None
    assert quiet_warning(manifest("full", watermark=None, users=0), stored=STORED, now=day_later) is None
