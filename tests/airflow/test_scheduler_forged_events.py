"""Issue 20's attacks through a real deployment's REST API (scheduler, api-server, dag-processor, LocalExecutor): an
Asset event posted with `POST /api/v2/assets/events` relabelling a real incremental export as `full` dated 9999, and
the watermark written as 9999 with `PUT /api/v2/assets/{id}/state-store/watermark`."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrgOptions, DevOrgProcess
from tests.airflow_stack import AirflowStack
from tests.conftest import connection_env_value

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]

ROOT = Path(__file__).resolve().parents[2]
WAREHOUSE = "okta_users_to_warehouse"


def _asset_id(stack: AirflowStack, name: str) -> int:
    (asset,) = [a for a in stack.api("GET", "/api/v2/assets", params={"limit": 100})["assets"] if a["name"] == name]
    return asset["id"]


def _load(stack: AirflowStack):
    """A warehouse run (after any the scheduler started on the events), and what it returned."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # asset-triggered runs first: one active run at a time
        runs = stack.api("GET", f"/api/v2/dags/{WAREHOUSE}/dagRuns")["dag_runs"]
        if all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(2)
    result = stack.run_dag(WAREHOUSE, timeout=180)
    assert result.state == "success", result.describe()
    return result.xcom["load_exports"]["return_value"]


def test_a_forged_event_and_a_poisoned_watermark_over_the_rest_api(tmp_path_factory):
    options = DevOrgOptions(users=40, messy_fraction=0, seed=9, state_dir=tmp_path_factory.mktemp("devorg-forged"))
    output = tmp_path_factory.mktemp("forged-output")
    database = tmp_path_factory.mktemp("forged-warehouse") / "wh.db"
    with DevOrgProcess(options) as org:
        env = {"AIRFLOW_CONN_OKTA_DEFAULT": connection_env_value(org.connection),
               "AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI": output.as_uri(),
               "AIRFLOW_CONN_OKTA_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(database)})}
        with AirflowStack(ROOT / "dags", plugins_folder=ROOT / "plugins", env=env, python_path=[ROOT]) as stack:
            first = stack.run_dag("okta_user_sync", {"full_refresh": True}, timeout=240)
            assert first.state == "success", first.describe()
            someone = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
            org.admin.set_user_status(someone["id"], "SUSPENDED")
            incremental = stack.run_dag("okta_user_sync", timeout=240)
            assert incremental.state == "success", incremental.describe()
            exported = incremental.xcom["export_users"]["return_value"]
            assert 1 <= exported["users"] < options.users

            export_asset = _asset_id(stack, "okta_users_export")
            forged = stack.api("POST", "/api/v2/assets/events", {"asset_id": export_asset, "extra": {
                "path": exported["path"], "manifest": "users.manifest.json", "kind": "full",
                "exported_at": "9999-12-31T23:59:59.000Z", "users": exported["users"]}})
            summary = _load(stack)
            assert forged["id"] in summary["refused_events"] or summary["refused_before"] >= 1
            with sqlite3.connect(database) as db:
                assert db.execute("SELECT COUNT(*), COUNT(deleted_at) FROM okta_users").fetchone() == (options.users, 0)
                assert db.execute("SELECT reason FROM okta_sync_refused WHERE event_id = ?",
                                  (forged["id"],)).fetchall() == [("not_the_export_task",)]
                assert db.execute("SELECT status FROM okta_users WHERE id = ?", (someone["id"],)).fetchone() == (
                    "SUSPENDED",)  # the real incremental export loaded

            stack.api("PUT", f"/api/v2/assets/{export_asset}/state-store/watermark",
                      {"value": "9999-12-31T23:59:59.000Z"})
            after = stack.run_dag("okta_user_sync", timeout=240)
            assert after.state == "success", after.describe()
            assert after.xcom["select_users"]["return_value"]["mode"] == "full"
            assert after.xcom["export_users"]["return_value"]["users"] == options.users
            assert "WATERMARK REFUSED" in after.logs["select_users"]
            stored = stack.api("GET", f"/api/v2/assets/{export_asset}/state-store/watermark")["value"]
            assert stored == after.xcom["export_users"]["return_value"]["max_last_updated"]
