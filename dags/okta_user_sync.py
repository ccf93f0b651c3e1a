"""okta_user_sync: keep Okta profiles clean, hourly, incrementally; or apply a changes feed when triggered by hand.

    okta_token -> select_users -> export_users -> plan_changes -> push_changes -> commit_watermark -> remove_old_outputs

Wiring and schedule only: the logic lives in the `okta_sync` package (plugins/okta_sync).
Scheduled runs are dry runs until the Variable `okta_sync_write_mode` is `apply`; a manual run follows `dry_run`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from okta_sync import (
    OktaExportUsersOperator,
    OktaPlanProfileChangesOperator,
    OktaPushProfileChangesOperator,
    OktaTokenOperator,
)
from okta_sync.airflow.storage import DEFAULT_OUTPUT_ROOT, require_shared_output_root, run_folder_uri
from okta_sync.sync.manifest import manifest_uri
from okta_sync.sync.sync_window import users_search

USERS_EXPORT = Asset(name="okta_users_export", uri="okta://users/export")
CHANGE_REPORT = Asset(name="okta_profile_change_report", uri="okta://users/change-report")

# One folder per run, named one-to-one from the dag id and the exact run id (okta_sync.airflow.storage.run_folder_uri).
RUN_DIR = "{{ okta_run_folder(var.value.get('okta_sync_output_uri', '" + DEFAULT_OUTPUT_ROOT + "'), dag.dag_id, run_id) }}"
EXPORT_URI = RUN_DIR + "/users.jsonl.gz"  # and its manifest beside it, users.manifest.json


@dag(
    dag_id="okta_user_sync",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    user_defined_macros={"okta_run_folder": run_folder_uri},
    dagrun_timeout=timedelta(hours=3),
    default_args={
        "okta_conn_id": "okta_default",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
        "pre_execute": require_shared_output_root,  # a local output root with remote workers: fail at once
    },
    params={
        "dry_run": Param(False, type="boolean", description="Plan and report, change nothing in Okta."),
        "full_refresh": Param(False, type="boolean", description="Look at every user, not only those changed since the last run."),
        "changes_uri": Param(None, type=["null", "string"], minLength=1,
                             description="A changes feed (CSV or JSON Lines keyed by id or login) to apply instead of hygiene."),
        "user_ids": Param(None, type=["null", "array"], items={"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"},
                          maxItems=1000, description="Restrict the run to these Okta user ids."),
    },
    tags=["okta"],
    doc_md=__doc__,
)
def okta_user_sync():
    token = OktaTokenOperator(task_id="okta_token")

    @task(inlets=[USERS_EXPORT])
    def select_users(params=None, asset_state_store=None) -> dict:
        """Incremental from the watermark of the last successful run; everything on the first run or full_refresh
        (or when the stored watermark cannot be used: the Asset state is writable over the REST API)."""
        from okta_sync.airflow.watermark import read_watermark

        watermark = None if params["full_refresh"] else read_watermark(asset_state_store[USERS_EXPORT])
        search = users_search(watermark=watermark, user_ids=params["user_ids"])
        mode = "user_ids" if params["user_ids"] else "incremental" if watermark else "full"
        # A full listing pages disjoint `created` windows concurrently (a single cursor is latency-bound); how many,
        # and when to split one, the client decides from what it reads.
        partitions = "auto" if mode == "full" else None
        print(f"Selecting users ({mode}): search={search} partitions={partitions}")
        return {"search": search, "mode": mode, "watermark": watermark, "partitions": partitions}

    selection = select_users()

    export = OktaExportUsersOperator(
        task_id="export_users",
        output_uri=EXPORT_URI,
        search="{{ ti.xcom_pull(task_ids='select_users')['search'] }}",
        partitions="{{ ti.xcom_pull(task_ids='select_users')['partitions'] }}",
        kind="{{ ti.xcom_pull(task_ids='select_users')['mode'] }}",
        outlets=[USERS_EXPORT],
    )
    plan = OktaPlanProfileChangesOperator(
        task_id="plan_changes",
        users_uri="{{ ti.xcom_pull(task_ids='export_users')['path'] }}",
        changes_uri="{{ params.changes_uri }}",
        plan_uri=RUN_DIR + "/plan.jsonl",
        run_folder=RUN_DIR,  # paths from XCom are read only inside this run's folder
    )
    push = OktaPushProfileChangesOperator(
        task_id="push_changes",
        plan_uri="{{ ti.xcom_pull(task_ids='plan_changes')['path'] }}",
        report_uri=RUN_DIR + "/report.csv",
        run_folder=RUN_DIR,
        dry_run="{{ params.dry_run }}",
        outlets=[CHANGE_REPORT],
    )

    @task(inlets=[USERS_EXPORT], templates_dict={"manifest_uri": manifest_uri(EXPORT_URI)})
    def commit_watermark(pushed: dict, params=None, asset_state_store=None, templates_dict=None, dag=None,
                         dag_run=None, run_id=None) -> dict:
        """Advance the watermark only after a complete, real hygiene run (not a dry run, feed or id-restricted run),
        to the watermark of the export's manifest (this run's folder), never to an XCom's value."""
        from airflow.sdk import Variable

        from okta_sync.airflow.operators import WRITE_MODE_VARIABLE, decide_write_mode
        from okta_sync.airflow.watermark import commit_watermark as commit, was_dry_run

        # the push's own decision (scheduled runs are dry runs until okta_sync_write_mode=apply), and the same
        # decision taken here: an edited XCom can only keep the watermark
        decided, _ = decide_write_mode(params["dry_run"], getattr(dag_run, "run_type", None),
                                       Variable.get(WRITE_MODE_VARIABLE, default=None))
        partial_run = was_dry_run(pushed, decided) or bool(params["changes_uri"]) or bool(params["user_ids"])
        return commit(asset_state_store[USERS_EXPORT], templates_dict["manifest_uri"], dag_id=dag.dag_id,
                      run_id=run_id, partial_run=partial_run)

    @task
    def remove_old_outputs(dag=None, run_id=None) -> dict:
        """Remove run folders older than the Variable okta_sync_output_retention_days (unset: keep everything)."""
        from okta_sync.airflow.storage import remove_expired_run_folders

        return remove_expired_run_folders(dag.dag_id, run_id)

    committed = commit_watermark(push.output)
    token >> selection >> export >> plan >> push >> committed >> remove_old_outputs()


okta_user_sync()
