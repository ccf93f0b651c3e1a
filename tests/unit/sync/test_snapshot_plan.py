"""Planning a changes feed from one listing gives exactly the plan of one read per row, at a listing's cost.

Against the dev org (real sockets): random feeds keyed by id or login (unknown keys, logins in another case,
shortnames Okta's path would resolve, logins Okta cannot take in the path, duplicates, DEPROVISIONED users) are
planned both ways and must give the same entries and report rows; a snapshot feed of 2,000 rows costs about one
listing's pages and no single-user read at plan time.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.sync.change_plan import Skipped, plan_changes_feed
from okta_sync.sync.changes_feed import read_changes_feed
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.sync.reports import ReportStatus, rows_for_plan_entry
from okta_sync.sync.snapshot_plan import (
    LISTING, PER_ROW, ListingIndex, ListingLookup, build_listing_index, estimate_cost, feed_lookup,
)

EXTRA_LOGINS = ("jdoe@example.com", "ops/bot@example.com", "semi;colon@example.com", "Mixed.Case@Example.com",
                "Straße.Łukasz@example.com")
USERS_GET = "GET /api/v1/users/{id}"
USERS_LIST = "GET /api/v1/users"


def _client(org) -> OktaClient:
    c = org.connection
    return OktaClient(OktaConfig(org_url=c["org_url"], client_id=c["client_id"], private_key_path=c["private_key_path"],
                                 key_id=c["key_id"], max_attempts=2, max_retry_time=10, max_concurrency=4))


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=450, seed=12, deprovisioned_fraction=0.1, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-snapshot"))
    with DevOrg(options) as org:
        for login in EXTRA_LOGINS:
            org.admin.add_user({"login": login, "email": "x@example.com", "firstName": "F", "lastName": "L",
                                "title": "Before"})
        yield org


@pytest.fixture(scope="module")
def client(org):
    with _client(org) as client:
        yield client


@pytest.fixture(scope="module")
def users(org):
    return [{"id": u["id"], "login": u["profile"]["login"], "status": u["status"], "title": u["profile"].get("title")}
            for u in org.admin.users()]


def _scrambled_case(rng: random.Random, text: str) -> str:
    return "".join(ch.upper() if rng.random() < 0.5 else ch.lower() for ch in text)


def _key(rng: random.Random, kind: str, users: list[dict]) -> str:
    user = rng.choice(users)
    roll = rng.random()
    if kind == "id":
        if roll < 0.1:
            return "00u" + "".join(rng.choice("abcdefXYZ0123") for _ in range(17))  # not in the org
        if roll < 0.15:
            return user["id"].lower()  # ids are compared exactly
        if roll < 0.18:
            return rng.choice(["..", "a/b", "00u;x"])
        return user["id"]
    if roll < 0.1:
        return f"nobody{rng.randrange(10**6)}@example.com"
    if roll < 0.3:
        return _scrambled_case(rng, user["login"])
    if roll < 0.38:
        return user["login"].split("@")[0]  # a shortname: Okta's path resolves it, a feed row must not
    if roll < 0.48:
        return rng.choice(EXTRA_LOGINS)
    return user["login"]


def _feed_text(seed: int, kind: str, rows: int, users: list[dict]) -> str:
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([kind, "title", "department"])
    keys = [_key(rng, kind, users) for _ in range(rows)]
    keys += rng.sample(keys, k=min(len(keys), rng.randrange(0, 3)))  # duplicates (in another case for logins)
    for key in keys:
        title = rng.choice(["", "Before", "After", f"T{rng.randrange(5)}", "  spaced  "])
        writer.writerow([key, title, rng.choice(["", "Ops"])])
    return out.getvalue()


def _plan(feed, find_user):
    return list(plan_changes_feed(feed, find_user))


def _report(entries):
    return [row for entry in entries for row in rows_for_plan_entry(entry)]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["id", "login"]), rows=st.integers(1, 60))
def test_a_feed_planned_from_a_listing_equals_the_plan_of_one_read_per_row(client, users, seed, kind, rows):
    text = _feed_text(seed, kind, rows, users)
    by_row = _plan(read_changes_feed(io.StringIO(text)), client.find_user)
    feed = read_changes_feed(io.StringIO(text))
    with feed_lookup(client, feed.rows, strategy=LISTING) as found:
        by_listing = _plan(feed, found.find_user)
        assert found.index.complete and found.find_user.api_lookups == 0
    assert by_listing == by_row
    assert _report(by_listing) == _report(by_row)


def test_deprovisioned_shortname_and_unreachable_logins_are_answered_as_by_path(org, client, users):
    deprovisioned = next(u for u in users if u["status"] == "DEPROVISIONED")
    text = ("login,title\n"
            f"{deprovisioned['login'].upper()},Gone\n"  # found (DEPROVISIONED): skipped with its reason
            "jdoe,Shortname\n"                          # Okta's path answers jdoe@example.com: not found
            "OPS/BOT@example.com,Slash\n"               # not in the path: searched per row
            "mixed.case@example.com,Lower\n"
            "semi;colon@example.com,Semi\n")
    by_row = _plan(read_changes_feed(io.StringIO(text)), client.find_user)
    with feed_lookup(client, 5, strategy=LISTING) as found:
        by_listing = _plan(read_changes_feed(io.StringIO(text)), found.find_user)
    assert by_listing == by_row
    kinds = [type(e).__name__ for e in by_listing]
    assert kinds == ["Skipped", "Skipped", "ProfileChange", "ProfileChange", "ProfileChange"]
    assert "DEPROVISIONED" in by_listing[0].reason and by_listing[0].user_id == deprovisioned["id"]
    assert by_listing[1].reason == "no Okta user with login 'jdoe'"


def test_a_listing_cut_short_by_its_budget_reads_only_the_rows_it_did_not_reach(org, client, users):
    text = _feed_text(7, "id", 200, users)
    by_row = _plan(read_changes_feed(io.StringIO(text)), client.find_user)
    cost = dataclasses.replace(estimate_cost(200, max_workers=4, strategy=LISTING), page_budget=1, partitions=2)
    index = build_listing_index(client, cost)
    try:
        assert not index.complete and index.pages == 1
        lookup = ListingLookup(index, client.find_user)
        before = org.admin.stats()["requests"].get(USERS_GET, 0)
        by_listing = _plan(read_changes_feed(io.StringIO(text)), lookup)
        reads = org.admin.stats()["requests"].get(USERS_GET, 0) - before
    finally:
        index.close()
    assert by_listing == by_row
    assert 0 < lookup.api_lookups < 200
    assert reads <= lookup.api_lookups  # keys that name no user (`..`, `a/b`) cost nothing either way


def test_the_choice_follows_the_cost_of_each_bucket():
    assert estimate_cost(50).strategy == PER_ROW  # a small (delta) feed is read row by row
    snapshot = estimate_cost(100_000, max_workers=8)
    assert snapshot.strategy == LISTING and snapshot.listing_requests == 1 + 500 + 16
    assert estimate_cost(100_000, org_users=20_000_000).strategy == PER_ROW  # a small slice of a huge org
    # A single-user read bucket 200x the listing's makes 1,000 reads cheaper than a listing of 5 pages.
    limits = {"users_list": 10, "user_read": 2000}
    assert estimate_cost(1000, limits=limits).strategy == PER_ROW
    assert estimate_cost(1000).strategy == LISTING
    with pytest.raises(ValueError, match="strategy"):
        estimate_cost(10, strategy="guess")


def test_the_index_answers_alone_only_what_it_can_answer_exactly(tmp_path):
    asked = []
    index = ListingIndex(tmp_path)
    try:
        index.add_page([
            {"id": "00uA", "status": "ACTIVE", "profile": {"login": "Ann@example.com"}},
            {"id": "00uB", "status": "ACTIVE", "profile": {"login": "twin@example.com"}},
            {"id": "00uC", "status": "ACTIVE", "profile": {"login": "TWIN@example.com"}},  # Okta forbids; untrusted
            {"id": "00u/D", "status": "ACTIVE", "profile": {"login": "slash/x@example.com"}},
            {"id": "00uE", "status": "ACTIVE", "profile": "not an object"},
            "not a user",
        ])
        index.finish(complete=True)
        lookup = ListingLookup(index, lambda kind, key: asked.append((kind, key)) or None)
        assert lookup("login", "ANN@EXAMPLE.COM")["id"] == "00uA"
        assert lookup("id", "00ua") is None and lookup("id", "00uA")["id"] == "00uA"  # ids compare exactly
        assert lookup("login", "ann") is None  # no shortnames
        assert lookup("id", "00u/D") is None  # find_user never sends such an id
        assert lookup("login", "slash/x@example.com") is None  # found by search, but not re-readable by id
        assert lookup("login", "a\nb@example.com") is None  # a control character: no request either way
        assert lookup("id", "00uE") == {"id": "00uE", "status": "ACTIVE", "profile": "not an object"}
        assert asked == []
        assert lookup("login", "Twin@example.com") is None and asked == [("login", "Twin@example.com")]
        assert lookup.api_lookups == 1
        with pytest.raises(ValueError, match="key_kind"):
            lookup("email", "x")
    finally:
        index.close()
    assert not index.path.exists()


@pytest.fixture(scope="module")
def snapshot_org(tmp_path_factory):
    options = DevOrgOptions(users=2000, seed=31, deprovisioned_fraction=0.05, messy_fraction=0, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-snapshot-2000"))
    with DevOrg(options) as org:
        yield org


def test_a_snapshot_feed_costs_one_listing_and_no_single_user_read_at_plan_time(snapshot_org):
    org = snapshot_org
    everyone = org.admin.users()
    assert len(everyone) == 2000
    rng = random.Random(3)
    changed = set(rng.sample([u["id"] for u in everyone if u["status"] != "DEPROVISIONED"], 20))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "title"])
    for user in everyone:  # what an HR system exports: every user, 1% differing
        title = "Changed title" if user["id"] in changed else (user["profile"].get("title") or "")
        writer.writerow([user["id"], title])
    feed = read_changes_feed(io.StringIO(out.getvalue()))
    with _client(org) as client:
        org.admin.reset_stats()
        with feed_lookup(client, feed.rows) as found:
            entries = _plan(feed, found.find_user)
        planned = org.admin.stats()["requests"]
        assert found.strategy == LISTING
        changes = [e for e in entries if isinstance(e, ProfileChange)]
        assert {c.user_id for c in changes} == changed
        assert planned.get(USERS_GET, 0) == 0
        assert 10 <= planned.get(USERS_LIST, 0) <= 10 + 2  # 2,000 users in pages of 200; a partial last page
        # The push re-reads each change by id (a listing may be stale), then updates: two requests per change.
        org.admin.reset_stats()
        report = []
        push_changes(client, changes, _Rows(report), PushOptions(max_concurrency=4))
        pushed = org.admin.stats()
    assert {r.status for r in report} == {ReportStatus.APPLIED}
    assert pushed["requests"].get(USERS_GET, 0) == 20 and pushed["updates_total"] == 20
    assert not any(isinstance(e, Skipped) for e in entries)


class _Rows:
    def __init__(self, rows):
        self.rows = rows

    def write(self, row):
        self.rows.append(row)
