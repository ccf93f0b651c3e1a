"""The schedule as the scheduler applies it: okta_user_sync gets one run for the latest hourly interval (a real data
interval, no catch-up storm since its start date), and its export Asset triggers the warehouse load, whose table Asset triggers the summary DAG."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from include.okta_dev_org import DevOrgOptions, DevOrgProcess
from tests.airflow_stack import AirflowStack
from tests.conftest import connection_env_value

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]

ROOT = Path(__file__).resolve().parents[2]


def _finished_runs(stack: AirflowStack, dag_id: str, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    stack.wait_for_dag(dag_id, timeout=timeout)  # the dag-processor may not have parsed it yet (the API says 404)
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"{dag_id}: no finished run within {timeout}s (runs: {runs})")


def test_hourly_schedule_and_asset_triggered_summary(tmp_path_factory):
    began = datetime.now(timezone.utc)
    options = DevOrgOptions(users=200, messy_fraction=0.1, seed=4, state_dir=tmp_path_factory.mktemp("devorg-schedule"))
    with DevOrgProcess(options) as org:
        env = {
            "AIRFLOW_CONN_OKTA_DEFAULT": connection_env_value(org.connection),
            "AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI": tmp_path_factory.mktemp("schedule-output").as_uri(),
            "AIRFLOW_CONN_OKTA_WAREHOUSE": json.dumps(
                {"conn_type": "sqlite", "host": str(tmp_path_factory.mktemp("schedule-warehouse") / "wh.db")}),
        }
        with AirflowStack(ROOT / "dags", plugins_folder=ROOT / "plugins", env=env, python_path=[ROOT],
                          use_job_schedule=True) as stack:
            sync_runs = _finished_runs(stack, "okta_user_sync", timeout=240)
            # catchup=False: a run for the latest interval only, not one per hour since 2026-01-01. An hour may turn
            # while the test runs, and the scheduler then rightly adds the next interval's run: at most two,
            # consecutive, both ending after the test began.
            intervals = sorted((datetime.fromisoformat(r["data_interval_start"].replace("Z", "+00:00")),
                                datetime.fromisoformat(r["data_interval_end"].replace("Z", "+00:00")), r)
                               for r in sync_runs)
            assert 1 <= len(intervals) <= 2, f"catchup=False: the latest interval only, got {len(intervals)} runs"
            assert all(end > began - timedelta(hours=1) for _, end, _ in intervals), intervals
            assert [start for start, _, _ in intervals[1:]] == [end for _, end, _ in intervals[:-1]], intervals
            start, end, run = intervals[0]
            assert run["run_type"] == "scheduled" and run["state"] == "success", run
            assert end - start == timedelta(hours=1) and start.minute == 0
            # Unpausing is not consent: without okta_sync_write_mode=apply the scheduled run writes nothing.
            pushed = stack.collect("okta_user_sync", run["dag_run_id"], run["state"])
            assert pushed.xcom["push_changes"]["return_value"]["dry_run"] is True
            assert org.admin.stats()["requests"].get("POST /api/v1/users/{id}", 0) == 0

            # the export Asset triggers the warehouse load, whose table Asset triggers the summary
            load_runs = _finished_runs(stack, "okta_users_to_warehouse", timeout=120)
            assert load_runs[0]["state"] == "success", stack.collect(
                "okta_users_to_warehouse", load_runs[0]["dag_run_id"], load_runs[0]["state"]).describe()
            summary_runs = _finished_runs(stack, "okta_users_summary", timeout=120)
            result = stack.collect("okta_users_summary", summary_runs[0]["dag_run_id"], summary_runs[0]["state"])
            assert result.state == "success", result.describe()
            summary_path = result.xcom["summarise"]["return_value"]["path"]
            summary = json.loads(Path(urlsplit(summary_path).path).read_text())
            assert summary["users"] == options.users  # the first run exports every user of every status
            assert sum(summary["by_status"].values()) == summary["users"]
