"""Faults survived: a sync against a faulty dev org converges to exactly the expected state, and its report accounts
for every intended change. Faults are seeded (`fault_seed`), so a run repeats.

Driven through the core (OktaClient + export + plan + push_changes), seconds per case; the DAG-level angles are in
test_real_task_runs.py.
"""

from __future__ import annotations

import logging
import threading
import time
import types

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from include.okta_dev_org import ratelimits as devorg_ratelimits
from include.okta_dev_org import responses as devorg_responses
from okta_sync.client import OktaClient
from okta_sync.errors import UnsafeUrlError
from tests.reliability.core_sync import (
    assert_converged,
    client_config,
    messy_active_users,
    post_counts,
    sync_once,
)


def make_org(tmp_path, users=600, **options):
    defaults = dict(users=users, messy_fraction=0.3, seed=7, rate_limit=0, concurrency_limit=0, state_dir=tmp_path)
    return DevOrg(DevOrgOptions(**{**defaults, **options}))


def issued_tokens(org) -> list[str]:
    return list(org.app.auth.tokens)


@pytest.fixture
def secrets_logged(caplog):
    """Everything okta_sync, urllib3 and requests logged, at DEBUG: checked for token values after the sync."""
    with caplog.at_level(logging.DEBUG):
        yield caplog


def assert_no_token_in(text: str, org) -> None:
    for value in issued_tokens(org):
        assert value not in text
        assert value[-40:] not in text


NETWORK_FAULTS = {
    "5xx-10pct": ({"fail_rate": 0.10}, {}, ("http_500", "http_502", "http_503", "http_504")),
    "connection-resets": ({"reset_rate": 0.08}, {}, ("reset",)),
    "truncated-bodies": ({"truncate_rate": 0.08}, {}, ("truncate",)),
    "invalid-json-bodies": ({"invalid_json_rate": 0.08}, {}, ("invalid_json",)),
    # 4 pauses of slow_body_ms/4 = 0.4 s each against a 0.25 s read timeout: every slow body is a ReadTimeout
    "read-timeouts": ({"slow_body_rate": 0.05, "slow_body_ms": 1600}, {"read_timeout": 0.25}, ("slow_body",)),
    "everything-at-once": ({"fail_rate": 0.04, "reset_rate": 0.03, "truncate_rate": 0.03, "invalid_json_rate": 0.03,
                            "slow_body_rate": 0.02, "slow_body_ms": 1600}, {"read_timeout": 0.25},
                           ("http_500", "reset", "truncate", "invalid_json", "slow_body")),
}


@pytest.mark.parametrize("faults, config, kinds", list(NETWORK_FAULTS.values()), ids=list(NETWORK_FAULTS))
def test_network_faults_are_survived_and_every_change_lands_once(tmp_path, secrets_logged, faults, config, kinds):
    with make_org(tmp_path) as org:
        before = messy_active_users(org)
        assert len(before) > 100
        org.admin.configure(fault_seed=3, **faults)
        outcome = sync_once(org, **config)
        stats = org.admin.stats()
        org.admin.configure(fail_rate=0, reset_rate=0, truncate_rate=0, invalid_json_rate=0, slow_body_rate=0)
        injected = {kind: stats["faults"].get(kind, 0) for kind in kinds}
        assert all(injected.values()), f"the fault was not exercised: {stats['faults']}"
        assert outcome.transport["retries"] > 0
        assert_converged(org, outcome, before)
        assert_no_token_in(secrets_logged.text, org)


def test_the_same_seed_gives_the_same_faults(tmp_path):
    """Determinism: one request at a time, the seeded draws meet the same requests, so two runs see the same faults."""
    seen = []
    for attempt in range(2):
        with make_org(tmp_path / str(attempt), users=300) as org:
            org.admin.configure(fault_seed=11, fail_rate=0.1, reset_rate=0.05, invalid_json_rate=0.05)
            outcome = sync_once(org, max_concurrency=1)
            stats = org.admin.stats()
            seen.append((stats["faults"], stats["requests"], outcome.statuses()))
    assert seen[0][0] and seen[0] == seen[1]


def test_concurrency_limit_429s_are_waited_out(tmp_path):
    # 30 ms a response: with 8 in flight the requests overlap whatever the machine's speed (0 ms made it a race)
    with make_org(tmp_path, concurrency_limit=2, latency_ms=30) as org:
        before = messy_active_users(org)
        outcome = sync_once(org, max_concurrency=8)
        stats = org.admin.stats()
        assert stats["rate_limited"]["concurrency"] > 0
        assert outcome.transport["rate_limited"] > 0
        assert_converged(org, outcome, before)


class _ShiftedClock(types.SimpleNamespace):
    """The dev org's wall clock, `offset` seconds ahead of ours (rate-limit windows and the Date header)."""

    def __init__(self, offset: float):
        super().__init__(offset=offset)

    def time(self) -> float:
        return time.time() + self.offset


def test_a_burst_of_429_with_a_reset_in_the_future_is_waited_out_on_the_servers_clock(tmp_path, monkeypatch):
    """Another consumer drains the user_read bucket 8 s before the server's minute ends: the push's first re-reads
    all get 429 E0000047, it waits for X-Rate-Limit-Reset on the server's clock (ahead of ours), then completes."""
    offset = (52 - time.time() % 60) % 60  # the server's clock reads second 52 of a minute now
    clock = _ShiftedClock(offset)
    monkeypatch.setattr(devorg_ratelimits, "time", clock)
    monkeypatch.setattr(devorg_responses, "time", clock)
    with make_org(tmp_path, users=300, rate_limits={"user_read": 150}) as org:
        before = messy_active_users(org)
        assert 30 < len(before) < 150
        drain_bucket(org, "user_read", next(iter(before)))
        started = time.monotonic()
        wait_needed = (int(clock.time() // 60) + 1) * 60 - clock.time()
        outcome = sync_once(org, max_concurrency=4)
        elapsed = time.monotonic() - started
        stats = org.admin.stats()
        refused = stats["rate_limited"]["by_bucket"].get("user_read", 0)
        assert outcome.transport["rate_limited"] >= 1 and refused >= 1
        # waited for the reset on the server's clock (ahead of ours), and did not hammer while waiting
        assert elapsed >= wait_needed - 1.5, (elapsed, wait_needed)
        assert refused <= 1 + 4 * 3, refused
        assert_converged(org, outcome, before)


def drain_bucket(org, bucket: str, user_id: str) -> None:
    """Another consumer of the same app (raw requests, no pacing) uses up `bucket` until Okta answers 429."""
    import requests

    with OktaClient(client_config(org)) as other:
        header = other.get_token(["okta.users.read"]).authorization_header()
    assert bucket == "user_read"
    with requests.Session() as session:
        for _ in range(1000):
            response = session.get(f"{org.url}/api/v1/users/{user_id}", headers={"Authorization": header}, timeout=10)
            if response.status_code == 429:
                return
    raise AssertionError("the bucket never ran dry")


def test_a_next_link_to_another_host_is_refused_and_gets_no_request(tmp_path):
    """The dev org writes its Links with 127.0.0.1; a client configured for localhost must not follow them."""
    with make_org(tmp_path, users=450) as org:
        config = client_config(org, org_url=org.url.replace("127.0.0.1", "localhost"))
        before = org.admin.stats()["requests"].get("GET /api/v1/users", 0)
        with OktaClient(config) as client:
            pages = client.iter_user_pages(limit=200)
            assert len(next(pages)) == 200
            with pytest.raises(UnsafeUrlError, match="refusing to send the access token elsewhere"):
                next(pages)
        assert org.admin.stats()["requests"].get("GET /api/v1/users", 0) - before == 1


def test_a_token_revoked_mid_run_is_refreshed_once_and_the_run_continues(tmp_path):
    with make_org(tmp_path, latency_ms=2) as org:
        before = messy_active_users(org)

        def revoke_when_pushing():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if org.admin.stats()["updates_total"] >= 20:
                    org.admin.revoke_tokens()
                    return
                time.sleep(0.01)

        revoker = threading.Thread(target=revoke_when_pushing)
        revoker.start()
        outcome = sync_once(org, max_concurrency=4)
        revoker.join()
        stats = org.admin.stats()
        assert stats["updates_total"] >= 20
        assert stats["responses_by_status"].get("401", 0) >= 1
        # one refresh for the manage token, whichever threads saw the 401 (plus the read token, if it was in use)
        assert outcome.token_requests <= 4 and stats["tokens_issued"] == outcome.token_requests
        assert 1 <= outcome.transport["refreshes"] <= 4 * 2
        assert_converged(org, outcome, before)


def test_the_token_endpoint_down_for_30_seconds_is_waited_out(tmp_path):
    with make_org(tmp_path, users=200) as org:
        before = messy_active_users(org)
        org.admin.configure(token_outage_seconds=30)
        started = time.monotonic()
        outcome = sync_once(org)  # default retry settings: max_attempts=6, max_retry_time=300
        assert time.monotonic() - started >= 29
        stats = org.admin.stats()
        assert stats["token_requests"]["refused_reasons"].get("outage", 0) >= 3
        assert_converged(org, outcome, before)


def test_a_revoked_token_shared_by_the_run_is_replaced_not_adopted_again(tmp_path):
    """Tasks adopt the run's token through the client's token provider (the hook's sealed XCom). When Okta refuses that token,
    the refresh must mint a new one: asking the source again would hand back the revoked token."""
    with make_org(tmp_path, users=200) as org:
        before = messy_active_users(org)
        with OktaClient(client_config(org)) as minter:
            shared = {scopes: minter.get_token(scopes) for scopes in (("okta.users.read",), ("okta.users.manage",))}
        org.admin.revoke_tokens()
        with OktaClient(client_config(org), token_provider=lambda scopes, mint: shared[tuple(scopes)]) as client:
            outcome = sync_once(org, client=client)
        assert outcome.token_requests == 2  # one new token per scope set, after one 401 each
        assert_converged(org, outcome, before)
