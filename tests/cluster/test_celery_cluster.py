"""The project on a real CeleryExecutor cluster whose workers share no disk (tests/cluster/conftest.py starts it
once per session): PostgreSQL metadata DB, Redis broker, moto's S3 for run folders and feeds, two Celery workers
each with a private /tmp, /var/tmp and include/output in its own mount namespace and its own hostname.

Asserted from the dev org's side (tokens minted, POSTs per user), from S3, from the warehouse tables and from the
task instances' hostnames (which worker ran what). The tests run in file order; the last one kills a worker,
so a test that needs both workers goes before it.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import pytest

from okta_sync.sync.profile_rules import Normalizer
from tests.cluster.conftest import GROUPS_PLACEMENT, RETRY_DAG, files_under
from tests.reliability.core_sync import post_counts

# The first test also starts the cluster (60-90 s, more on a loaded machine): a longer bound than the 300 s default.
pytestmark = [pytest.mark.airflow, pytest.mark.cluster, pytest.mark.timeout(600)]

SYNC_DAG = "okta_user_sync"
WAREHOUSE_DAG = "okta_users_to_warehouse"
SUMMARY_DAG = "okta_users_summary"
GROUPS_DAG = "okta_groups_sync"
GROUPS_WAREHOUSE_DAG = "okta_groups_to_warehouse"


def hostnames(result) -> dict[str, str]:
    return {ti["task_id"] + ("" if ti["map_index"] < 0 else f"[{ti['map_index']}]"): ti["hostname"]
            for ti in result.task_instances}


def run_keys(cluster, dag_id: str, run_id: str) -> list[str]:
    """The objects a run wrote under s3://okta-runs/okta/<dag>/<run folder>/, relative to that folder."""
    from okta_sync.airflow.storage import run_folder_name
    from scripts.airflow_cluster import OUTPUT_BUCKET

    prefix = f"okta/{dag_id}/{run_folder_name(dag_id, run_id)}/"
    return sorted(key[len(prefix):] for key in cluster.s3.keys(OUTPUT_BUCKET, prefix))


def left_on_local_disk(cluster, project_output_before: set[str]) -> dict[str, list[str]]:
    """Files in each live worker's private /tmp, /var/tmp and include/output (read through its mount namespace),
    and files the session added to the project's include/output on this machine."""
    from scripts.airflow_cluster import PROJECT_OUTPUT, WORKER_PRIVATE_FOLDERS

    found = {}
    for worker in cluster.stack.workers:
        if not cluster.stack.worker_running(worker):
            continue  # killed: its tmpfs folders went with its mount namespace
        for folder in WORKER_PRIVATE_FOLDERS:
            base = cluster.stack.worker_path(worker, folder)
            # The shared folders bound back under /tmp (a checkout in /tmp) are this machine's disk, not the worker's.
            shared = tuple(os.path.relpath(p, folder) for p in cluster.stack.shared_under_private
                           if Path(folder) in Path(p).parents)
            # Python's multiprocessing keeps an empty pymp-* folder (a socket at most) for the worker's lifetime.
            files = sorted(name for name in files_under(base, shared) if not _runtime_socket(base / name))
            if files:
                found[f"{worker}:{folder}"] = files
    added = sorted(files_under(PROJECT_OUTPUT) - project_output_before)
    if added:
        found[f"this machine:{PROJECT_OUTPUT}"] = added
    return found


def _runtime_socket(path) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except FileNotFoundError:
        return True  # gone while listing


@pytest.fixture(scope="module")
def hourly_sync(cluster, cluster_org):
    """okta_user_sync triggered by hand with its defaults: a full first run whose writes are applied."""
    before = cluster_org.admin.stats()
    result = cluster.stack.run_dag(SYNC_DAG, conf={}, timeout=300)
    return result, before, cluster_org.admin.stats()


def test_the_hourly_sync_writes_once_per_user_with_tasks_on_both_workers(cluster, cluster_org, hourly_sync,
                                                                          project_output_before):
    result, before, after = hourly_sync
    assert result.state == "success", result.describe()
    hosts = hostnames(result)
    print(f"{SYNC_DAG}: {result.seconds:.1f}s, tasks by worker: {hosts}")
    assert set(hosts.values()) == set(cluster.stack.workers), hosts  # both workers ran tasks of the run

    # One token per scope set for the run, wherever its tasks ran: read (okta_token) and manage (the push).
    assert after["tokens_issued"] - before["tokens_issued"] == 2
    posts = post_counts(cluster_org, before["updates"])
    messy = cluster_org.admin.messy()
    assert posts and set(posts) <= set(messy)
    assert all(n == 1 for n in posts.values()), {u: n for u, n in posts.items() if n > 1}
    summary = result.xcom["push_changes"]["return_value"]
    assert summary["dry_run"] is False and summary["failed"] == summary["not_attempted"] == 0

    # The run folder is on S3 and only there.
    assert {"users.jsonl.gz", "plan.jsonl", "report.csv"} <= set(run_keys(cluster, SYNC_DAG, result.run_id))
    assert left_on_local_disk(cluster, project_output_before) == {}


def test_a_changes_feed_on_s3_is_applied_across_workers(cluster, cluster_org, hourly_sync, project_output_before):
    from scripts.airflow_cluster import FEEDS_BUCKET

    users = [u for u in cluster_org.admin.users(limit=60) if u["status"] == "ACTIVE"][:3]
    departments = {u["profile"]["login"]: f"Cluster Ops {i}" for i, u in enumerate(users)}
    feed = io.StringIO()
    writer = csv.writer(feed)
    writer.writerow(["login", "department"])
    writer.writerows(departments.items())
    cluster.s3.client().put_object(Bucket=FEEDS_BUCKET, Key="hr/departments.csv", Body=feed.getvalue().encode())

    before = cluster_org.admin.stats()
    result = cluster.stack.run_dag(SYNC_DAG, conf={"changes_uri": f"s3://aws_default@{FEEDS_BUCKET}/hr/departments.csv"},
                                   timeout=300)
    assert result.state == "success", result.describe()
    print(f"{SYNC_DAG} with a feed: {result.seconds:.1f}s, tasks by worker: {hostnames(result)}")
    after = cluster_org.admin.stats()
    assert after["tokens_issued"] - before["tokens_issued"] == 2
    posts = post_counts(cluster_org, before["updates"])
    assert posts == {u["id"]: 1 for u in users}
    for user in users:
        assert cluster_org.admin.user(user["id"])["profile"]["department"] == departments[user["profile"]["login"]]
    assert left_on_local_disk(cluster, project_output_before) == {}


def test_the_warehouse_load_into_postgresql_and_the_summary_run_on_the_workers(cluster, cluster_org, hourly_sync,
                                                                             project_output_before):
    import psycopg

    from scripts.airflow_cluster import WAREHOUSE_DATABASE

    # Triggered by hand (the session's scheduler creates no scheduled or asset-triggered runs): a run loads every
    # export not loaded yet, from S3, then the summary reads the table and writes its JSON to S3.
    load = cluster.stack.run_dag(WAREHOUSE_DAG, timeout=240)
    assert load.state == "success", load.describe()
    summary = cluster.stack.run_dag(SUMMARY_DAG, timeout=240)
    assert summary.state == "success", summary.describe()
    print(f"warehouse load {load.seconds:.1f}s on {hostnames(load)}, summary {summary.seconds:.1f}s on "
          f"{hostnames(summary)}")
    assert set(hostnames(load).values()) | set(hostnames(summary).values()) <= set(cluster.stack.workers)

    connection = cluster.warehouse_connection
    with psycopg.connect(host=connection["host"], port=connection["port"], user=connection["login"],
                         dbname=WAREHOUSE_DATABASE) as db:
        users = db.execute("SELECT count(*) FROM okta_users").fetchone()[0]
    assert load.xcom["load_exports"]["return_value"]["loaded"] >= 1
    assert users == len(cluster_org.admin.users())  # the first export is every user, DEPROVISIONED included
    assert "summary.json" in run_keys(cluster, SUMMARY_DAG, summary.run_id)
    assert left_on_local_disk(cluster, project_output_before) == {}


@pytest.fixture(scope="module")
def groups_sync(cluster, cluster_org):
    """okta_groups_sync triggered by hand: the first run, so every group and every group's members."""
    before = cluster_org.admin.stats()
    result = cluster.stack.run_dag(GROUPS_DAG, conf={}, timeout=240)
    return result, before, cluster_org.admin.stats()


def test_the_groups_export_goes_to_s3_only_each_task_on_the_other_worker_with_one_token(
        cluster, cluster_org, groups_sync, project_output_before):
    result, before, after = groups_sync
    assert result.state == "success", result.describe()
    hosts = hostnames(result)
    print(f"{GROUPS_DAG}: {result.seconds:.1f}s, tasks by worker: {hosts}")
    assert hosts == GROUPS_PLACEMENT  # four tasks, each on the other worker than the one before it

    # One token for the run's one scope set (okta.groups.read), minted by okta_token and used by the export on
    # whichever worker ran it; reads only.
    assert after["tokens_issued"] - before["tokens_issued"] == 1
    assert after["membership_changes"] == before["membership_changes"]
    export = result.xcom["export_groups"]["return_value"]
    assert export["groups"] == len(cluster_org.admin.groups())

    assert {"groups.jsonl.gz", "memberships.jsonl.gz", "groups_read.jsonl.gz", "groups.manifest.json"} <= \
        set(run_keys(cluster, GROUPS_DAG, result.run_id))
    assert left_on_local_disk(cluster, project_output_before) == {}


def test_the_groups_warehouse_load_into_postgresql_holds_the_dev_orgs_groups_and_memberships(
        cluster, cluster_org, groups_sync, project_output_before):
    import psycopg

    from scripts.airflow_cluster import WAREHOUSE_DATABASE

    assert groups_sync[0].state == "success", groups_sync[0].describe()
    before = cluster_org.admin.stats()
    load = cluster.stack.run_dag(GROUPS_WAREHOUSE_DAG, timeout=240)  # one task: one worker
    assert load.state == "success", load.describe()
    print(f"groups warehouse load {load.seconds:.1f}s on {hostnames(load)}")
    assert set(hostnames(load).values()) <= set(cluster.stack.workers)
    assert load.xcom["load_group_exports"]["return_value"]["loaded"] == 1
    assert cluster_org.admin.stats()["tokens_issued"] == before["tokens_issued"]  # the load never calls Okta

    groups = cluster_org.admin.groups()
    members = {(group["id"], user_id) for group in groups for user_id in cluster_org.admin.group_members(group["id"])}
    connection = cluster.warehouse_connection
    with psycopg.connect(host=connection["host"], port=connection["port"], user=connection["login"],
                         dbname=WAREHOUSE_DATABASE) as db:
        loaded_groups = {row[0] for row in db.execute("SELECT id FROM okta_groups WHERE deleted_at IS NULL")}
        loaded_members = db.execute("SELECT group_id, user_id FROM okta_group_members WHERE valid_to IS NULL").fetchall()
    assert loaded_groups == {group["id"] for group in groups}
    assert len(loaded_members) == len(members) == sum(group["_dev"]["members"] for group in groups)
    assert set(map(tuple, loaded_members)) == members
    assert left_on_local_disk(cluster, project_output_before) == {}


def test_with_the_default_local_output_root_the_first_task_fails_at_once_naming_the_variables(
        cluster, cluster_org, project_output_before):
    """What a new user meets on Celery without setting okta_sync_output_uri: no run that half-works, no retries."""
    stack = cluster.stack
    before = cluster_org.admin.stats()
    stack.api("DELETE", "/api/v2/variables/okta_sync_output_uri")  # back to the default include/output
    try:
        result = stack.run_dag(SYNC_DAG, conf={}, timeout=180)
    finally:
        from scripts.airflow_cluster import OUTPUT_URI

        stack.api("POST", "/api/v2/variables", {"key": "okta_sync_output_uri", "value": OUTPUT_URI})
    assert result.state == "failed"
    token = next(ti for ti in result.task_instances if ti["task_id"] == "okta_token")
    assert token["state"] == "failed" and token["try_number"] == 1, token  # at once: no retry waited out
    log = result.logs["okta_token"]
    assert "okta_sync_output_uri" in log and "okta_sync_workers_share_disk" in log and "CeleryExecutor" in log
    after = cluster_org.admin.stats()
    assert after["tokens_issued"] == before["tokens_issued"] and after["updates_total"] == before["updates_total"]
    assert left_on_local_disk(cluster, project_output_before) == {}


def _add_messy_users(org, count: int) -> dict[str, dict]:
    added = {}
    for i in range(count):
        user = org.admin.add_user({"login": f"cluster.kill{i}@example.com", "email": f"cluster.kill{i}@example.com",
                                   "firstName": f"  Grace   {i} ", "lastName": " Hopper  "})
        added[user["id"]] = user
    return added


def _journal_segments(cluster, run_id: str) -> list[str]:
    return [key for key in run_keys(cluster, RETRY_DAG, run_id) if key.startswith("report.csv.journal/")]


def test_a_worker_killed_mid_push_has_the_push_retried_on_the_other_worker_from_the_journal_on_s3(
        cluster, cluster_org, project_output_before):
    stack = cluster.stack
    org = cluster_org
    added = _add_messy_users(org, 300)
    posts_before = org.admin.stats()["updates"]
    org.admin.configure(latency_ms=50)  # 300 x (GET + POST), two at a time: ~15 s of push
    killed = {}
    try:
        run_id = stack.trigger(RETRY_DAG)
        push_path = f"/api/v2/dags/{RETRY_DAG}/dagRuns/{run_id}/taskInstances/push_changes"
        deadline = time.monotonic() + 240
        while not killed:
            assert time.monotonic() < deadline, "the push was never caught mid-way"
            push = stack.api("GET", push_path)
            assert push["state"] in (None, "scheduled", "queued", "running"), push  # not finished yet
            # Killed once the first journal segment (100 users) is on S3: the retry has something to resume.
            if push["state"] == "running" and push["hostname"] and _journal_segments(cluster, run_id):
                killed["worker"] = push["hostname"]
                killed["segments"] = _journal_segments(cluster, run_id)
                killed["pids"] = stack.kill_worker(push["hostname"])
                killed["posts"] = sum(post_counts(org, posts_before).values())
            time.sleep(0.2)
        killed_at = time.monotonic()
        state = stack.wait_for_run(RETRY_DAG, run_id, timeout=240)
        result = stack.collect(RETRY_DAG, run_id, state, time.monotonic() - killed_at)
    finally:
        org.admin.configure(latency_ms=0)
    print(f"killed {killed['worker']} ({len(killed['pids'])} processes) after {killed['posts']} updates; "
          f"run finished {result.seconds:.1f}s after the kill")
    assert result.state == "success", result.describe()
    assert killed["worker"] in stack.workers and 0 < killed["posts"] < len(added)

    tries = stack.api("GET", f"/api/v2/dags/{RETRY_DAG}/dagRuns/{run_id}/taskInstances/push_changes/tries")
    hosts = [t["hostname"] for t in sorted(tries["task_instances"], key=lambda t: t["try_number"])]
    survivor = next(w for w in stack.workers if w != killed["worker"])
    assert hosts == [killed["worker"], survivor], tries

    # Every change sent exactly once, counted at the dev org; the profiles are right.
    posts = post_counts(org, posts_before)
    assert set(added) <= set(posts)
    assert all(n == 1 for n in posts.values()), {u: n for u, n in posts.items() if n > 1}
    normalizer = Normalizer.default()
    for uid, user in added.items():
        assert org.admin.user(uid)["profile"] == normalizer.normalize_profile(user["profile"])
    summary = result.xcom["push_changes"]["return_value"]
    assert summary["failed"] == summary["not_attempted"] == 0

    # The retry went on from the first try's journal on S3: its segments kept, new ones numbered after them.
    segments = _journal_segments(cluster, run_id)
    assert set(killed["segments"]) < set(segments), (killed["segments"], segments)
    assert left_on_local_disk(cluster, project_output_before) == {}
