"""Real task runs (scheduler + LocalExecutor, tests/airflow_stack.py) against an in-process dev org:

- no secret leaked: every log line, XCom, rendered template field, report, exception and every byte Airflow wrote
  (its metadata DB included) is searched for the access tokens, client assertions, DPoP proofs and key, and the
  private key: zero occurrences;
- a task killed mid-push (SIGKILL) and retried by Airflow completes what remains from its journal, without a second
  POST for any change, and the final state is correct.

One stack serves both tests (~30 s to start).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import textwrap
import threading
import time
from pathlib import Path

import psutil
from cryptography.hazmat.primitives.serialization import load_pem_private_key
import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync.auth.keys import load_signing_key
from okta_sync.airflow.hooks import token_xcom_key
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.airflow.token_handoff import open_sealed_token
from tests.airflow_stack import AirflowStack
from tests.conftest import connection_env_value
from tests.reliability.core_sync import post_counts

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]

ROOT = Path(__file__).resolve().parents[2]
SYNC_DAG = "okta_user_sync"
RETRY_DAG = "okta_push_retry"

# The operators of okta_user_sync, with a one-second retry delay: a killed push is retried at once.
RETRY_DAG_SOURCE = textwrap.dedent(
    f'''
    import os
    from datetime import timedelta

    import pendulum
    from airflow.sdk import dag

    from okta_sync import (OktaExportUsersOperator, OktaPlanProfileChangesOperator, OktaPushProfileChangesOperator,
                           OktaTokenOperator)

    RUN_DIR = os.environ["OKTA_SYNC_TEST_OUTPUT"] + "/{RETRY_DAG}/{{{{ run_id | replace(':', '-') | replace('+', '_') }}}}"


    @dag(dag_id="{RETRY_DAG}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
         default_args={{"retries": 2, "retry_delay": timedelta(seconds=1)}})
    def okta_push_retry():
        token = OktaTokenOperator(task_id="okta_token")
        export = OktaExportUsersOperator(task_id="export_users", output_uri=RUN_DIR + "/users.jsonl")
        plan = OktaPlanProfileChangesOperator(task_id="plan_changes", users_uri=RUN_DIR + "/users.jsonl",
                                              plan_uri=RUN_DIR + "/plan.jsonl")
        push = OktaPushProfileChangesOperator(task_id="push_changes", plan_uri=RUN_DIR + "/plan.jsonl",
                                              report_uri=RUN_DIR + "/report.csv")
        token >> export >> plan >> push


    okta_push_retry()
    '''
)


class SecretRecorder:
    """Wraps the dev org's token endpoint (in this process) to keep every client assertion and DPoP proof it gets."""

    def __init__(self, org):
        self.assertions: list[str] = []
        self.proofs: list[str] = []
        auth = org.app.auth
        original = auth.token

        def recording(form, invoked_url, server, dpop_proof, basic_auth, *args, **kwargs):
            if form.get("client_assertion"):
                self.assertions.append(form["client_assertion"])
            if dpop_proof:
                self.proofs.append(dpop_proof)
            return original(form, invoked_url, server, dpop_proof, basic_auth, *args, **kwargs)

        auth.token = recording


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=300, messy_fraction=0.3, seed=23, rate_limit=0, concurrency_limit=0,
                            dpop="required", state_dir=tmp_path_factory.mktemp("devorg-real-runs"))
    with DevOrg(options) as org:
        org.recorder = SecretRecorder(org)
        yield org


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-runs-output")


@pytest.fixture(scope="module")
def stack(org, output_dir, tmp_path_factory):
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(ROOT / "dags" / f"{SYNC_DAG}.py", dags)
    (dags / f"{RETRY_DAG}.py").write_text(RETRY_DAG_SOURCE)
    env = {
        "AIRFLOW_CONN_OKTA_DEFAULT": connection_env_value(org.connection, dpop="on", max_concurrency=2),
        "AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI": output_dir.as_uri(),
        "OKTA_SYNC_TEST_OUTPUT": output_dir.as_uri(),
    }
    with AirflowStack(dags, ROOT / "plugins", env=env) as running:
        yield running
    assert not running.processes(), "processes outlived the stack"


# ---- no secret leaked ------------------------------------------------------------------------------------------

def _pem_body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def _b64url_int(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def _every_file(*folders: Path) -> dict[Path, bytes]:
    found = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                found[path] = path.read_bytes()
    return found


def _revoke_when_pushing(org, stop: threading.Event) -> None:
    """Revoke every token once the push has made a few updates: the push refreshes its token mid-task."""
    while not stop.is_set():
        if org.admin.stats()["updates_total"] >= 10:
            org.admin.revoke_tokens()
            return
        time.sleep(0.02)


def test_a_real_run_leaks_no_token_assertion_or_key(stack, org, output_dir):
    org.admin.configure(latency_ms=15)
    stop = threading.Event()
    revoker = threading.Thread(target=_revoke_when_pushing, args=(org, stop), daemon=True)
    revoker.start()
    try:
        result = stack.run_dag(SYNC_DAG, conf={"full_refresh": True}, timeout=240)
    finally:
        stop.set()
        org.admin.configure(latency_ms=0)
    assert result.state == "success", result.describe()
    stats = org.admin.stats()
    assert stats["responses_by_status"].get("401", 0) >= 1, "the revocation did not hit the push"
    assert stats["tokens_issued"] >= 3  # read, manage, and the manage token refreshed after the revocation

    signing_key = load_signing_key(private_key_path=org.connection["private_key_path"])
    secrets = {f"access token {i}": value for i, value in enumerate(org.app.auth.tokens)}
    secrets.update({f"client assertion {i}": a for i, a in enumerate(org.recorder.assertions)})
    secrets.update({f"DPoP proof {i}": p for i, p in enumerate(org.recorder.proofs)})
    secrets.update({f"private key PEM line {i}": line
                    for i, line in enumerate(_pem_body_lines(Path(org.connection["private_key_path"]).read_bytes()))})
    secrets["private key d"] = _b64url_int(signing_key.key.private_numbers().d)
    secrets["private key DER"] = base64.b64encode(signing_key.private_bytes()).decode()[40:120]
    # The run's DPoP key travels sealed in XCom: open it (we hold the private key) to know what to look for.
    token_xcom = result.xcom["okta_token"]
    for scopes in (["okta.users.read"], ["okta.users.manage"]):
        sealed = token_xcom.get(token_xcom_key(scopes))
        if sealed is None:
            continue
        context = "|".join([SYNC_DAG, result.run_id, org.connection["org_url"], org.connection["client_id"],
                            org.connection["org_url"] + "/oauth2/v1/token", " ".join(sorted(scopes))])
        dpop_key = open_sealed_token(sealed, signing_key, context).dpop_key
        assert dpop_key is not None, "the run did not use DPoP"
        for i, line in enumerate(_pem_body_lines(dpop_key.to_pem())):
            secrets[f"DPoP key PEM line {i} ({scopes[0]})"] = line
        secrets[f"DPoP key d ({scopes[0]})"] = _b64url_int(load_pem_private_key(dpop_key.to_pem(), None).private_numbers().private_value)
    assert len(org.recorder.assertions) >= 3 and len(org.recorder.proofs) >= 3
    assert sum(name.startswith("access token") for name in secrets) >= 3

    rendered = {}
    for ti in result.task_instances:
        path = (f"/api/v2/dags/{SYNC_DAG}/dagRuns/{result.run_id}/taskInstances/{ti['task_id']}")
        rendered[ti["task_id"]] = stack.api("GET", path).get("rendered_fields")
    assert rendered["push_changes"]["report_uri"].endswith("report.csv")
    places = {f"log of {key}": text.encode() for key, text in result.logs.items()}
    places["XComs"] = json.dumps(result.xcom).encode()
    places["rendered fields"] = json.dumps(rendered).encode()
    places.update({str(path): data for path, data in _every_file(stack.home, output_dir).items()})
    assert any("report.csv" in name for name in places) and any("airflow.db" in name for name in places)
    assert any(b"refreshing it once" in data for name, data in places.items() if name.startswith("log of push"))

    leaks = [(secret_name, place) for place, data in places.items()
             for secret_name, value in secrets.items() if value.encode() in data]
    assert leaks == []


# ---- a killed push resumes -------------------------------------------------------------------------------------

def _add_messy_users(org, count: int) -> dict[str, dict]:
    added = {}
    for i in range(count):
        user = org.admin.add_user({"login": f"kill.test{i}@example.com", "email": f"kill.test{i}@example.com",
                                   "firstName": f"  Ada   {i} ", "lastName": " Lovelace  "})
        added[user["id"]] = user
    return added


def _task_process(stack, org_port: int) -> psutil.Process | None:
    """The process talking to the dev org: the task itself (its supervisor only talks to the api-server)."""
    for proc in stack.processes():
        try:
            if any(c.raddr and c.raddr.port == org_port for c in proc.net_connections(kind="tcp")):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def _journal_lines(output_dir: Path) -> int:
    return sum(path.read_text().count("\n")
               for path in (output_dir / RETRY_DAG).glob("*/report.csv.journal/*.jsonl"))


def test_a_push_killed_mid_way_is_retried_and_finishes_without_redoing_work(stack, org, output_dir):
    added = _add_messy_users(org, 120)
    normalizer = Normalizer.default()
    posts_before = org.admin.stats()["updates"]
    org.admin.configure(latency_ms=25)  # ~120 x (GET + POST) / 2 in flight: several seconds of push
    killed = {}

    def kill_mid_push(stop: threading.Event):
        while not stop.is_set():
            if _journal_lines(output_dir) >= 20:
                proc = _task_process(stack, org.port)
                if proc is not None:
                    killed["pid"], killed["journal"] = proc.pid, _journal_lines(output_dir)
                    proc.send_signal(signal.SIGKILL)
                    return
            time.sleep(0.02)

    stop = threading.Event()
    killer = threading.Thread(target=kill_mid_push, args=(stop,), daemon=True)
    killer.start()
    try:
        result = stack.run_dag(RETRY_DAG, timeout=240)
    finally:
        stop.set()
        org.admin.configure(latency_ms=0)
    assert killed, "the push was never caught mid-way"
    assert result.state == "success", result.describe()
    push = next(ti for ti in result.task_instances if ti["task_id"] == "push_changes")
    assert push["try_number"] == 2, push
    assert 20 <= killed["journal"] < len(added)

    posts = post_counts(org, posts_before)
    assert set(posts) == set(added), "every added user fixed, nobody else written"
    assert all(n == 1 for n in posts.values()), {u: n for u, n in posts.items() if n > 1}
    for uid, user in added.items():
        assert org.admin.user(uid)["profile"] == normalizer.normalize_profile(user["profile"])

    summary = result.xcom["push_changes"]["return_value"]
    assert summary["failed"] == summary["not_attempted"] == 0
    assert summary["applied"] + summary["unchanged"] == 2 * len(added)  # firstName and lastName of each
    log = result.logs["push_changes"]
    assert log.count("Push done") == 1
