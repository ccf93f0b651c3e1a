"""Rate limits, the concurrency cap and seeded faults, observed from the client and from the server's stats."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from conftest import OrgClient


def test_rate_limit_429_with_okta_headers(fresh_org):
    org = fresh_org(rate_limit=0, rate_limits={"users_list": 3})
    api = OrgClient(org).api()
    seen = [api.get(f"{org.url}/api/v1/users?limit=1") for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [r.headers["X-Rate-Limit-Remaining"] for r in seen] == ["2", "1", "0", "0"]
    limited = seen[-1]
    assert limited.headers["X-Rate-Limit-Limit"] == "3"
    reset = int(limited.headers["X-Rate-Limit-Reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 61  # the end of the current one-minute window
    body = limited.json()
    assert body["errorCode"] == "E0000047"
    assert body["errorSummary"] == "API call exceeded rate limit due to too many requests."
    assert body["errorCauses"] == []
    assert limited.headers["Date"] and limited.headers["X-Okta-Request-Id"]
    # other buckets are counted separately
    user = org.admin.users()[0]
    assert api.get(f"{org.url}/api/v1/users/{user['id']}").status_code == 200
    stats = org.admin.stats()
    assert stats["rate_limited"]["rate_limit"] == 1
    assert stats["rate_limited"]["by_bucket"] == {"users_list": 1}


def test_rate_limits_change_at_runtime(fresh_org):
    org = fresh_org(rate_limit=0)
    api = OrgClient(org).api()
    assert api.get(f"{org.url}/api/v1/users?limit=1").status_code == 200
    org.admin.configure(rate_limit_users_list=1)
    assert api.get(f"{org.url}/api/v1/users?limit=1").status_code == 429


def test_token_bucket_limits_the_token_endpoint(fresh_org):
    org = fresh_org(rate_limit=0, rate_limits={"token": 2})
    client = OrgClient(org)
    statuses = [client.request_token().status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_concurrency_cap_answers_429(fresh_org):
    org = fresh_org(rate_limit=0, concurrency_limit=2, latency_ms=300)
    token = OrgClient(org).token()
    results = []

    def call():
        response = requests.get(f"{org.url}/api/v1/users?limit=1", headers={"Authorization": f"Bearer {token}"},
                                timeout=10)
        results.append(response)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(429) >= 1 and statuses.count(200) >= 2
    limited = next(r for r in results if r.status_code == 429)
    assert limited.json()["errorCode"] == "E0000047"
    assert limited.headers["X-Rate-Limit-Limit"] == "2"  # Okta reports the concurrent values while over the cap
    stats = org.admin.stats()
    assert stats["rate_limited"]["concurrency"] == statuses.count(429)
    assert stats["peak_concurrency"] >= 3


def fault_trace(org, count=40):
    api = OrgClient(org).api()
    org.admin.configure(fail_rate=0.3, fault_seed=11, scope="api")
    trace = []
    for _ in range(count):
        try:
            trace.append(api.get(f"{org.url}/api/v1/users?limit=2", timeout=5).status_code)
        except requests.ConnectionError:
            trace.append("reset")
    return trace, org.admin.stats()["faults"]


def test_faults_repeat_with_the_same_seed(fresh_org):
    first, first_stats = fault_trace(fresh_org(rate_limit=0))
    second, second_stats = fault_trace(fresh_org(rate_limit=0))
    assert first == second
    assert {500, 502, 503, 504} & set(first) and 200 in first
    assert first_stats == second_stats and sum(first_stats.values()) == sum(1 for s in first if s != 200)


def test_gateway_errors_look_like_a_load_balancer_and_500_like_okta(fresh_org):
    org = fresh_org(rate_limit=0)
    api = OrgClient(org).api()
    org.admin.configure(fail_rate=1.0, fail_statuses=[502], scope="api")
    gateway = api.get(f"{org.url}/api/v1/users")
    assert gateway.status_code == 502 and gateway.headers["Content-Type"] == "text/html"
    org.admin.configure(fail_statuses=[500])
    internal = api.get(f"{org.url}/api/v1/users")
    assert internal.status_code == 500 and internal.json()["errorCode"] == "E0000009"


def test_connection_resets(fresh_org):
    org = fresh_org(rate_limit=0)
    api = OrgClient(org).api()
    org.admin.configure(reset_rate=1.0, scope="api")
    with pytest.raises(requests.ConnectionError):
        api.get(f"{org.url}/api/v1/users", timeout=5)
    assert org.admin.stats()["faults"]["reset"] >= 1


def test_truncated_bodies_break_the_read(fresh_org):
    org = fresh_org(rate_limit=0)
    api = OrgClient(org).api()
    org.admin.configure(truncate_rate=1.0, scope="api")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        api.get(f"{org.url}/api/v1/users", timeout=5).content


def test_invalid_json_bodies(fresh_org):
    org = fresh_org(rate_limit=0)
    api = OrgClient(org).api()
    org.admin.configure(invalid_json_rate=1.0, scope="api")
    response = api.get(f"{org.url}/api/v1/users", timeout=5)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_slow_bodies_arrive_late_but_whole(fresh_org):
    org = fresh_org(rate_limit=0)
    api = OrgClient(org).api()
    org.admin.configure(slow_body_rate=1.0, slow_body_ms=400, scope="api")
    began = time.monotonic()
    response = api.get(f"{org.url}/api/v1/users?limit=20", timeout=5)
    assert len(response.json()) == 20
    assert time.monotonic() - began >= 0.35


def test_added_latency(fresh_org):
    org = fresh_org(rate_limit=0, latency_ms=150)
    api = OrgClient(org).api()
    began = time.monotonic()
    api.get(f"{org.url}/api/v1/users?limit=1")
    assert time.monotonic() - began >= 0.15


def test_token_endpoint_outage_window(fresh_org):
    org = fresh_org(rate_limit=0)
    client = OrgClient(org)
    org.admin.configure(token_outage_seconds=0.5)
    response = client.request_token()
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    time.sleep(0.6)
    assert client.request_token().status_code == 200
    assert org.admin.stats()["token_requests"]["refused_reasons"]["outage"] == 1


def test_admin_endpoints_are_not_rate_limited_or_faulted(fresh_org):
    org = fresh_org(rate_limit=1, fail_rate=1.0)
    for _ in range(3):
        assert org.admin.stats()["requests"] == {}


def test_keep_alive_and_content_length(devorg, api):
    response = api.get(f"{devorg.url}/api/v1/users?limit=3")
    assert response.raw.version == 11
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.headers["Connection"] == "keep-alive"
    with socket.create_connection((devorg.url.split("//")[1].split(":")[0], devorg.port), timeout=5) as raw:
        raw.sendall(b"GET /_dev/health HTTP/1.1\r\nHost: x\r\n\r\nGET /_dev/health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        assert raw.recv(65536).count(b"HTTP/1.1 200") == 2
