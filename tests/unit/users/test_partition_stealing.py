"""Partitions the client decides: lanes split while paged, every user exactly once whatever `created` looks like."""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync import OktaClient, OktaConfig
from okta_sync.errors import OktaSyncError
from okta_sync.users.partition_stealing import StealingRun, UnsortedListingError
from okta_sync.users.partitions import iter_user_pages_partitioned
from tests.in_memory_org import InMemoryOrg

USERS = 600


def _client(org, **overrides) -> OktaClient:
    c = org.connection
    return OktaClient(OktaConfig(org_url=c["org_url"], client_id=c["client_id"], key_id=c["key_id"],
                                 private_key_path=c["private_key_path"], **overrides))


@pytest.fixture(scope="module", params=["uniform", "skewed", "import_day", "stopped"])
def org(request, tmp_path_factory):
    options = DevOrgOptions(users=USERS, seed=23, rate_limit=0, concurrency_limit=0, deprovisioned_fraction=0.1,
                            latency_ms=15, created_distribution=request.param,
                            state_dir=tmp_path_factory.mktemp(f"stealing-{request.param}"))
    with DevOrg(options) as running:
        running.expected = {u["id"]: u["status"] for u in running.admin.users()}
        yield running


def _run(client, **kwargs) -> tuple[StealingRun, list[str]]:
    run = StealingRun(client, kwargs.pop("search", None), kwargs.pop("workers", 4), kwargs.pop("deprovisioned", True),
                      kwargs.pop("split_at", None), kwargs.pop("limit", 10), 10)
    return run, [user["id"] for page in run.pages() for user in page]


@pytest.mark.parametrize("workers", [1, 3, 4, 7])
def test_every_user_exactly_once_while_lanes_meet_and_split(org, workers):
    with _client(org) as client:
        run, ids = _run(client, workers=workers)
    assert Counter(ids) == Counter(org.expected.keys())  # DEPROVISIONED included, no duplicate, no gap
    if workers == 3:  # two ranges, the second paged alone at first: the idle worker pages it from its far end
        assert run.splits > 0 and any(lane.down for lane in run.lanes)


def test_lanes_meet_wherever_they_are_whatever_order_their_pages_come_back_in(org):
    """Pages held back at random (one lane of a pair running far ahead of the other, a worker stalled while its
    partner reads its whole range) still list every user once."""
    import random
    import time

    class Jittery:
        def __init__(self, client, seed):
            self.client, self.config, self.random = client, client.config, random.Random(seed)

        def list_users(self, **kwargs):
            listing = self.client.list_users(**kwargs)
            outer = self

            class Pages:
                def pages(self):
                    for page in listing.pages():
                        time.sleep(outer.random.choice([0, 0, 0, 0.01, 0.05]))
                        yield page
            return Pages()

    with _client(org) as client:
        for seed in range(3):
            run, ids = _run(Jittery(client, seed), workers=5, limit=7)
            assert Counter(ids) == Counter(org.expected.keys()), seed


def test_the_client_decides_when_no_partitions_are_given(org):
    with _client(org, max_concurrency=3) as client:
        ids = [u["id"] for page in client.iter_user_pages_partitioned(search='status eq "ACTIVE"', limit=25)
               for u in page]
        without = [u["id"] for page in iter_user_pages_partitioned(client, include_deprovisioned=False, limit=25)
                   for u in page]
    assert Counter(ids) == Counter(i for i, s in org.expected.items() if s == "ACTIVE")
    assert Counter(without) == Counter(i for i, s in org.expected.items() if s != "DEPROVISIONED")


def test_a_lane_restarts_at_its_cursor_under_a_search_cap(tmp_path):
    options = DevOrgOptions(users=300, seed=5, rate_limit=0, concurrency_limit=0, search_cap=40,
                            created_distribution="import_day", state_dir=tmp_path)
    with DevOrg(options) as capped, _client(capped) as client:
        expected = {u["id"] for u in capped.admin.users()}
        _, truncated = _run(client, workers=1)
        _, restarted = _run(client, workers=1, split_at=30)
    assert len(truncated) < 300  # the cap silently ends a lane's paging
    assert Counter(restarted) == Counter(expected)


def test_concurrency_stays_within_the_workers_and_the_threads_end(org):
    org.app.limiter.reset_peak()
    with _client(org) as client:
        pages = iter_user_pages_partitioned(client, max_workers=3, limit=10)
        next(pages)
        pages.close()
        _run(client, workers=3)
    assert org.admin.stats()["peak_concurrency"] <= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("okta-partition")]


def test_an_unsorted_server_is_refused_rather_than_trusted():
    class UnsortedListing:
        def __init__(self, sort_order):
            self.sort_order = sort_order

        def pages(self):
            created = ["2024-01-0%dT00:00:00.000Z" % d for d in (1, 5, 3)] if self.sort_order == "asc" else \
                ["2024-01-09T00:00:00.000Z"]
            yield [{"id": f"00u{n}{self.sort_order}", "created": c, "status": "ACTIVE"} for n, c in enumerate(created)]
            yield [{"id": "00uX", "created": "2024-01-08T00:00:00.000Z", "status": "ACTIVE"}]

    class Unsorted:  # a `list_users` whose listing sorted by `created` is not sorted
        def list_users(self, *, search=None, limit=None, sort_by=None, sort_order=None):
            return UnsortedListing(sort_order)

    with pytest.raises(UnsortedListingError, match="out of order"):
        list(iter_user_pages_partitioned(Unsorted(), max_workers=2))


def test_first_lanes_hold_equal_users_when_density_grows_toward_the_newest():
    from okta_sync.users.partition_stealing import equal_mass_shares

    assert equal_mass_shares(1.0, 1.0, 4) == [0.25, 0.5, 0.75]  # even density: even time spans
    growing = equal_mass_shares(1.0, 10.0, 4)
    mass = [0.5 * (x * (1 + (1 + 9 * x))) for x in [0.0, *growing, 1.0]]  # users up to x under a linear density
    parts = [b - a for a, b in zip(mass, mass[1:])]
    assert max(parts) - min(parts) < 1e-9 and growing == sorted(growing) and growing[0] > 0.25


def test_a_lane_whose_users_crowd_toward_its_end_gets_a_partner_from_that_end():
    """A growing org's newest lane: the cursor's density alone says one page is left where five are (so the lane
    paged alone at the end of a run); the density just past its end (the probe's newest page) says more, and an idle
    worker pages the rest down from the end: no guess where the users are, the two meet wherever."""
    from okta_sync.users.partition_stealing import Lane

    run = StealingRun(None, None, 8, True, None, 200, 200)
    run.top = 10_000
    lane = Lane(0, run.top, cursor=5_000, first=0, read=250, recent=(120, 2_000),  # 0.06 users/ms at the cursor
                busy=True)  # a page in flight
    run.lanes = [lane]
    assert run._left(lane) == pytest.approx(300)  # 1.5 pages by the cursor's density: the page in flight reads
    assert run._steal() is None  # one, and the lane the half left in the next round trip: no partner would help
    run.density_at[run.top] = 0.3  # 5x as dense just past the end
    assert run._left(lane) == pytest.approx(900)  # linear from 0.06 to 0.3 over 5,000 ms: 4.5 pages
    helper = run._steal()
    assert helper is not None and helper.down and (helper.start, helper.end) == (0, run.top)
    assert helper.partner is lane and lane.partner is helper and lane.end == run.top


def test_a_pair_is_cut_where_half_the_users_between_them_are():
    """Two lanes of a range, each with a page read: a third worker starts at the middle of the users between their
    cursors (by the density at each), ascending; the lower lane now stops there."""
    from okta_sync.users.partition_stealing import Lane

    run = StealingRun(None, None, 8, True, None, 200, 200)
    low = Lane(0, 20_000, cursor=4_000, first=0, read=400, recent=(200, 2_000))  # 0.1 users/ms
    high = Lane(0, 20_000, cursor=16_000, first=20_000, read=400, recent=(200, 500), down=True)  # 0.4 users/ms
    low.partner, high.partner = high, low
    run.lanes, run.active = [low, high], 7  # one worker looks for work
    assert run._left(low) == run._left(high) == pytest.approx((0.1 + 0.4) / 2 * 12_000)
    upper = run._steal()
    assert not upper.down and upper.partner is high and high.partner is upper and low.partner is None
    assert low.end == upper.start == high.start and upper.end == high.end == 20_000
    width = upper.start - 4_000  # users from the lower cursor to the cut, density linear from 0.1 to 0.4
    assert width * (0.1 + 0.1 + 0.3 * width / 12_000) / 2 == pytest.approx(1_500, rel=0.01)


def test_with_a_hint_the_users_between_two_cursors_are_counted_by_its_quantiles():
    """Two sparse cursors either side of an import day: their densities say a few users lie between them, the hint's
    quantiles say most of the org does; the cut goes where half of those are, inside that day."""
    from okta_sync.users.partition_stealing import Lane

    day = 1_700_000_000_000
    quantiles = [day - 10**9, *[day + k * 1_000 for k in range(31)], day + 10**9]  # 31 of 32 steps in 30 seconds
    run = StealingRun(None, None, 8, True, None, 200, 200, created_hint={"quantiles": quantiles, "users": 6_400})
    run._plan_from_hint(run.hint)
    low = Lane(None, None, cursor=day - 10**8, first=day - 10**9, read=200, recent=(200, 9 * 10**8), busy=True)
    high = Lane(None, None, cursor=day + 10**8, first=day + 10**9, read=200, recent=(200, 9 * 10**8), busy=True,
                down=True)
    low.partner, high.partner = high, low
    run.lanes, run.active = [low, high], 7
    assert run._left(low) == pytest.approx(6_400 * 30 / 32, rel=0.02)  # the densities alone: 44
    upper = run._steal()
    assert day + 14_000 <= upper.start <= day + 16_000  # half of those users, by the quantiles


def test_several_waiting_workers_get_a_pair_of_lanes_from_each_cut():
    """Four workers wait and one pair has 15 pages left between its cursors: two cuts at the thirds of those users,
    each the start of a lane down and a lane up, so every range between the cursors is paged from both ends."""
    from okta_sync.users.partition_stealing import Lane

    run = StealingRun(None, None, 8, True, None, 200, 200)
    low = Lane(0, 30_000, cursor=0, first=0, read=400, recent=(200, 2_000))  # 0.1 users/ms all along
    high = Lane(0, 30_000, cursor=30_000, first=30_000, read=400, recent=(200, 2_000), down=True)
    low.partner, high.partner = high, low
    run.lanes, run.active = [low, high], 4
    first = run._steal()
    lanes = [first, *run.todo_lanes]
    assert [(lane.down, lane.start, lane.end) for lane in lanes] == [
        (True, 0, 10_000), (False, 10_000, 20_000), (True, 10_000, 20_000), (False, 20_000, 30_000)]
    assert low.end == 10_000 and low.partner is lanes[0] and lanes[0].partner is low
    assert lanes[1].partner is lanes[2] and lanes[2].partner is lanes[1]
    assert high.start == 20_000 and high.partner is lanes[3] and lanes[3].partner is high


def test_a_lane_that_stopped_early_goes_on_when_its_partner_did_not_reach_it():
    """A lane stops when its partner's page in flight should reach it; when the users between them were more than
    the densities said (an import day between two sparse cursors), an idle worker takes it up again at its cursor."""
    from okta_sync.users.partition_stealing import Lane

    run = StealingRun(None, None, 8, True, None, 200, 200)
    low = Lane(0, 30_000, cursor=1_000, first=0, read=400, recent=(200, 500), finished=True)
    high = Lane(0, 30_000, cursor=29_000, first=30_000, read=400, recent=(200, 500), down=True, busy=True)
    low.partner, high.partner = high, low
    run.lanes, run.active = [low, high], 7
    assert run._steal() is low and not low.finished and low.cursor == 1_000
    assert low.window().expression(None) == 'created ge "1970-01-01T00:00:01.000Z" and created lt "1970-01-01T00:00:30.000Z"'


def test_the_density_past_a_lane_end_is_learned_from_the_lane_that_starts_there(org):
    with _client(org) as client:
        run, ids = _run(client)
    assert Counter(ids) == Counter(org.expected.keys())
    edges = {lane.end if lane.down else lane.start for lane in run.lanes if lane.read > 1}  # where each began
    assert edges and edges <= set(run.density_at) | {None}
    assert all(density > 0 for density in run.density_at.values())


def _created_ms(org) -> list[int]:
    from okta_sync.timestamps import parse_okta_time

    return sorted(parse_okta_time(u["created"]) for u in org.admin.users())


class _Recording:
    """A client whose listings are recorded (search, sort order) before they reach the org."""

    def __init__(self, client):
        self.client, self.config, self.calls = client, client.config, []

    def list_users(self, **kwargs):
        self.calls.append(kwargs.get("sort_order"))
        return self.client.list_users(**kwargs)


def test_a_complete_listing_reports_created_quantiles_for_the_next_run(org):
    from okta_sync.users.partitions import PartitionedUserListing

    created = _created_ms(org)
    with _client(org) as client:
        listing = PartitionedUserListing(client, max_workers=4, limit=10)
        assert listing.created_hint is None
        assert Counter(u["id"] for u in listing) == Counter(org.expected.keys())
        hint = listing.created_hint
    quantiles = hint["quantiles"]
    assert hint["users"] == len(org.expected) and len(quantiles) == 33
    newest = created[-10:]  # the newest users' density, which a growing org's last quantile step averages away
    assert hint["top_density"] >= 0.5 * (len(newest) - 1) / max(1, newest[-1] - newest[0]) and quantiles == sorted(quantiles)
    assert quantiles[0] == created[0] and quantiles[-1] == created[-1]
    for k in (8, 16, 24):  # each inner quantile sits near its rank (lanes are narrow where users crowd)
        rank = sum(1 for value in created if value <= quantiles[k]) / len(created)
        assert abs(rank - k / 32) < 0.2, (k, rank)


def test_with_a_hint_every_worker_starts_at_once_and_no_probe_is_made(org):
    from okta_sync.users.partitions import PartitionedUserListing

    with _client(org) as client:
        first = PartitionedUserListing(client, max_workers=4, limit=10)
        list(first)
        recording = _Recording(client)
        hinted = PartitionedUserListing(recording, max_workers=4, limit=10, created_hint=first.created_hint)
        ids = [u["id"] for u in hinted]
        tiny = _Recording(client)  # an org the probe's two pages hold: probing is cheaper than 4 lanes
        list(PartitionedUserListing(tiny, max_workers=4, limit=10, created_hint={**first.created_hint, "users": 20}))
    assert Counter(ids) == Counter(org.expected.keys())
    assert recording.calls[:4] == ["asc", "asc", "desc", "desc"]  # one lane per worker at once, no probe: two
    # ranges cut at the hint's median, each paged from both ends    assert hinted.created_hint["quantiles"][0] == first.created_hint["quantiles"][0]
    assert sorted(tiny.calls[:2]) == ["asc", "desc"]


@pytest.mark.parametrize("quantiles", [[1, 2], [0, 10**12, 10**12 + 5], [4102444800000, 4102444800001]])
@pytest.mark.parametrize("users", [30, 10**6])
def test_a_wrong_hint_still_lists_every_user_exactly_once(org, quantiles, users):
    from okta_sync.users.partitions import PartitionedUserListing

    with _client(org) as client:
        listing = PartitionedUserListing(client, max_workers=4, limit=10,
                                         created_hint={"quantiles": quantiles, "users": users})
        assert Counter(u["id"] for u in listing) == Counter(org.expected.keys())


def test_a_listing_closed_early_reports_no_quantiles(org):
    from okta_sync.users.partitions import PartitionedUserListing

    with _client(org) as client:
        listing = PartitionedUserListing(client, max_workers=4, limit=10)
        pages = listing.pages()
        next(pages)
        pages.close()
    assert listing.created_hint is None


@pytest.mark.parametrize("value", [None, "1,2", [1, 2], {"a": 1}, *({"quantiles": q, "users": 500} for q in (
    "1,2", [1], [2, 1], [1, 1], [1, "2"], [1, 2.0], [True, 2], [-1, 2], [1, 10**20], list(range(300)))),
    *({"quantiles": [1, 2], "users": n} for n in (None, 0, -5, 1.5, True, "500", 10**12)),
    *({"quantiles": [1, 2], "users": 500, "top_density": d} for d in (0, -1.0, float("nan"), float("inf"), "1", True))])
def test_a_stored_hint_that_is_not_one_is_dropped(value):
    from okta_sync.users.partition_stealing import parse_created_hint
    from okta_sync.users.partitions import PartitionedUserListing

    assert parse_created_hint(value) is None
    if value is not None:
        with pytest.raises(OktaSyncError, match="created_hint: must be") as raised:
            PartitionedUserListing(object(), created_hint=value)
        assert isinstance(raised.value, ValueError) and str(value) not in str(raised.value)


def test_hint_boundaries_cut_equal_shares_of_the_quantiles():
    from okta_sync.users.partition_stealing import hint_boundaries, quantiles_of_segments

    assert hint_boundaries([0, 100, 200, 300, 400], 4) == [100, 200, 300]
    assert hint_boundaries([0, 100, 1000], 4) == [50, 100, 550]
    assert hint_boundaries([0, 10], 1) == []
    assert quantiles_of_segments([(0, 100, 50), (900, 1000, 50)], 5) == [0, 50, 100, 950, 1000]
    assert quantiles_of_segments([], 5) is None


def test_more_users_in_one_millisecond_than_a_capped_search_serves_is_an_error_not_a_loop():
    """A lane restarts at its cursor after `split_at` users (the search cap); when all it was served share one
    `created` millisecond, the restart would be served the same users again, forever."""
    import re

    from okta_sync.errors import PartitionTooLargeError
    from okta_sync.timestamps import okta_time, parse_okta_time

    users = [(1_700_000_000_000 + (0 if n < 40 else n), f"00u{n:017d}") for n in range(60)]

    class Listing:
        def __init__(self, chosen):
            self.chosen = chosen

        def pages(self):
            for at in range(0, len(self.chosen) + 1, 5):
                yield [{"id": i, "created": okta_time(c), "status": "ACTIVE"} for c, i in self.chosen[at:at + 5]]

    class Crowded:
        def list_users(self, *, search=None, limit=None, sort_by=None, sort_order=None):
            low = re.search(r'created ge "([^"]+)"', search or "")
            high = re.search(r'created lt "([^"]+)"', search or "")
            chosen = [u for u in users if (not low or u[0] >= parse_okta_time(low.group(1)))
                      and (not high or u[0] < parse_okta_time(high.group(1)))]
            return Listing(chosen[::-1] if sort_order == "desc" else chosen)

    with pytest.raises(PartitionTooLargeError, match="share one `created` millisecond"):
        list(StealingRun(Crowded(), None, 1, True, 10, 5, 5).pages())
    assert len([u for page in StealingRun(Crowded(), None, 1, True, 50, 5, 5).pages() for u in page]) == 60


@pytest.mark.parametrize("seed", range(40))
def test_every_user_exactly_once_whatever_the_order_pages_come_back_in(seed):
    """Random orgs (a few users to thousands; spread, crowded at a few milliseconds, an import day), worker counts,
    page sizes and search caps, each listed twice (the second from the first's hint): every user once."""
    import random

    rnd = random.Random(seed)
    count = rnd.choice([1, 5, 60, 400, 2_000])
    base = 1_700_000_000_000
    shape = rnd.choice(["spread", "crowded", "import day"])
    created = {"spread": lambda: base + rnd.randrange(10**10), "crowded": lambda: base + rnd.randrange(40),
               "import day": lambda: base + (rnd.randrange(10**5) if rnd.random() < 0.6 else rnd.randrange(10**10))}
    users = [(created[shape](), f"00u{n:017d}") for n in range(count)]
    workers, limit = rnd.randint(1, 9), rnd.choice([3, 7, 20])
    split_at = rnd.choice([None, 10**6] if shape == "crowded" else [None, limit * 4, 10**6])  # (crowded past a
    # search cap is an error, tested above)
    pauses = random.Random(seed)  # each page held back a random moment: lanes meet, stop early, split and restart
    org, hint = InMemoryOrg(users, lambda: pauses.choice([0, 0, 0.0005, 0.002, 0.006])), None  # in ever new orders
    for _ in range(2):
        run = StealingRun(org, None, workers, True, split_at, limit, limit, created_hint=hint)
        ids = [u["id"] for page in run.pages() for u in page]
        assert Counter(ids) == Counter(i for _, i in users), (count, shape, workers, limit, split_at)
        hint = run.created_hint()
