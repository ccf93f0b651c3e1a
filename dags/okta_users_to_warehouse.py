"""okta_users_to_warehouse: every users export, loaded into the tables a data team queries.

Scheduled on the `okta_users_export` Asset. Each run loads every export not loaded yet (not only the events that
triggered it: a manual run or `airflow dags test okta_users_to_warehouse` catches up the same way), oldest snapshot
first, one transaction each, into the SQL database of the `okta_warehouse` connection (any common.sql database:
SQLite, PostgreSQL, ...):

    okta_users          one row per user ever seen; deleted_at is set when a full export no longer lists the user
    okta_user_history   one row per version (valid_from, valid_to null for the current one)
    okta_sync_loads     the exports loaded (the DAG's own progress, written in each load's transaction)
    okta_sync_refused   the export events refused (not emitted by okta_user_sync.export_users, no manifest, a file
                        that is not its manifest's, ...) or given up on (missing): reported once, then skipped

What is loaded is what the export task wrote beside its file (users.manifest.json), not what an Asset event says:
events can be posted over the REST API by anyone with the Op role.

Wiring only: the logic lives in okta_sync.sync.warehouse (core) and okta_sync.airflow.warehouse.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from okta_sync.airflow.storage import require_shared_output_root

USERS_EXPORT = Asset(name="okta_users_export", uri="okta://users/export")
USERS_TABLE = Asset(name="okta_users_table", uri="okta://warehouse/okta_users")
WAREHOUSE_CONN_ID = "okta_warehouse"


@dag(
    dag_id="okta_users_to_warehouse",
    schedule=[USERS_EXPORT],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # loads of the same tables one after another
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(hours=2),
                  "pre_execute": require_shared_output_root},  # exports on a worker's local disk: fail at once
    tags=["okta", "warehouse"],
    doc_md=__doc__,
)
def okta_users_to_warehouse():
    @task(inlets=[USERS_EXPORT], outlets=[USERS_TABLE])
    def load_exports(inlet_events=None, outlet_events=None) -> dict:
        from okta_sync.airflow.warehouse import load_new_exports, newest_events
        from okta_sync.sync.warehouse import Producers

        PRODUCERS = Producers(dag_ids=("okta_user_sync",), task_ids=("export_users",))

        # Only exports of okta_user_sync.export_users (Producers()) whose manifest holds up; the others are refused,
        # logged and kept in okta_sync_refused (see okta_sync.airflow.warehouse)
        summary = load_new_exports(WAREHOUSE_CONN_ID, newest_events(inlet_events[USERS_EXPORT]), producers=PRODUCERS)
        outlet_events[USERS_TABLE].extra = {"loaded": summary["loaded"], "users_read": summary["users_read"],
                                            "refused": summary["refused"], "waiting": len(summary["waiting_events"])}
        return summary

    load_exports()


okta_users_to_warehouse()
