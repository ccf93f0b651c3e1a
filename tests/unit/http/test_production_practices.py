"""Okta's production advice for service apps, made real: least privilege, a circuit breaker, metrics, logs that help
and never leak, and the network (only the org's host, proxies and a custom CA honoured)."""

from __future__ import annotations

import logging
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from okta_sync import CircuitOpenError, ConfigurationError, OktaApiError, OktaClient, OktaConfig, TLSVerificationError
from okta_sync.http.circuit import CLOSED, OPEN, CircuitBreaker
from okta_sync.metrics import RecordingMetrics
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.sync.reports import ReportStatus
from tests import keys
from tests.fake_clock import FakeClock
from tests.scripted_server import Reply, ScriptedServer, token_reply

TOKEN = "/oauth2/v1/token"
USERS = "/api/v1/users"


@pytest.fixture(scope="module")
def pem():
    return keys.pkcs8_pem(keys.rsa_key())


def client_for(server, pem, **settings) -> OktaClient:
    settings = {"max_attempts": 2, "max_retry_time": 10, **settings}
    config = OktaConfig(org_url=server.url, client_id="0oac", private_key=pem, key_id="k", **settings)
    return OktaClient(config, metrics=RecordingMetrics(), clock=FakeClock())


# -- least privilege -------------------------------------------------------------------------------------------
def test_reads_never_hold_a_token_that_can_write(pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, lambda r: token_reply(token="t-" + r.form()["scope"].replace(" ", "+"),
                                                          scope=r.form()["scope"]))
        server.route("GET", USERS, Reply(200, []))
        server.route("GET", f"{USERS}/00u1", Reply(200, {"id": "00u1", "profile": {}}))
        server.route("POST", f"{USERS}/00u1", Reply(200, {"id": "00u1", "profile": {}}))
        client = client_for(server, pem)
        list(client.iter_users())
        client.get_user("00u1")
        assert [r.form()["scope"] for r in server.requests_to("POST", TOKEN)] == ["okta.users.read"]
        client.update_profile("00u1", {"title": "x"})
        assert [r.form()["scope"] for r in server.requests_to("POST", TOKEN)] == ["okta.users.read", "okta.users.manage"]
        assert server.requests_to("GET", USERS)[0].headers["Authorization"] == "Bearer t-okta.users.read"


def test_the_connections_scopes_are_a_ceiling(pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply(scope="okta.users.manage"))
        server.route("GET", USERS, Reply(200, []))
        list(client_for(server, pem, scopes="okta.users.manage").iter_users())
        assert server.requests_to("POST", TOKEN)[0].form()["scope"] == "okta.users.manage"


# -- circuit breaker -------------------------------------------------------------------------------------------
def test_breaker_opens_on_mostly_failures_then_probes_once_after_the_cool_down():
    clock = FakeClock(start=1_700_000_000, frozen=True)
    breaker = CircuitBreaker(window=10, min_calls=4, failure_ratio=0.5, cool_down=30, clock=clock)
    for ok in (True, False, True, False):
        assert breaker.before_call() is False
        breaker.record(ok, what="GET /api/v1/users: HTTP 503")
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpenError, match=r"2 of the last 4 calls .* probes at 22:13:50 UTC"):
        breaker.before_call()
    clock.advance(31)
    assert breaker.before_call() is True  # the probe
    breaker.record(False, probe=True, what="HTTP 503")
    assert breaker.state == OPEN and "probe" in breaker.reason
    clock.advance(31)  # 62 s in
    assert breaker.before_call() is True
    breaker.record(True, probe=True)
    assert breaker.state == CLOSED and breaker.before_call() is False


def test_while_probing_other_callers_wait_for_its_outcome():
    clock = FakeClock(frozen=True)
    breaker = CircuitBreaker(window=4, min_calls=2, cool_down=1, clock=clock)
    breaker.record(False)
    breaker.record(False)
    clock.advance(2)
    assert breaker.before_call() is True
    results = []
    waiter = threading.Thread(target=lambda: results.append(breaker.before_call()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # blocked on the probe
    breaker.record(True, probe=True)
    waiter.join(2)
    assert results == [False]


def test_a_failing_org_opens_the_breaker_and_the_push_reports_what_was_not_attempted(pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply())
        server.route("GET", f"{USERS}/00u0", Reply(200, {"id": "00u0", "status": "ACTIVE", "profile": {"title": "a "}}))
        server.route("POST", f"{USERS}/00u0", Reply(200, {"id": "00u0", "profile": {"title": "a"}}))
        for i in range(1, 30):
            server.route("GET", f"{USERS}/00u{i}", Reply(503, "down", headers={"Content-Type": "text/html"}))
        client = client_for(server, pem, max_concurrency=1)
        changes = [ProfileChange(f"00u{i}", f"u{i}@x.com", "ACTIVE", {"title": ("a ", "a")}) for i in range(30)]
        report = _ListReport()
        with pytest.raises(CircuitOpenError, match="circuit breaker open"):
            push_changes(client, changes, report, PushOptions(max_concurrency=1))
        statuses = {}
        for row in report.rows:
            statuses[row.status] = statuses.get(row.status, 0) + 1
        assert sum(statuses.values()) == 30  # every intended change accounted for
        assert statuses[ReportStatus.APPLIED] == 1
        assert statuses[ReportStatus.NOT_ATTEMPTED] >= 15
        calls = len([r for r in server.requests if r.method == "GET"])
        assert calls <= 12  # the breaker stopped the calls instead of retrying every change
        assert client.metrics.counters["circuit.opened"] == 1


class _ListReport:
    def __init__(self):
        self.rows = []

    def write(self, row):
        self.rows.append(row)


# -- metrics ---------------------------------------------------------------------------------------------------
def test_metrics_cover_tokens_responses_retries_rate_limits_users_and_changes(pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply())
        server.route("GET", USERS, Reply(503, "busy", headers={"Content-Type": "text/plain"}),
                     Reply(200, [{"id": "00u1", "status": "ACTIVE", "profile": {"title": "x "}}]))
        server.route("GET", f"{USERS}/00u1", Reply(429, {"errorCode": "E0000047"}, headers={
            "X-Rate-Limit-Limit": "10", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "1"}),
                     Reply(200, {"id": "00u1", "status": "ACTIVE", "profile": {"title": "x "}}))
        server.route("POST", f"{USERS}/00u1", Reply(200, {"id": "00u1", "profile": {"title": "x"}}))
        client = client_for(server, pem, max_attempts=3)
        users = list(client.iter_users())
        push_changes(client, [ProfileChange("00u1", "u@x", "ACTIVE", {"title": ("x ", "x")})], _ListReport(),
                     PushOptions(max_concurrency=1))
        (recording,) = client.metrics.sinks  # the RecordingMetrics given to the client
        counters, timings = client.metrics.counters, recording.timings
    assert len(users) == 1
    assert counters["users.listed"] == 1
    assert counters["token.cache_miss"] == 2 and counters["token.cache_hit"] >= 1  # read + manage scope sets
    assert counters["api.responses.5xx"] == 1 and counters["api.status.503"] == 1
    assert counters["api.status.429"] == 1 and counters["api.rate_limited"] == 1
    assert counters["api.retries"] == 2
    assert counters["api.responses.2xx"] == 3
    assert counters["changes.applied"] == 1
    assert len(timings["token.fetch"]) == 2 and timings["api.latency.users_list"]


# -- logs ------------------------------------------------------------------------------------------------------
def test_api_failures_are_logged_with_okta_ids_and_without_secrets(pem, caplog):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply("sekret-token-value"))
        server.route("GET", f"{USERS}/00u1", Reply(403, {"errorCode": "E0000006", "errorSummary": "You do not have permission",
                                                         "errorId": "oae123"}, headers={"X-Okta-Request-Id": "req-9"}))
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(OktaApiError):
                client_for(server, pem).get_user("00u1")
    failure = [r.getMessage() for r in caplog.records if "Okta API failure" in r.getMessage()]
    assert failure == ["Okta API failure: GET /api/v1/users/00u1 -> HTTP 403 errorCode=E0000006 "
                       "errorSummary=\"You do not have permission\" errorId=oae123 X-Okta-Request-Id=req-9"]
    assert "sekret-token-value" not in caplog.text and "client_assertion" not in caplog.text
    assert pem.splitlines()[1] not in caplog.text


# -- network ---------------------------------------------------------------------------------------------------
class _ForwardProxy:
    """A plain HTTP forward proxy on loopback that records what it relayed."""

    def __init__(self):
        self.relayed = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.relayed.append((self.command, self.path))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
                upstream = requests.request(self.command, self.path, data=body, headers=headers, timeout=10)
                self.send_response_only(upstream.status_code)
                for name, value in upstream.headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def do_CONNECT(self):  # an https org: a TLS tunnel, the proxy sees only the target's host and port
                proxy.relayed.append(("CONNECT", self.path))
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self.send_response_only(200)
                self.end_headers()
                client = self.connection
                try:
                    while True:
                        ready, _, _ = select.select([client, upstream], [], [], 10)
                        if not ready:
                            return
                        for source in ready:
                            data = source.recv(65536)
                            if not data:
                                return
                            (upstream if source is client else client).sendall(data)
                finally:
                    upstream.close()
                    self.close_connection = True

            do_GET = do_POST = _relay

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_proxy_setting_tunnels_every_call_to_an_https_org(tmp_path):
    from include.okta_dev_org import DevOrg, DevOrgOptions

    proxy = _ForwardProxy()
    try:
        with DevOrg(DevOrgOptions(users=3, deprovisioned_fraction=0, tls=True, rate_limit=0, state_dir=tmp_path)) as org:
            conn = org.connection
            config = OktaConfig(org_url=conn["org_url"], client_id=conn["client_id"], key_id=conn["key_id"],
                                private_key_path=conn["private_key_path"], ca_bundle=conn["ca_bundle"], proxy=proxy.url)
            with OktaClient(config) as client:
                assert len(list(client.iter_users())) == 3
        target = conn["org_url"].removeprefix("https://")
        assert proxy.relayed and all(entry == ("CONNECT", target) for entry in proxy.relayed)  # token inside TLS
    finally:
        proxy.close()


def test_a_plain_http_org_never_sends_its_token_through_a_proxy(pem, monkeypatch):
    proxy = _ForwardProxy()
    try:
        with ScriptedServer() as server:
            with pytest.raises(ConfigurationError) as refused:
                client_for(server, pem, proxy=proxy.url)
            assert refused.value.field == "proxy"
            server.route("POST", TOKEN, token_reply())
            server.route("GET", USERS, Reply(200, []))
            for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                monkeypatch.setenv(name, proxy.url)
            for name in ("NO_PROXY", "no_proxy"):
                monkeypatch.delenv(name, raising=False)
            list(client_for(server, pem).iter_users())  # the environment's proxy is not used for plain http either
            assert [r.method for r in server.requests] == ["POST", "GET"]
        assert proxy.relayed == []
    finally:
        proxy.close()


def test_a_custom_ca_is_honoured_and_its_absence_is_named(tmp_path):
    from include.okta_dev_org import DevOrg, DevOrgOptions

    with DevOrg(DevOrgOptions(users=5, deprovisioned_fraction=0, tls=True, rate_limit=0, state_dir=tmp_path)) as org:
        conn = org.connection
        settings = dict(org_url=conn["org_url"], client_id=conn["client_id"], private_key_path=conn["private_key_path"],
                        key_id=conn["key_id"], max_attempts=1)
        assert conn["org_url"].startswith("https://") and conn["ca_bundle"]
        with OktaClient(OktaConfig(**settings, ca_bundle=conn["ca_bundle"])) as client:
            assert len(list(client.iter_users())) == 5
        with pytest.raises(TLSVerificationError, match="ca_bundle"):
            OktaClient(OktaConfig(**settings)).get_token()


def test_a_failed_update_keeps_the_rows_of_attributes_already_settled(pem):
    with ScriptedServer() as server:
        server.route("POST", TOKEN, token_reply())
        server.route("GET", f"{USERS}/00u1", Reply(200, {"id": "00u1", "status": "ACTIVE",
                                                         "profile": {"title": "x", "firstName": "A" * 51 + " "}}))
        server.route("POST", f"{USERS}/00u1", Reply(400, {"errorCode": "E0000001", "errorSummary": "Api validation failed",
                                                          "errorCauses": [{"errorSummary": "firstName: too long"}]}))
        report = _ListReport()
        change = ProfileChange("00u1", "u@x", "ACTIVE", {"title": ("x ", "x"), "firstName": ("A" * 51 + " ", "A" * 51)})
        push_changes(client_for(server, pem), [change], report, PushOptions(max_concurrency=1))
    assert [(r.attribute, r.status) for r in report.rows] == [("title", ReportStatus.UNCHANGED),
                                                                ("firstName", ReportStatus.FAILED)]
    assert report.rows[1].error_code == "E0000001"
