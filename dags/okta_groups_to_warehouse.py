"""okta_groups_to_warehouse: every membership export, loaded into the tables a data team queries.

Scheduled on the `okta_groups_export` Asset. Each run loads every export not loaded yet, oldest first, one
transaction each, into the SQL database of the `okta_warehouse` connection (SQLite, PostgreSQL, ...):

    okta_groups          one row per group ever seen; deleted_at is set when an export no longer lists the group
    okta_group_members   one row per membership period (valid_from, valid_to null while it lasts)
    okta_group_loads     the exports loaded (written in each load's transaction: exactly once per export)

Wiring only: the logic lives in okta_sync.sync.group_warehouse (core) and okta_sync.airflow.group_warehouse.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from okta_sync.airflow.storage import require_shared_output_root

GROUPS_EXPORT = Asset(name="okta_groups_export", uri="okta://groups/export")
GROUPS_TABLES = Asset(name="okta_group_members_table", uri="okta://warehouse/okta_group_members")
WAREHOUSE_CONN_ID = "okta_warehouse"


@dag(
    dag_id="okta_groups_to_warehouse",
    schedule=[GROUPS_EXPORT],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(hours=2),
                  "pre_execute": require_shared_output_root},  # exports on a worker's local disk: fail at once
    tags=["okta", "warehouse"],
    doc_md=__doc__,
)
def okta_groups_to_warehouse():
    @task(inlets=[GROUPS_EXPORT], outlets=[GROUPS_TABLES])
    def load_group_exports(inlet_events=None, outlet_events=None) -> dict:
        from okta_sync.airflow.group_warehouse import load_new_group_exports
        from okta_sync.airflow.warehouse import newest_events

        summary = load_new_group_exports(WAREHOUSE_CONN_ID, newest_events(inlet_events[GROUPS_EXPORT]))
        outlet_events[GROUPS_TABLES].extra = {"loaded": summary["loaded"],
                                              "memberships_read": summary["memberships_read"],
                                              "refused": summary["refused"], "waiting": len(summary["waiting_events"])}
        return summary

    load_group_exports()


okta_groups_to_warehouse()
