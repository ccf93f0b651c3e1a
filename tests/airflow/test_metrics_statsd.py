"""OktaHook's metrics reach a real StatsD listener on loopback through Airflow's own Stats."""

from __future__ import annotations

import socket

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.conftest import connection_env_value

pytestmark = pytest.mark.airflow


@pytest.fixture
def statsd_listener(monkeypatch):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(sock.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

    stats.initialize(factory=get_stats_factory(), export_legacy_names=False)
    yield sock
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
    sock.close()


def _received(sock) -> list[str]:
    lines = []
    while True:
        try:
            data = sock.recv(65535)
        except socket.timeout:
            return lines
        lines.extend(data.decode().splitlines())


def test_metrics_reach_statsd(statsd_listener, monkeypatch, tmp_path):
    from okta_sync import OktaHook

    with DevOrg(DevOrgOptions(users=250, seed=2, rate_limit=0, deprovisioned_fraction=0, state_dir=tmp_path)) as org:
        monkeypatch.setenv("AIRFLOW_CONN_OKTA_DEFAULT", connection_env_value(org.connection))
        hook = OktaHook()
        assert sum(1 for _ in hook.iter_users()) == 250
    metrics = _received(statsd_listener)
    names = {line.split(":")[0] for line in metrics}
    assert "airflow.okta_sync.users.listed" in names
    assert "airflow.okta_sync.api.responses.2xx" in names and "airflow.okta_sync.api.status.200" in names
    assert "airflow.okta_sync.token.cache_miss" in names and "airflow.okta_sync.token.fetch" in names
    assert "airflow.okta_sync.api.latency.users_list" in names
    listed = sum(int(line.split(":")[1].split("|")[0]) for line in metrics if line.startswith("airflow.okta_sync.users.listed:"))
    assert listed == 250
