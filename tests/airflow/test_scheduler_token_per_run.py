"""okta_user_sync under a real scheduler with the LocalExecutor (every task its own process): one token per run and
scope set, counted at the dev org; the token never in clear in XCom or the task logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.okta_dev_org import DevOrgOptions, DevOrgProcess
from tests.airflow_stack import AirflowStack
from tests.conftest import connection_env_value

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]

ROOT = Path(__file__).resolve().parents[2]
OKTA_TASKS = ("okta_token", "export_users", "plan_changes", "push_changes")


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=300, messy_fraction=0.2, seed=21, state_dir=tmp_path_factory.mktemp("devorg-sched"))
    with DevOrgProcess(options) as org:
        yield org


@pytest.fixture(scope="module")
def stack(org, tmp_path_factory):
    env = {
        "AIRFLOW_CONN_OKTA_DEFAULT": connection_env_value(org.connection),
        "AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI": tmp_path_factory.mktemp("sched-output").as_uri(),
    }
    with AirflowStack(ROOT / "dags", plugins_folder=ROOT / "plugins", env=env, python_path=[ROOT]) as running:
        yield running


def test_one_token_per_run_and_scope_set_across_task_processes(stack, org):
    before = org.admin.stats()
    first = stack.run_dag("okta_user_sync", conf={}, timeout=240)
    assert first.state == "success", first.describe()
    after_first = org.admin.stats()
    # read scope minted once by okta_token and adopted by export/plan/push; manage minted once by push
    assert after_first["tokens_issued"] - before["tokens_issued"] == 2
    assert after_first["updates_total"] > before["updates_total"]

    second = stack.run_dag("okta_user_sync", conf={}, timeout=240)
    assert second.state == "success", second.describe()
    after_second = org.admin.stats()
    assert after_second["tokens_issued"] - after_first["tokens_issued"] == 1  # nothing to write: no manage token
    assert after_second["updates_total"] == after_first["updates_total"]

    for result in (first, second):
        for task in OKTA_TASKS:
            assert "Bearer " not in result.logs[task] and "access_token" not in result.logs[task]
        sealed = [v for values in result.xcom.values() for k, v in values.items() if k.startswith("okta_token_")]
        assert sealed and all(str(v).startswith("okta-sync-token-v1.") for v in sealed)



def test_the_ui_offers_the_okta_connection_type_with_labelled_fields(stack):
    """What the connection form is built from (the provider metadata, installed by scripts/dev.py)."""
    from importlib import metadata

    if not any(ep.value.startswith("okta_sync.") for ep in metadata.entry_points(group="apache_airflow_provider")):
        pytest.skip("the project is not installed as a provider (pip install -e .); scripts/dev.py does it")
    hooks = {h["connection_type"]: h for h in stack.api("GET", "/ui/connections/hook_meta")}
    okta = hooks["okta"]
    assert okta["hook_name"] == "Okta"
    text = str(okta)
    for label in ("Org URL", "Client ID", "Private key (PEM or JWK)", "Key ID (kid)", "Private key path", "DPoP"):
        assert label in text, label
