"""okta_group_memberships: apply a membership changes feed, by hand.

    okta_token -> plan_changes -> push_changes

The feed (CSV or JSON Lines: `group` by id or exact name, `user` by id or login, `action` add or remove) is read only
under the Variable `okta_sync_feed_roots`. Each row is decided against the org, pushed (`PUT`/`DELETE`, idempotent)
and reported: skipped rows say why (unknown, ambiguous, BUILT_IN or APP_GROUP group, unknown user), an add of a
member already there is `unchanged`. The run's first token holds only read scopes; `okta.groups.manage` is minted by
the push, and only when it has something to write.

Wiring only: the logic lives in okta_sync.sync.membership_changes and okta_sync.airflow.group_operators.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from okta_sync.airflow.group_operators import OktaPlanMembershipChangesOperator, OktaPushMembershipChangesOperator
from okta_sync.airflow.operators import OktaTokenOperator
from okta_sync.airflow.storage import DEFAULT_OUTPUT_ROOT, require_shared_output_root, run_folder_uri
from okta_sync.config import READ_SCOPE
from okta_sync.groups.api import GROUPS_READ_SCOPE

RUN_DIR = "{{ okta_run_folder(var.value.get('okta_sync_output_uri', '" + DEFAULT_OUTPUT_ROOT + "'), dag.dag_id, run_id) }}"


@dag(
    dag_id="okta_group_memberships",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    user_defined_macros={"okta_run_folder": run_folder_uri},
    dagrun_timeout=timedelta(hours=2),
    default_args={
        "okta_conn_id": "okta_default",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=1),
        "pre_execute": require_shared_output_root,  # a local output root with remote workers: fail at once
    },
    params={
        "changes_uri": Param(None, type=["null", "string"], minLength=1,
                             description="The membership feed (CSV or JSON Lines: group, user, action) under okta_sync_feed_roots; required."),
        "dry_run": Param(False, type="boolean", description="Plan and report, change nothing in Okta."),
    },
    tags=["okta"],
    doc_md=__doc__,
)
def okta_group_memberships():
    token = OktaTokenOperator(task_id="okta_token", scope_sets=[[GROUPS_READ_SCOPE], [READ_SCOPE]])
    plan = OktaPlanMembershipChangesOperator(
        task_id="plan_changes",
        changes_uri="{{ params.changes_uri }}",
        plan_uri=RUN_DIR + "/membership_plan.jsonl",
    )
    push = OktaPushMembershipChangesOperator(
        task_id="push_changes",
        plan_uri="{{ ti.xcom_pull(task_ids='plan_changes')['path'] }}",
        report_uri=RUN_DIR + "/membership_report.csv",
        run_folder=RUN_DIR,  # the plan path comes from XCom: read only inside this run's folder
        dry_run="{{ params.dry_run }}",
    )
    token >> plan >> push


okta_group_memberships()
