"""An error a retry cannot fix ends the task at once; a passing fault still gets the task's retries.

Each test runs the real `okta_user_sync` DAG (`dag.test`) against the dev org with every task given two retries
(one second apart), then reads the task instances: a non-retryable okta_sync error (`retryable` False) leaves the
task `failed` on its first try, where a plain failure would have gone `up_for_retry`.
"""

from __future__ import annotations

import csv
import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests import keys
from tests.conftest import connection_env_value, dev_org_airflow_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=20, messy_fraction=0.0, seed=43, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-fail-fast"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="module")
def feed_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fail-fast-feeds")


@pytest.fixture
def env(org, feed_root, tmp_path, airflow_db, monkeypatch):
    with dev_org_airflow_env(org.connection, tmp_path / "output"):
        monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS", json.dumps([feed_root.as_uri()]))
        yield


def set_connection(monkeypatch, connection: dict, **extra) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_DEFAULT", connection_env_value(connection, **extra))


def run_dag(changes_uri: str | None = None, retries: int = 2):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "okta_user_sync.py")).dags["okta_user_sync"]
    for task in dag.tasks:
        task.retries = retries
        task.retry_delay = timedelta(seconds=1)
        task.retry_exponential_backoff = False
    return dag.test(run_conf={"changes_uri": changes_uri} if changes_uri else None)


def tries(run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


def feed(folder: Path, rows: list[list[str]]) -> str:
    path = folder / "changes.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)
    return path.as_uri()


def test_a_bad_setting_fails_the_first_okta_task_on_its_first_try(org, env, monkeypatch):
    set_connection(monkeypatch, org.connection, page_size=500)
    before = org.admin.stats()["token_requests"]
    run = run_dag()
    assert run.state == "failed"
    assert tries(run)["okta_token"] == ("failed", 1), "a setting a person must fix is not worth a retry"
    assert org.admin.stats()["token_requests"] == before


def test_a_feed_refused_as_a_whole_fails_the_plan_on_its_first_try(org, env, feed_root, tmp_path):
    folder = feed_root / "unknown-attribute"
    folder.mkdir()
    login = org.admin.users()[0]["profile"]["login"]
    run = run_dag(feed(folder, [["login", "departmant"], [login, "Data"]]))
    states = tries(run)
    assert states["plan_changes"] == ("failed", 1)
    assert states["push_changes"][0] == "upstream_failed"


def test_a_scope_the_app_was_not_granted_fails_the_push_on_its_first_try(org, env, feed_root, tmp_path, monkeypatch):
    from okta_sync.auth.keys import load_signing_key

    key = keys.rsa_key()
    path = keys.write_key(tmp_path / "read-only.pem", keys.pkcs8_pem(key))
    org.admin.register_client("0oareadonlyfailfast1", [load_signing_key(private_key=keys.pkcs8_pem(key),
                                                                         key_id="ro").public_jwk()],
                              granted_scopes=["okta.users.read"])
    set_connection(monkeypatch, {**org.connection, "client_id": "0oareadonlyfailfast1", "key_id": "ro",
                                 "private_key_path": str(path)})
    folder = feed_root / "needs-manage"
    folder.mkdir()
    user = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
    before = org.admin.stats()["updates_total"]
    run = run_dag(feed(folder, [["login", "department"], [user["profile"]["login"], "Fail Fast"]]))
    states = tries(run)
    assert states["plan_changes"] == ("success", 1)
    assert states["push_changes"] == ("failed", 1), "a missing scope is not worth a retry"
    assert org.admin.stats()["updates_total"] == before


def test_an_unreachable_org_is_a_passing_fault_and_gets_the_retries(org, env, monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_connection(monkeypatch, {**org.connection, "org_url": f"http://127.0.0.1:{port}"},
                   max_attempts=1, max_retry_time=1, connect_timeout=1)
    run = run_dag(retries=1)
    assert tries(run)["okta_token"] == ("failed", 2), "a connection failure may pass: the task's retry is used"


def test_the_hook_ends_the_task_yet_keeps_the_error_class_for_task_code(org, env):
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync import NotFoundError, OktaHook

    with pytest.raises(NotFoundError) as raised:
        OktaHook().get_user("00unosuchuser0000000")
    assert isinstance(raised.value, AirflowFailException)
    assert (raised.value.status, raised.value.error_code) == (404, "E0000007")


def test_the_airflow_layer_defines_no_exception_outside_the_tree():
    import importlib
    import inspect

    from okta_sync import OktaSyncError

    import pkgutil

    import okta_sync.airflow

    names = [info.name for info in pkgutil.iter_modules(okta_sync.airflow.__path__, prefix="okta_sync.airflow.")]
    assert {"okta_sync.airflow.hooks", "okta_sync.airflow.operators", "okta_sync.airflow.warehouse"} <= set(names)
    for name in names:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                assert issubclass(value, OktaSyncError), f"{module.__name__}.{value.__name__}"
