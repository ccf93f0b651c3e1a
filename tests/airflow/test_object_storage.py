"""Run files and feeds on object storage (issue 22 items 1-3), and what a task may read (issue 20 items 8-9).

S3 is moto's server on a free loopback port (tests/moto_s3.py), reached through Airflow's `aws_default`
connection with `endpoint_url` in its extras: the same ObjectStoragePath and s3fs code a deployment runs.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sqlite3
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.conftest import connection_env_value, forget_asset_history
from tests.moto_s3 import MotoS3Server

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
RUNS, FEEDS = "okta-runs", "okta-feeds"
OUTPUT_ROOT = f"s3://aws_default@{RUNS}/okta"
FEED_ROOT = f"s3://aws_default@{FEEDS}/feeds/"


def forget_object_stores() -> None:
    """Airflow keeps one filesystem per scheme and connection id for the process: drop the last server's."""
    from airflow.sdk.io.store import _STORE_CACHE

    _STORE_CACHE.clear()


@pytest.fixture(scope="module")
def s3():
    with MotoS3Server() as server:
        server.create_bucket(RUNS)
        server.create_bucket(FEEDS)
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", s3.connection_env)
    forget_object_stores()
    yield s3
    forget_object_stores()


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def dag_named(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]


def tries(run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


# ---- streaming writes ---------------------------------------------------------------------------------------------

def test_a_large_write_streams_to_s3_in_parts_with_flat_memory(s3_env):
    """s3fs uploads a part whenever a block fills (REMOTE_BLOCK_SIZE): the upload is under way while the file
    is still being written, and the Python heap holds about one block, not the file."""
    from okta_sync.airflow.storage import REMOTE_BLOCK_SIZE, open_for_read, open_for_write

    s3 = s3_env
    uri = f"{OUTPUT_ROOT}/streaming/users.jsonl"
    chunk = (json.dumps({"id": "00u", "profile": {"x": "y" * 1000}}) + "\n").encode() * 1024  # ~1 MiB
    total = 6 * REMOTE_BLOCK_SIZE
    in_flight = []
    with open_for_write(f"{OUTPUT_ROOT}/streaming/warm-up") as file:  # botocore loads its S3 model once (~20 MB)
        file.write(chunk)
    tracemalloc.start()
    try:
        with open_for_write(uri) as file:
            written = 0
            while written < total:
                file.write(chunk)
                written += len(chunk)
                if written > 2 * REMOTE_BLOCK_SIZE and not in_flight:
                    in_flight = s3.client().list_multipart_uploads(Bucket=RUNS).get("Uploads", [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert in_flight, "no multipart upload under way after two blocks: the file is buffered whole"
    # the block being filled, the part being sent and its copies: a few blocks whatever the file's size
    assert peak < 4 * REMOTE_BLOCK_SIZE, f"{peak / 2**20:.0f} MiB held for a {total / 2**20:.0f} MiB file"
    assert keys(s3, RUNS, "okta/streaming/") == ["okta/streaming/users.jsonl", "okta/streaming/warm-up"]
    assert s3.client().list_multipart_uploads(Bucket=RUNS).get("Uploads", []) == []
    with open_for_read(uri) as file:
        assert sum(len(block) for block in iter(lambda: file.read(2**20), b"")) == written


def test_a_failed_write_leaves_nothing_under_the_name_on_s3(s3_env):
    from okta_sync.airflow.storage import open_for_write

    with pytest.raises(RuntimeError):
        with open_for_write(f"{OUTPUT_ROOT}/failed/users.jsonl.gz") as file:
            file.write(b"{}\n" * 1000)
            raise RuntimeError("the listing broke")
    assert keys(s3_env, RUNS, "okta/failed/") == []


def test_a_write_to_a_missing_bucket_fails_and_creates_no_bucket(s3_env):
    """A typo in okta_sync_output_uri must not create a bucket (without the organisation's encryption and policy)."""
    from okta_sync.airflow.push_journal import PushJournal
    from okta_sync.airflow.storage import open_for_write
    from okta_sync.sync.reports import ReportRow, ReportStatus

    with pytest.raises(OSError):
        with open_for_write("s3://aws_default@okta-runz/okta/x/users.jsonl.gz") as file:
            file.write(b"{}\n")
    journal = PushJournal.for_report("s3://aws_default@okta-runz/okta/x/report.csv", "a" * 64)
    journal.segment_size = 1  # the first finished change writes a segment
    with pytest.raises(OSError):
        journal.record("00u1", [ReportRow("00u1", "x@y.z", "department", "A", "B", ReportStatus.APPLIED)])
    assert sorted(b["Name"] for b in s3_env.client().list_buckets()["Buckets"]) == [FEEDS, RUNS]


# ---- a missing filesystem package fails at once -----------------------------------------------------------------

@pytest.mark.parametrize("uri, package", [
    (f"{OUTPUT_ROOT}/x/users.jsonl.gz", "apache-airflow-providers-amazon[s3fs]"),
    ("gs://okta-runs/okta/x/users.jsonl.gz", "apache-airflow-providers-google"),
    ("abfs://okta-runs/okta/x/users.jsonl.gz", "apache-airflow-providers-microsoft-azure"),
])
def test_a_store_without_its_package_fails_the_task_at_once_naming_the_package(uri, package, s3_env, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync import ConfigurationError
    from okta_sync.airflow.storage import open_for_read, open_for_write

    monkeypatch.setitem(sys.modules, "s3fs", None)  # `import s3fs` raises ImportError, as when it is not installed
    forget_object_stores()
    for opening in (open_for_write, open_for_read):
        with pytest.raises(AirflowFailException) as failed:  # not retried: no retry installs a package
            with opening(uri):
                pass
        assert isinstance(failed.value, ConfigurationError)
        assert package in str(failed.value)


# ---- a local root with remote workers ------------------------------------------------------------------------------

@pytest.mark.parametrize("executor, root, share_disk, fails", [
    ("CeleryExecutor", "{local}", None, True),
    ("KubernetesExecutor", "{local}", None, True),
    ("airflow.providers.edge3.executors.EdgeExecutor", "{local}", None, True),
    ("LocalExecutor,CeleryExecutor", "{local}", None, True),
    ("LocalExecutor,team_k8s:airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor",
     "{local}", None, True),
    ("CeleryExecutor", "{local}", "false", True),
    ("CeleryExecutor", "{local}", "true", False),
    ("CeleryExecutor", OUTPUT_ROOT, None, False),
    ("LocalExecutor", "{local}", None, False),
])
def test_a_local_output_root_with_remote_workers_fails_naming_the_variables(executor, root, share_disk, fails,
                                                                            tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync.airflow.storage import require_shared_output_root

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", root.format(local=tmp_path.as_uri()))
    if share_disk is not None:
        monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_WORKERS_SHARE_DISK", share_disk)
    if not fails:
        require_shared_output_root({})
        return
    with pytest.raises(AirflowFailException) as failed:
        require_shared_output_root({})
    assert "okta_sync_output_uri" in str(failed.value) and "okta_sync_workers_share_disk" in str(failed.value)


@pytest.mark.parametrize("dag_file", sorted(path.name for path in (ROOT / "dags").glob("*.py")))
def test_every_task_of_every_dag_fails_at_once_on_a_local_root_with_remote_workers(dag_file, tmp_path, monkeypatch):
    """Every shipped DAG reads or writes run folders: each of its tasks runs the check before its work (the
    DAG's `pre_execute`, which Airflow's task runner calls first), so a Celery run fails naming the Variables."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", tmp_path.as_uri())
    bag = DagBag(dag_folder=str(ROOT / "dags" / dag_file))
    assert bag.import_errors == {} and bag.dags
    for dag in bag.dags.values():
        for task in dag.tasks:
            hook = task._pre_execute_hook  # what the task runner calls before execute()
            assert hook is not None, f"{dag.dag_id}.{task.task_id} has no pre_execute"
            with pytest.raises(AirflowFailException, match="okta_sync_workers_share_disk"):
                hook({})


@pytest.mark.parametrize("root", ["s3://aws_default:hunter2@okta-runs/okta", "s3://AKIA:hunter2@okta-runs/okta",
                                  "s3://okta-runs/okta/../hunter2", "relative/hunter2"])
def test_an_output_root_with_a_password_or_dots_fails_the_first_task_without_echoing_it(root, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync.airflow.storage import require_shared_output_root

    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", root)
    with pytest.raises(AirflowFailException) as refused:
        require_shared_output_root({})
    assert "okta_sync_output_uri" in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.fixture(scope="module")
def small_org(tmp_path_factory):
    options = DevOrgOptions(users=30, messy_fraction=0.3, seed=22, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-object-storage"))
    with DevOrg(options) as org:
        yield org


def run_dag(dag_id: str, conf: dict | None = None, retries: int | None = None):
    dag = dag_named(dag_id)
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
            task.retry_delay = timedelta(seconds=1)
            task.retry_exponential_backoff = False
    return dag.test(run_conf=conf)


def test_the_first_task_fails_at_once_on_celery_with_a_local_root_and_runs_when_the_disk_is_shared(
        small_org, tmp_path, airflow_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_DEFAULT", connection_env_value(small_org.connection))
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", (tmp_path / "output").as_uri())
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    before = small_org.admin.stats()["token_requests"]
    run = run_dag("okta_user_sync", {"dry_run": True}, retries=2)
    states = tries(run)
    assert states["okta_token"] == ("failed", 1), "a local root on remote workers is not worth a retry"
    assert {state for task, (state, _) in states.items() if task != "okta_token"} == {"upstream_failed"}
    assert small_org.admin.stats()["token_requests"] == before
    assert not (tmp_path / "output").exists()

    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_WORKERS_SHARE_DISK", "true")  # e.g. every worker mounts one NFS share
    run = run_dag("okta_user_sync", {"dry_run": True}, retries=0)
    assert run.state == "success", tries(run)


# ---- paths from XCom are read only inside the run's folder (issue 20 item 9) -------------------------------------

def _render(dag, template: str, run_id: str, root: str) -> str:
    env = dag.get_template_env()

    class Vars:
        def get(self, name, default=None):
            return root if name == "okta_sync_output_uri" else default

    return env.from_string(template).render(run_id=run_id, dag=dag, var={"value": Vars()}, params={},
                                            **(dag.user_defined_macros or {}))


def _plan(folder: Path, run_id: str) -> Path:
    from okta_sync.sync.plan_file import write_plan
    from okta_sync.sync.profile_diff import ProfileChange

    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    write_plan([ProfileChange("00u1", "ann@x.com", "ACTIVE", {"department": ("Old", "Stolen")})], text,
               metadata={"dag_id": "okta_user_sync", "run_id": run_id})
    (folder / "plan.jsonl").write_text(text.getvalue())
    return folder / "plan.jsonl"


@pytest.mark.parametrize("task_id, field, name", [("push_changes", "plan_uri", "plan.jsonl"),
                                                  ("plan_changes", "users_uri", "users.jsonl.gz")])
def test_a_run_file_path_from_an_edited_xcom_is_not_read_outside_the_runs_folder(task_id, field, name, tmp_path,
                                                                                 monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync import LocationError

    root = (tmp_path / "output").as_uri()
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", root)
    dag = dag_named("okta_user_sync")
    task = dag.get_task(task_id)
    mine = _render(dag, task.run_folder, "manual__mine", root)  # what the DAG renders for this run
    assert mine.startswith(root + "/okta_user_sync/manual__mine-")
    other = Path(_render(dag, task.run_folder, "manual__other", root).removeprefix("file://"))
    _plan(other, "manual__other")
    with gzip.open(other / "users.jsonl.gz", "wt") as file:
        file.write(json.dumps({"id": "00u1", "status": "ACTIVE", "profile": {"login": "ann@x.com"}}) + "\n")
    (tmp_path / "secret.jsonl").write_text("AKIA-secret\n")
    for edited in ((other / name).as_uri(), (tmp_path / "secret.jsonl").as_uri(), f"{mine}/../../secret.jsonl",
                   "/etc/passwd"):
        task.run_folder = mine
        setattr(task, field, edited)  # an XCom edited by someone with the right role renders to this
        task.report_uri = f"{mine}/report.csv"
        task.plan_uri = task.plan_uri if field == "plan_uri" else f"{mine}/plan.jsonl"
        task.dry_run, task.changes_uri, task.user_ids = True, None, None  # the rest as the DAG renders them
        with pytest.raises(AirflowFailException) as refused:
            task.execute({"dag_run": None, "dag": dag, "run_id": "manual__mine"})
        assert isinstance(refused.value, LocationError) and field in str(refused.value)
        assert "secret" not in str(refused.value) and "passwd" not in str(refused.value)
    assert not Path(mine.removeprefix("file://")).exists() or not any(Path(mine.removeprefix("file://")).iterdir())


def test_a_membership_plan_path_from_an_edited_xcom_is_not_read_outside_the_runs_folder(tmp_path, monkeypatch):
    """okta_group_memberships' push names its plan by the plan task's XCom: another run's plan (under the same
    output root) or any other file is refused before anything is pushed."""
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync import LocationError
    from okta_sync.sync.membership_changes import MembershipEntry

    root = (tmp_path / "output").as_uri()
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", root)
    dag = dag_named("okta_group_memberships")
    task = dag.get_task("push_changes")
    folder = task.report_uri.rpartition("/")[0]  # the DAG's run folder template
    mine = _render(dag, folder, "manual__mine", root)
    assert mine.startswith(root + "/okta_group_memberships/manual__mine-")
    other = Path(_render(dag, folder, "manual__other", root).removeprefix("file://"))
    other.mkdir(parents=True)
    (other / "membership_plan.jsonl").write_text(MembershipEntry(
        1, "Admins", "ann@x.com", "add", "planned", group_id="00g1", user_id="00u1").to_json() + "\n")
    (tmp_path / "secret.jsonl").write_text("AKIA-secret\n")
    for edited in ((other / "membership_plan.jsonl").as_uri(), (tmp_path / "secret.jsonl").as_uri(),
                   f"{mine}/../../secret.jsonl", "/etc/passwd"):
        task.run_folder, task.plan_uri = mine, edited  # an XCom edited by someone with the right role renders to this
        task.report_uri, task.dry_run = f"{mine}/membership_report.csv", False
        with pytest.raises(AirflowFailException) as refused:
            task.execute({"dag_run": None, "dag": dag, "run_id": "manual__mine"})
        assert isinstance(refused.value, LocationError) and "plan_uri" in str(refused.value)
        assert "secret" not in str(refused.value) and "passwd" not in str(refused.value)
    assert not Path(mine.removeprefix("file://")).exists() or not any(Path(mine.removeprefix("file://")).iterdir())


# ---- okta_users_summary's run folders (issue 20 item 8) -----------------------------------------------------------

def test_summary_run_folders_are_one_to_one_and_stay_inside_the_dags_folder(tmp_path):
    root = (tmp_path / "output").as_uri()
    dag = dag_named("okta_users_summary")
    template = dag.get_task("summarise").templates_dict["summary_uri"]
    rendered = {run_id: _render(dag, template, run_id, root)
                for run_id in ("..", ".", "manual__a:b", "manual__a-b", "manual__a+b", "manual__a_b", "../../x")}
    assert len(set(rendered.values())) == len(rendered), rendered
    for uri in rendered.values():
        folder, name = uri.rsplit("/", 1)
        assert name == "summary.json"
        parent, run_folder = folder.rsplit("/", 1)
        assert parent == root + "/okta_users_summary" and run_folder not in ("", ".", "..")
        assert "/../" not in uri and not uri.endswith("/..")


# ---- the DAGs end to end on S3 -----------------------------------------------------------------------------------

def test_sync_feed_warehouse_summary_and_retention_run_on_s3(s3_env, small_org, tmp_path, airflow_db, monkeypatch):
    """okta_user_sync (hygiene, then an S3 changes feed) -> okta_users_to_warehouse -> okta_users_summary with
    every run file on S3 under `s3://aws_default@okta-runs/okta`; then retention removes the old run folders."""
    from okta_sync.airflow.storage import remove_expired_run_folders

    s3, org = s3_env, small_org
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_DEFAULT", connection_env_value(org.connection))
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", OUTPUT_ROOT)
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS", json.dumps([FEED_ROOT]))
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_WAREHOUSE", json.dumps({"conn_type": "sqlite",
                                                                  "host": str(tmp_path / "warehouse.db")}))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")  # remote workers: fine with an S3 root
    forget_asset_history()

    hygiene = run_dag("okta_user_sync", {"full_refresh": True}, retries=0)
    assert hygiene.state == "success", tries(hygiene)
    (folder,) = {key.split("/")[2] for key in keys(s3, RUNS, "okta/okta_user_sync/")}
    files = keys(s3, RUNS, f"okta/okta_user_sync/{folder}/")
    names = {key.split("/", 3)[3] for key in files}
    assert {"users.jsonl.gz", "plan.jsonl", "report.csv"} <= names
    assert any(name.startswith("report.csv.journal/") for name in names), names  # the push journal, on S3
    assert not any(".partial" in name for name in names)
    report = s3.client().get_object(Bucket=RUNS, Key=f"okta/okta_user_sync/{folder}/report.csv")["Body"].read()
    applied = [row for row in csv.DictReader(io.StringIO(report.decode())) if row["status"] == "applied"]
    assert applied, "the messy profiles were fixed"
    assert all(org.admin.user(row["user_id"])["profile"][row["attribute"]] == row["new"] for row in applied)

    user = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
    s3.client().put_object(Bucket=FEEDS, Key="feeds/team/changes.csv",
                           Body=f"login,department\n{user['profile']['login']},Object Storage\n".encode())
    feed = run_dag("okta_user_sync", {"changes_uri": f"{FEED_ROOT}team/changes.csv"}, retries=0)
    assert feed.state == "success", tries(feed)
    assert org.admin.user(user["id"])["profile"]["department"] == "Object Storage"

    elsewhere = run_dag("okta_user_sync", {"changes_uri": f"s3://{FEEDS}/feeds/team/changes.csv"}, retries=1)
    assert tries(elsewhere)["plan_changes"] == ("failed", 1), "the feed root names aws_default; this URI does not"

    load = run_dag("okta_users_to_warehouse", retries=0)
    assert load.state == "success", tries(load)
    with sqlite3.connect(tmp_path / "warehouse.db") as db:
        assert db.execute("SELECT COUNT(*) FROM okta_users WHERE deleted_at IS NULL").fetchone() == (30,)
        assert db.execute("SELECT department FROM okta_users WHERE id = ?", (user["id"],)).fetchone() \
            == ("Object Storage",)
        assert {path for (path,) in db.execute("SELECT export_path FROM okta_sync_loads")} \
            <= {f"{OUTPUT_ROOT}/okta_user_sync/{key.split('/')[2]}/users.jsonl.gz"
                for key in keys(s3, RUNS, "okta/okta_user_sync/")}

    summary = run_dag("okta_users_summary", retries=0)
    assert summary.state == "success", tries(summary)
    (summary_key,) = keys(s3, RUNS, "okta/okta_users_summary/")
    assert summary_key.endswith("/summary.json")
    assert json.loads(s3.client().get_object(Bucket=RUNS, Key=summary_key)["Body"].read())["users"] == 30

    run_folders = {key.split("/")[2] for key in keys(s3, RUNS, "okta/okta_user_sync/")}
    assert len(run_folders) == 3
    result = remove_expired_run_folders("okta_user_sync", "manual__now", days=1, now=time.time() + 2 * 86400)
    assert result["removed"] == 3 and keys(s3, RUNS, "okta/okta_user_sync/") == []
    assert keys(s3, RUNS, "okta/okta_users_summary/") == [summary_key]  # another DAG's folders are not touched


def test_the_push_journal_on_s3_replays_its_own_plan_only(s3_env):
    from okta_sync.airflow.push_journal import PushJournal
    from okta_sync.sync.reports import ReportRow, ReportStatus

    report = f"{OUTPUT_ROOT}/journal-run/report.csv"
    plan, other = "a" * 64, "b" * 64
    journal = PushJournal.for_report(report, plan)
    for n in range(250):
        journal.record(f"00u{n}", [ReportRow(f"00u{n}", "x@y.z", "department", "A", "B", ReportStatus.APPLIED)])
    assert len(keys(s3_env, RUNS, "okta/journal-run/report.csv.journal/")) == 2  # full segments go up as they fill
    journal.close()
    assert PushJournal.for_report(report, plan).replayable == 250  # a retry on another worker
    assert PushJournal.for_report(report, other).replayable == 0
