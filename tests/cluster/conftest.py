"""One local CeleryExecutor cluster per test session (scripts/airflow_cluster.py) for every test marked `cluster`:
PostgreSQL, Redis, moto's S3, api-server, scheduler, dag-processor and two Celery workers in their own namespaces,
against one in-process dev org. Its start and stop times are printed at the end of the session."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions

ROOT = Path(__file__).resolve().parents[2]
RETRY_DAG = "okta_push_retry"

# okta_user_sync's operators and run folders with a one-second retry delay (the real DAG waits 2 minutes before
# its first retry): a push whose worker was killed is retried at once.
RETRY_DAG_SOURCE = textwrap.dedent(
    f'''
    from datetime import timedelta

    import pendulum
    from airflow.sdk import dag

    from okta_sync import (OktaExportUsersOperator, OktaPlanProfileChangesOperator, OktaPushProfileChangesOperator,
                           OktaTokenOperator)
    from okta_sync.airflow.storage import require_shared_output_root, run_folder_uri

    RUN_DIR = "{{{{ okta_run_folder(var.value.okta_sync_output_uri, dag.dag_id, run_id) }}}}"


    @dag(dag_id="{RETRY_DAG}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         user_defined_macros={{"okta_run_folder": run_folder_uri}},
         default_args={{"okta_conn_id": "okta_default", "retries": 2, "retry_delay": timedelta(seconds=1),
                       "pre_execute": require_shared_output_root}})
    def okta_push_retry():
        token = OktaTokenOperator(task_id="okta_token")
        export = OktaExportUsersOperator(task_id="export_users", output_uri=RUN_DIR + "/users.jsonl.gz")
        plan = OktaPlanProfileChangesOperator(task_id="plan_changes", users_uri=RUN_DIR + "/users.jsonl.gz",
                                              plan_uri=RUN_DIR + "/plan.jsonl", run_folder=RUN_DIR)
        push = OktaPushProfileChangesOperator(task_id="push_changes", plan_uri=RUN_DIR + "/plan.jsonl",
                                              report_uri=RUN_DIR + "/report.csv", max_concurrency=2,
                                              run_folder=RUN_DIR)
        token >> export >> plan >> push


    okta_push_retry()
    '''
)


# Which worker runs each task of okta_groups_sync (its queue, set by a cluster policy): alternating, so every
# hand-off of the run (token, export files and manifest) crosses workers; Celery alone may run all four on one.
GROUPS_PLACEMENT = {"okta_token": "okta-worker-1", "export_groups": "okta-worker-2",
                    "commit_watermark": "okta-worker-1", "remove_old_outputs": "okta-worker-2"}
LOCAL_SETTINGS_SOURCE = textwrap.dedent(
    f'''
    PLACEMENT = {{"okta_groups_sync": {GROUPS_PLACEMENT!r}}}


    def task_policy(task):
        """The test's placement: a task's queue is the name of the worker that consumes it."""
        queue = PLACEMENT.get(task.dag_id, {{}}).get(task.task_id)
        if queue:
            task.queue = queue
    '''
)


def okta_connection(org) -> str:
    """`okta_default` with the key inline (the password field), as a secrets backend would hold it: the dev org's
    key file is under this machine's /tmp, which each worker has a private one of."""
    connection = org.connection
    return json.dumps({"conn_type": "okta", "host": connection["org_url"], "login": connection["client_id"],
                       "password": Path(connection["private_key_path"]).read_text(),
                       "extra": {"key_id": connection["key_id"],
                                 "scopes": "okta.users.read okta.users.manage okta.groups.read"}})


def files_under(folder: Path, skip: tuple[str, ...] = ()) -> set[str]:
    """Files below `folder`, relative to it, not walking into the relative folders `skip`."""
    if not folder.is_dir():
        return set()
    found = set()
    for top, dirs, names in os.walk(folder):
        relative = os.path.relpath(top, folder)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(relative, d)) not in skip]
        found.update(os.path.normpath(os.path.join(relative, name)) for name in names)
    return found


@pytest.fixture(scope="session")
def cluster_org(tmp_path_factory):
    options = DevOrgOptions(users=300, messy_fraction=0.3, seed=31, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-cluster"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="session")
def project_output_before() -> set[str]:
    """What the project's include/output held before the cluster started (a developer's own runs)."""
    return files_under(ROOT / "include" / "output")


@pytest.fixture(scope="session")
def cluster(cluster_org, project_output_before):
    from scripts.airflow_cluster import LocalCeleryCluster, can_isolate
    from scripts.cluster_services import redis_server_binary
    from scripts.postgres_server import find_bin_dir

    missing = [name for name, found in (("redis-server", redis_server_binary()), ("postgresql", find_bin_dir()))
               if not found]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (.ci/run installs them with apt-get)")
    if not can_isolate():
        pytest.skip("the cluster tests need root for the workers' mount namespaces (unshare)")
    (ROOT / ".airflow").mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="cluster-test-", dir=ROOT / ".airflow"))  # outside the workers' /tmp
    dags = home / "dags"
    dags.mkdir()
    for name in ("okta_user_sync.py", "okta_users_to_warehouse.py", "okta_users_summary.py", "okta_groups_sync.py",
                 "okta_groups_to_warehouse.py"):
        shutil.copy(ROOT / "dags" / name, dags)
    (dags / f"{RETRY_DAG}.py").write_text(RETRY_DAG_SOURCE)
    policy = home / "policy"  # airflow_local_settings on every component's PYTHONPATH
    policy.mkdir()
    (policy / "airflow_local_settings.py").write_text(LOCAL_SETTINGS_SOURCE)
    env = {
        "AIRFLOW_CONN_OKTA_DEFAULT": okta_connection(cluster_org),
        # A killed worker's task is found by its missing heartbeats: 20 s here instead of 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
    }
    running = LocalCeleryCluster(home, dags, workers=2, worker_concurrency=1, env=env, python_path=(ROOT, policy))
    try:
        with running:
            _started.append(running)
            yield running
        _stop(running)
    finally:
        shutil.rmtree(home, ignore_errors=True)


_started: list = []  # the session's cluster while it runs


def _stop(running) -> None:
    running.stop()  # a second call finds nothing left to stop
    if running in _started:
        _started.remove(running)
        print(f"\ncluster timings: {running.timings}, airflow {running.stack.timings}")
    assert not running.processes(), "processes outlived the cluster"


def pytest_runtest_teardown(item, nextitem):
    """Stop the cluster right after the last cluster test rather than at the end of the session: idle, its
    scheduler, dag-processor and workers would still take CPU from every test that runs after them."""
    if _started and item.get_closest_marker("cluster") and (nextitem is None or not nextitem.get_closest_marker("cluster")):
        _stop(_started[-1])
