"""`scripts/dev.py airflow --executor celery` without root: it refuses, saying what would not be isolated, unless
told --no-isolation (no cluster is started here)."""

from __future__ import annotations

import pytest

import scripts.airflow_cluster as airflow_cluster
from scripts.airflow_ui import build_cluster, parse_args


def test_without_root_the_celery_command_refuses_and_says_what_is_shared(monkeypatch):
    monkeypatch.setattr(airflow_cluster, "can_isolate", lambda: False)
    with pytest.raises(SystemExit) as refused:
        build_cluster(parse_args(["--executor", "celery"]))
    message = str(refused.value)
    assert "NOT isolated" in message and "/tmp, /var/tmp" in message and "include/output" in message
    assert "--no-isolation" in message


def test_with_no_isolation_it_builds_a_cluster_whose_workers_share_the_folders(monkeypatch, tmp_path):
    monkeypatch.setattr(airflow_cluster, "can_isolate", lambda: False)
    cluster = build_cluster(parse_args(["--executor", "celery", "--no-isolation", "--home", str(tmp_path)]))
    assert cluster.isolate is False and cluster.stack is None  # nothing started yet


def test_isolated_workers_cannot_be_asked_for_without_root(monkeypatch, tmp_path):
    monkeypatch.setattr(airflow_cluster, "can_isolate", lambda: False)
    with pytest.raises(airflow_cluster.AirflowStackError, match="need root"):
        airflow_cluster.LocalCeleryCluster(tmp_path, tmp_path, isolate=True)


def test_the_default_executor_is_still_the_local_one():
    args = parse_args([])
    assert args.executor == "local" and args.home.name == "ui"
    assert parse_args(["--executor", "celery"]).home.name == "cluster"
