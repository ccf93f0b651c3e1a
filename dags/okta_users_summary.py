"""okta_users_summary: a data-team pipeline downstream of ours.

Scheduled on the `okta_users_export` Asset: every time okta_user_sync writes an export, this DAG reads it (streamed,
one user at a time) and writes a small summary (users by status and by department) next to it. The export's path
comes from the Asset event, so the two DAGs share no code and no schedule; it is read only under the output root
(the Variable okta_sync_output_uri), never through a symlink or `..` out of it.
"""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import Asset, ObjectStoragePath, dag, task

USERS_EXPORT = Asset(name="okta_users_export", uri="okta://users/export")
USERS_SUMMARY = Asset(name="okta_users_summary", uri="okta://users/summary")


@dag(
    dag_id="okta_users_summary",
    schedule=[USERS_EXPORT],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["okta", "example"],
    doc_md=__doc__,
)
def okta_users_summary():
    @task(outlets=[USERS_SUMMARY])
    def summarise(triggering_asset_events=None) -> dict:
        from okta_sync import read_users_jsonl
        from okta_sync.operators import open_output_for_read, open_text_for_write

        events = triggering_asset_events[USERS_EXPORT] if triggering_asset_events else []
        if not events:
            raise ValueError("no okta_users_export event: this DAG runs when okta_user_sync writes an export")
        export_path = events[-1].extra.get("path")
        by_status: dict[str, int] = {}
        by_department: dict[str, int] = {}
        users = 0
        with open_output_for_read(export_path, what='the okta_users_export event\'s extra["path"]') as file:
            for user in read_users_jsonl(file):
                users += 1
                status = user.get("status") or "UNKNOWN"
                department = (user.get("profile") or {}).get("department") or "(none)"
                by_status[status] = by_status.get(status, 0) + 1
                by_department[department] = by_department.get(department, 0) + 1
        summary = {"export": export_path, "users": users, "by_status": by_status, "by_department": by_department}
        target = ObjectStoragePath(export_path).parent / "summary.json"
        with open_text_for_write(str(target)) as text:
            text.write(json.dumps(summary, indent=2, sort_keys=True))
        print(f"{users} users summarised into {target}")
        return {"path": str(target), "users": users, "statuses": len(by_status), "departments": len(by_department)}

    summarise()


okta_users_summary()
