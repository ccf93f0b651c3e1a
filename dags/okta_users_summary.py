"""okta_users_summary: a data-team pipeline downstream of the warehouse tables.

Scheduled on the `okta_users_table` Asset (okta_users_to_warehouse updates it after loading exports). It counts
the users that exist now (deleted_at is null) by status and by department, with SQL on the `okta_warehouse`
connection, and writes summary.json to the output folder. It reads the table, not an export: after the first run
the exports are incremental (changed users only), and the table is the whole population.
"""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import Asset, dag, task

from okta_sync.airflow.storage import DEFAULT_OUTPUT_ROOT, require_shared_output_root, run_folder_uri

USERS_TABLE = Asset(name="okta_users_table", uri="okta://warehouse/okta_users")
USERS_SUMMARY = Asset(name="okta_users_summary", uri="okta://users/summary")
WAREHOUSE_CONN_ID = "okta_warehouse"
# One folder per run, named one-to-one from the dag id and the exact run id, as okta_user_sync's.
SUMMARY_URI = ("{{ okta_run_folder(var.value.get('okta_sync_output_uri', '" + DEFAULT_OUTPUT_ROOT + "'), "
               "dag.dag_id, run_id) }}/summary.json")
COUNT_BY = ("SELECT COALESCE({column}, '{none}'), COUNT(*) FROM okta_users WHERE deleted_at IS NULL "
            "GROUP BY COALESCE({column}, '{none}')")


@dag(
    dag_id="okta_users_summary",
    schedule=[USERS_TABLE],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    user_defined_macros={"okta_run_folder": run_folder_uri},
    default_args={"pre_execute": require_shared_output_root},  # a local output root with remote workers: fail at once
    tags=["okta", "example"],
    doc_md=__doc__,
)
def okta_users_summary():
    @task(outlets=[USERS_SUMMARY], templates_dict={"summary_uri": SUMMARY_URI})
    def summarise(templates_dict=None) -> dict:
        from okta_sync.airflow.storage import open_text_for_write
        from okta_sync.airflow.warehouse import warehouse_hook

        hook = warehouse_hook(WAREHOUSE_CONN_ID)
        by_status = dict(hook.get_records(COUNT_BY.format(column="status", none="UNKNOWN")))
        by_department = dict(hook.get_records(COUNT_BY.format(column="department", none="(none)")))
        deleted = hook.get_first("SELECT COUNT(*) FROM okta_users WHERE deleted_at IS NOT NULL")[0]
        users = sum(by_status.values())
        summary = {"users": users, "deleted": deleted, "by_status": by_status, "by_department": by_department}
        target = templates_dict["summary_uri"]
        with open_text_for_write(target) as text:  # 0600 under 0700 folders when local
            text.write(json.dumps(summary, indent=2, sort_keys=True))
        print(f"{users} users summarised into {target}")
        return {"path": target, "users": users, "deleted": deleted, "statuses": len(by_status),
                "departments": len(by_department)}

    summarise()


okta_users_summary()
