"""okta_groups_sync: every group hourly, and the full membership of each group whose membership changed.

    okta_token -> export_groups -> commit_watermark -> remove_old_outputs

Wiring and schedule only: the logic lives in the `okta_sync` package (plugins/okta_sync). Reads only: the run's
token holds `okta.groups.read`, never `okta.groups.manage`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from okta_sync.airflow.group_operators import OktaExportGroupsOperator
from okta_sync.airflow.operators import OktaTokenOperator
from okta_sync.airflow.storage import DEFAULT_OUTPUT_ROOT, require_shared_output_root, run_folder_uri
from okta_sync.groups.api import GROUPS_READ_SCOPE
from okta_sync.sync.group_export import MANIFEST_FILE

GROUPS_EXPORT = Asset(name="okta_groups_export", uri="okta://groups/export")

RUN_DIR = "{{ okta_run_folder(var.value.get('okta_sync_output_uri', '" + DEFAULT_OUTPUT_ROOT + "'), dag.dag_id, run_id) }}"


@dag(
    dag_id="okta_groups_sync",
    schedule=CronDataIntervalTimetable("30 * * * *", timezone="UTC"),
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
        "full_refresh": Param(False, type="boolean",
                              description="Read every group's members, not only those of groups changed since the last run."),
    },
    tags=["okta"],
    doc_md=__doc__,
)
def okta_groups_sync():
    token = OktaTokenOperator(task_id="okta_token", scope_sets=[[GROUPS_READ_SCOPE]])
    export = OktaExportGroupsOperator(
        task_id="export_groups",
        output_folder=RUN_DIR,
        full_refresh="{{ params.full_refresh }}",
        outlets=[GROUPS_EXPORT],
    )

    @task(inlets=[GROUPS_EXPORT], templates_dict={"manifest_uri": RUN_DIR + "/" + MANIFEST_FILE})
    def commit_watermark(asset_state_store=None, templates_dict=None, dag=None, run_id=None) -> dict:
        """Advance the watermark to the one in this run's export manifest, only after the export succeeded."""
        from okta_sync.airflow.group_operators import commit_group_watermark

        return commit_group_watermark(asset_state_store[GROUPS_EXPORT], templates_dict["manifest_uri"],
                                      dag_id=dag.dag_id, run_id=run_id)

    @task
    def remove_old_outputs(dag=None, run_id=None) -> dict:
        """Remove run folders older than the Variable okta_sync_output_retention_days (unset: keep everything)."""
        from okta_sync.airflow.storage import remove_expired_run_folders

        return remove_expired_run_folders(dag.dag_id, run_id)

    token >> export >> commit_watermark() >> remove_old_outputs()


okta_groups_sync()
