"""Partitioned extraction against the dev org: every user exactly once (DEPROVISIONED too), bounded concurrency."""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.users.partitions import (
    Window,
    created_windows,
    iter_user_pages_partitioned,
    sized_windows,
)
from okta_sync.timestamps import okta_time, parse_okta_time

USERS = 300


def _client(org, **overrides) -> OktaClient:
    c = org.connection
    return OktaClient(OktaConfig(org_url=c["org_url"], client_id=c["client_id"], key_id=c["key_id"],
                                 private_key_path=c["private_key_path"], **overrides))


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=USERS, seed=11, rate_limit=0, concurrency_limit=0, deprovisioned_fraction=0.1,
                            state_dir=tmp_path_factory.mktemp("partitions-org"))
    with DevOrg(options) as running:
        yield running


@pytest.fixture(scope="module")
def everyone(org):
    return {u["id"]: u for u in org.admin.users()}


def _ids(pages) -> list[str]:
    return [user["id"] for page in pages for user in page]


def test_partitions_cover_every_user_exactly_once_deprovisioned_included(org, everyone):
    with _client(org) as client:
        ids = _ids(iter_user_pages_partitioned(client, partitions=7, max_workers=3, limit=20))
    assert len(ids) == len(set(ids)) == USERS
    assert set(ids) == set(everyone)
    assert any(everyone[i]["status"] == "DEPROVISIONED" for i in ids)


def test_the_client_and_a_base_search_combine_with_the_windows(org, everyone):
    with _client(org) as client:
        ids = _ids(client.iter_user_pages_partitioned(search='status eq "ACTIVE"', partitions=5, limit=25))
    assert Counter(ids) == Counter(i for i, u in everyone.items() if u["status"] == "ACTIVE")


def test_deprovisioned_users_can_be_left_out_like_the_default_listing(org, everyone):
    with _client(org) as client:
        partitioned = _ids(iter_user_pages_partitioned(client, partitions=4, include_deprovisioned=False, limit=50))
        listed = [u["id"] for u in client.iter_users()]
    assert sorted(partitioned) == sorted(listed) == sorted(i for i, u in everyone.items() if u["status"] != "DEPROVISIONED")


def test_concurrency_is_bounded_by_the_pool_and_one_token_serves_every_worker(org):
    org.admin.configure(latency_ms=30)
    org.admin.reset_stats()
    org.app.limiter.reset_peak()
    try:
        with _client(org, max_concurrency=3) as client:
            ids = _ids(iter_user_pages_partitioned(client, partitions=9, limit=20))
    finally:
        org.admin.configure(latency_ms=0)
    stats = org.admin.stats()
    assert len(ids) == USERS
    assert 2 <= stats["peak_concurrency"] <= 3
    assert stats["tokens_issued"] == 1


def test_a_capped_search_is_split_so_no_user_is_lost(tmp_path):
    options = DevOrgOptions(users=USERS, seed=5, rate_limit=0, concurrency_limit=0, search_cap=60, state_dir=tmp_path)
    with DevOrg(options) as capped, _client(capped) as client:
        expected = {u["id"] for u in capped.admin.users()}
        truncated = _ids(iter_user_pages_partitioned(client, partitions=2, split_at=None, limit=20))
        split = _ids(iter_user_pages_partitioned(client, partitions=2, split_at=50, limit=20))
    assert len(truncated) < USERS  # the cap silently ends paging: without splitting users go missing
    assert len(split) == len(set(split)) == USERS and set(split) == expected


class _Served:
    """The client, counting the users every listing page served."""

    def __init__(self, client):
        self.client, self.users = client, 0

    def list_users(self, **kwargs):
        listing, served = self.client.list_users(**kwargs), self

        class Counted:
            def pages(self):
                for page in listing.pages():
                    served.users += len(page)
                    yield page

        return Counted()


def test_a_window_past_split_at_goes_on_from_its_cursor_reading_nothing_twice(tmp_path):
    options = DevOrgOptions(users=USERS, seed=5, rate_limit=0, concurrency_limit=0, search_cap=60, state_dir=tmp_path)
    with DevOrg(options) as capped, _client(capped) as client:
        served = _Served(client)
        ids = _ids(iter_user_pages_partitioned(served, partitions=2, max_workers=2, split_at=50, limit=20))
    assert len(ids) == len(set(ids)) == USERS
    # one probe page, then each user once (a restart serves again only the users at its cursor's millisecond);
    # splitting a window in halves re-read what the window had served: 738 users here
    assert served.users <= 20 + USERS + 10


def test_closing_the_generator_stops_the_workers(org):
    with _client(org) as client:
        pages = iter_user_pages_partitioned(client, partitions=6, max_workers=3, limit=10)
        assert next(pages)
        pages.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("okta-partition")]


def test_a_worker_error_reaches_the_consumer():
    class FailingListing:
        def __init__(self, search):
            self.search = search

        def pages(self):
            if self.search and "created ge" in self.search:
                raise RuntimeError("boom in a partition")
            yield [{"id": "00u1", "created": "2024-01-01T00:00:00.000Z", "status": "ACTIVE"}]

    class Failing:
        def list_users(self, *, search=None, limit=None, sort_by=None, sort_order=None):
            return FailingListing(search)

    with pytest.raises(RuntimeError, match="boom in a partition"):
        list(iter_user_pages_partitioned(Failing(), partitions=4, max_workers=2))


def test_windows_cover_all_time_without_overlap():
    windows = created_windows(1_000, 9_000, 4)
    assert windows[0].start is None and windows[-1].end is None
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))
    assert windows[1].expression('status eq "ACTIVE"') == (
        '(status eq "ACTIVE") and created ge "1970-01-01T00:00:03.000Z" and created lt "1970-01-01T00:00:05.000Z"')
    assert Window(None, None).expression(None) == "created pr"
    assert parse_okta_time(okta_time(1_714_521_600_123)) == 1_714_521_600_123


def test_pages_keep_each_users_json_text_only_when_asked(org):
    from okta_sync.users.pages import UserPage

    with _client(org) as client:
        assert not isinstance(next(client.iter_user_pages(limit=5)), UserPage)
        page = next(client.list_users(limit=5).text_pages())
        partitioned = next(client.list_users_partitioned(partitions=2, limit=5).text_pages())
    assert isinstance(page, UserPage) and isinstance(partitioned, UserPage)
    assert page.json_text(0).startswith('{"id":"' + page[0]["id"])


def test_windows_follow_the_sample_not_the_calendar_and_shrink():
    # Sign-ups only in [0, 1000) ms, "now" far later: equal time spans would leave every window but one empty.
    sample = [i * 5 for i in range(200)]
    windows = sized_windows(sample, 1_000_000, 8)
    assert len(windows) == 8 and windows[0].start is None and windows[-1].end is None
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))
    counts = [sum(1 for c in sample if (w.start is None or c >= w.start) and (w.end is None or c < w.end))
              for w in windows]
    assert sum(counts) == 200 and all(counts)  # every window holds users
    assert counts[0] > 2 * counts[-1] and counts == sorted(counts, reverse=True)  # largest first
    assert sized_windows([5, 6], 100, 4) == created_windows(5, 100, 4)  # too small a sample: time spans


def test_the_probe_and_every_window_page_by_the_connections_page_size():
    from tests import keys
    from tests.scripted_server import Reply, ScriptedServer, token_reply

    with ScriptedServer() as server:
        server.route("POST", "/oauth2/v1/token", token_reply())
        server.route("GET", "/api/v1/users", Reply(200, []))
        client = OktaClient(OktaConfig(org_url=server.url, client_id="0oac", private_key=keys.pkcs8_pem(keys.rsa_key()),
                                       key_id="k", page_size=50))
        assert list(iter_user_pages_partitioned(client, partitions=3, max_workers=2)) == []
        limits = [request.query["limit"] for request in server.requests_to("GET", "/api/v1/users")]
    assert len(limits) == 4 and set(map(tuple, limits)) == {("50",)}  # the probe, then three windows


def test_a_listing_is_a_value_iterated_for_users_or_pages(org, everyone):
    with _client(org, page_size=40) as client:
        listing = client.list_users(search='status eq "ACTIVE"')
        users = [user["id"] for user in listing]
        pages = list(listing.pages())  # each iteration lists anew
    assert users == [user["id"] for page in pages for user in page]
    assert set(users) == {uid for uid, user in everyone.items() if user["status"] == "ACTIVE"}
    assert len(pages) > 1 and all(len(page) <= 40 for page in pages)
