"""The one instrumentation channel: totals, fan-out to sinks, live events; a broken sink never breaks a request."""

from __future__ import annotations

import pytest

from okta_sync import OktaClient, OktaConfig
from okta_sync.errors import CircuitOpenError
from okta_sync.http.circuit import CircuitBreaker
from okta_sync.metrics import RATE_LIMIT_WAIT_STARTED, Instruments, NoMetrics, RecordingMetrics
from tests import keys
from tests.fake_clock import FakeClock
from tests.scripted_server import Reply, ScriptedServer, token_reply


class _Broken(NoMetrics):
    def incr(self, name, count=1):
        raise RuntimeError("statsd is down")


class _Events(NoMetrics):
    def __init__(self):
        self.events = []

    def event(self, name, **fields):
        self.events.append((name, fields))


def test_a_failing_sink_never_breaks_a_request_and_the_totals_still_count():
    pem = keys.pkcs8_pem(keys.rsa_key())
    with ScriptedServer() as server:
        server.route("POST", "/oauth2/v1/token", token_reply())
        server.route("GET", "/api/v1/users/00u1", Reply(200, {"id": "00u1", "profile": {}}))
        client = OktaClient(OktaConfig(org_url=server.url, client_id="0oac", private_key=pem, key_id="k"),
                            metrics=_Broken(), clock=FakeClock())
        assert client.get_user("00u1")["id"] == "00u1"
    assert client.metrics.count("api.status.200") == 1 and client.token_requests == 1


def test_subscribed_sinks_hear_events_only_while_subscribed():
    channel, events = Instruments(RecordingMetrics()), _Events()
    with channel.subscribed(events):
        channel.event(RATE_LIMIT_WAIT_STARTED, bucket="users_list", seconds=3.0)
    channel.event(RATE_LIMIT_WAIT_STARTED, bucket="users_list", seconds=4.0)
    assert events.events == [(RATE_LIMIT_WAIT_STARTED, {"bucket": "users_list", "seconds": 3.0})]


def test_the_breaker_counts_opening_and_each_rejected_call():
    recording = RecordingMetrics()
    breaker = CircuitBreaker(window=4, min_calls=2, cool_down=60, clock=FakeClock(frozen=True),
                             metrics=Instruments(recording))
    breaker.record(False)
    breaker.record(False)
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            breaker.before_call()
    assert recording.counters == {"circuit.opened": 1, "circuit.rejected": 3}
