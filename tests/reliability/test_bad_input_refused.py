"""Bad input is refused with an error that names what to fix, and nothing is written to Okta.

Keys and settings go through the Airflow connection (AIRFLOW_CONN_OKTA_DEFAULT -> OktaHook, what every task does
first) and, where Okta is the judge, against the dev org. Changes feeds go through the DAG's `changes_uri` param.
Pure-core refusals already covered in tests/unit/test_credentials.py are not repeated.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync.errors import ConfigurationError, TokenRequestError
from okta_sync.sync.profile_rules import Normalizer
from tests import keys
from tests.conftest import connection_env_value, dev_org_airflow_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=200, messy_fraction=0.0, seed=31, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-bad-input"))
    with DevOrg(options) as org:
        yield org


def hook_for(monkeypatch, connection: dict, password: str | None = None, **extra):
    value = json.loads(connection_env_value(connection, **extra))
    if password is not None:
        value["password"] = password
        value["extra"].pop("private_key_path", None)
    value["extra"] = {k: v for k, v in value["extra"].items() if v is not None}
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_DEFAULT", json.dumps(value))
    from okta_sync.airflow.hooks import OktaHook

    return OktaHook()


def write_key(tmp_path, key, passphrase: bytes | None = None) -> str:
    return str(keys.write_key(tmp_path / "key.pem", keys.pkcs8_pem(key, passphrase)))


def nothing_reached_okta(org, before: dict) -> None:
    after = org.admin.stats()
    assert after["token_requests"] == before["token_requests"]
    assert after["updates_total"] == before["updates_total"]


CONNECTION_REFUSALS = {
    "malformed-pem": (lambda tmp: {"password": "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----"},
                      "private_key", "not a valid PEM"),
    "wrong-passphrase": (lambda tmp: {"private_key_path": write_key(tmp, keys.rsa_key(), b"right one"),
                                      "private_key_passphrase": "wrong one"}, "private_key_passphrase", "wrong passphrase"),
    "rsa-1024": (lambda tmp: {"private_key_path": write_key(tmp, keys.rsa_key(1024))}, "private_key", "at least 2048"),
    "dsa": (lambda tmp: {"private_key_path": write_key(tmp, keys.dsa_key())}, "private_key", "DSA key"),
    "ed25519": (lambda tmp: {"private_key_path": write_key(tmp, keys.ed25519_key())}, "private_key", "Ed25519 key"),
    "assertion-lifetime-2h": (lambda tmp: {"assertion_lifetime": 7200}, "assertion_lifetime", "3600"),
    "http-not-loopback": (lambda tmp: {"host": "http://dev-123.okta.com"}, "org_url", "https://"),
    "org-url-with-path": (lambda tmp: {"host": "ORG/oauth2/default"}, "org_url", "no path or query"),
    "org-url-with-query": (lambda tmp: {"host": "ORG?tenant=1"}, "org_url", "no path or query"),
    "blank-scopes": (lambda tmp: {"scopes": " , "}, "scopes", "no scope"),
}


@pytest.mark.airflow
@pytest.mark.parametrize("make, field, words", list(CONNECTION_REFUSALS.values()), ids=list(CONNECTION_REFUSALS))
def test_a_bad_connection_is_refused_naming_the_field_before_any_request(org, monkeypatch, tmp_path, make, field,
                                                                          words):
    settings = make(tmp_path)
    connection = dict(org.connection)
    if "host" in settings:
        connection["org_url"] = settings.pop("host").replace("ORG", org.url)
    password = settings.pop("password", None)
    before = org.admin.stats()
    hook = hook_for(monkeypatch, connection, password=password, **settings)
    with pytest.raises(ConfigurationError) as raised:
        hook.get_token(["okta.users.read"])
    assert raised.value.field == field and words in str(raised.value)
    assert "BEGIN" not in str(raised.value) and "right one" not in str(raised.value)
    nothing_reached_okta(org, before)


@pytest.mark.airflow
def test_a_key_that_does_not_match_the_registered_jwk_gets_invalid_client_with_the_hint(org, monkeypatch, tmp_path):
    hook = hook_for(monkeypatch, org.connection, private_key_path=write_key(tmp_path, keys.rsa_key()))
    before = org.admin.stats()["updates_total"]
    with pytest.raises(TokenRequestError) as raised:
        hook.get_token(["okta.users.read"])
    error = raised.value
    assert (error.status, error.error) == (401, "invalid_client")
    assert "key_id (kid)" in error.hint and "private half" in error.hint
    assert org.admin.stats()["token_requests"]["refused_reasons"].get("signature_invalid", 0) >= 1
    assert org.admin.stats()["updates_total"] == before


@pytest.mark.airflow
def test_no_kid_for_an_app_with_several_keys_gets_invalid_client_with_the_hint(org, monkeypatch, tmp_path):
    from okta_sync.auth.keys import load_signing_key

    first, second = keys.rsa_key(), keys.ec_key()
    jwks = [load_signing_key(private_key=keys.pkcs8_pem(k), key_id=f"k{i}").public_jwk()
            for i, k in enumerate((first, second))]
    org.admin.register_client("0oamultiplekeys1234", jwks, granted_scopes=["okta.users.read"])
    connection = {**org.connection, "client_id": "0oamultiplekeys1234", "key_id": None}
    hook = hook_for(monkeypatch, connection, private_key_path=write_key(tmp_path, first))
    with pytest.raises(TokenRequestError) as raised:
        hook.get_token(["okta.users.read"])
    assert (raised.value.status, raised.value.error) == (401, "invalid_client")
    assert "kid is required when the app has several keys" in raised.value.hint
    assert org.admin.stats()["token_requests"]["refused_reasons"].get("kid_missing", 0) >= 1
    # the same key with its kid is accepted: the refusal was about the kid only
    hook = hook_for(monkeypatch, {**connection, "key_id": "k0"}, private_key_path=write_key(tmp_path, first))
    assert hook.get_token(["okta.users.read"]).scopes == ("okta.users.read",)


@pytest.mark.airflow
def test_an_unknown_scope_gets_invalid_scope_with_the_hint(org, monkeypatch):
    hook = hook_for(monkeypatch, org.connection, scopes="okta.users.read okta.userz.manage")
    with pytest.raises(TokenRequestError) as raised:
        hook.get_token(["okta.userz.manage"])
    assert (raised.value.status, raised.value.error) == (400, "invalid_scope")
    assert "Okta API Scopes" in raised.value.hint


# ---- changes feeds through the DAG -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def feed_org(tmp_path_factory):
    options = DevOrgOptions(users=60, messy_fraction=0.0, seed=37, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-feeds"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture(scope="module")
def feed_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feed-root")


@pytest.fixture(scope="module")
def feed_env(feed_org, feed_root, tmp_path_factory, airflow_db):
    output = tmp_path_factory.mktemp("feed-output")
    with dev_org_airflow_env(feed_org.connection, output):
        os.environ["AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS"] = json.dumps([feed_root.as_uri()])
        try:
            yield output
        finally:
            os.environ.pop("AIRFLOW_VAR_OKTA_SYNC_FEED_ROOTS", None)


@pytest.fixture
def feed_dir(feed_env, feed_root, request) -> Path:
    """A fresh folder under the feed root (the Variable okta_sync_feed_roots) for one test's feeds."""
    folder = feed_root / request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:80]
    folder.mkdir()
    return folder


def run_feed(feed_org, path: Path | str, retries: int = 0):
    """The DAG with this feed, every task without retries (a refused feed fails at once); returns run, POSTs."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "okta_user_sync.py")).dags["okta_user_sync"]
    for task in dag.tasks:
        task.retries = retries
        task.retry_delay = timedelta(seconds=1)
        task.retry_exponential_backoff = False
    before = feed_org.admin.stats()["updates_total"]
    run = dag.test(run_conf={"changes_uri": path.as_uri() if isinstance(path, Path) else path})
    return run, feed_org.admin.stats()["updates_total"] - before


def task_states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as file:
        csv.writer(file).writerows(rows)
    return path


@pytest.mark.airflow
@pytest.mark.parametrize("make_feed", [
    lambda d, login: d.joinpath("latin1.csv").write_bytes(b"login,department\n" + login.encode() + b",Ing\xe9nierie\n"),
    lambda d, login: write_csv(d / "nokey.csv", [["email", "department"], [login, "Data"]]),
    lambda d, login: write_csv(d / "unknown.csv", [["login", "departmant"], [login, "Data"]]),
], ids=["bad-encoding", "no-key-column", "unknown-attribute"])
def test_a_feed_refused_as_a_whole_fails_the_plan_and_writes_nothing(feed_org, feed_dir, make_feed):
    login = feed_org.admin.users()[0]["profile"]["login"]
    make_feed(feed_dir, login)
    path = next(feed_dir.iterdir())
    run, posts = run_feed(feed_org, path)
    assert run.state == "failed"
    states = task_states(run)
    assert states["plan_changes"] == "failed" and states["push_changes"] == "upstream_failed"
    assert posts == 0


@pytest.mark.airflow
def test_refused_rows_are_reported_and_never_applied_and_formulas_are_neutralised(feed_org, feed_env, feed_dir):
    users = [u for u in feed_org.admin.users() if u["status"] == "ACTIVE"][:4]
    logins = [u["profile"]["login"] for u in users]
    feed = write_csv(feed_dir / "changes.csv", [
        ["login", "firstName", "department"],
        [logins[0], "", "=cmd|' /C calc'!A0"],         # accepted by Okta, neutralised in the CSV report
        [logins[1], "A" * 51, "Finance"],               # firstName over 50: the whole row is refused
        [logins[2], "", "Legal"],                       # duplicate key: neither row applied
        [logins[2].upper(), "", "Sales"],
        [logins[3], "", "Platform"],                    # a plain good row
    ])
    run, posts = run_feed(feed_org, feed)
    assert run.state == "success"
    after = {u["id"]: u["profile"] for u in feed_org.admin.users()}
    assert after[users[0]["id"]]["department"] == "=cmd|' /C calc'!A0"
    assert after[users[3]["id"]]["department"] == "Platform"
    for refused in users[1:3]:
        assert after[refused["id"]] == refused["profile"], "a refused row was partly applied"
    assert posts == 2

    report = run_output(feed_env, run, "report.csv")
    text = report.read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert "'=cmd|' /C calc'!A0" in text and ",=cmd" not in text
    by_login = {}
    for row in rows:
        by_login.setdefault(row["login"].lower(), []).append(row)
    long_name = by_login[logins[1].lower()]
    assert {r["status"] for r in long_name} == {"skipped"}
    assert any(r["attribute"] == "firstName" and "50" in r["reason"] for r in long_name)
    assert any(r["attribute"] == "department" for r in long_name), "the row's other change is reported too"
    duplicate = by_login[logins[2].lower()]
    assert {r["status"] for r in duplicate} == {"skipped"} and all("duplicate key" in r["reason"] for r in duplicate)
    assert {r["status"] for r in by_login[logins[3].lower()]} == {"applied"}


def run_output(output: Path, run, name: str) -> Path:
    """A file of this run's folder, found through the plan header's exact run id."""
    for plan in output.rglob("plan.jsonl"):
        with open(plan, encoding="utf-8") as file:
            if json.loads(file.readline())["metadata"]["run_id"] == run.run_id:
                return plan.parent / name
    raise AssertionError(f"no run folder for {run.run_id}")


SECRET = "AKIAIOSFODNN7EXAMPLE/wJalrXUtnFEMIK7MDENG"


@pytest.mark.airflow
@pytest.mark.parametrize("where", ["/etc/passwd", "/proc/self/environ", "outside", "symlink", "dotdot", "sibling"])
def test_a_feed_outside_the_feed_roots_fails_at_once_and_is_never_read(feed_org, feed_root, feed_dir, tmp_path,
                                                                        capfd, where):
    """Issue 10, point 2: whoever may trigger the DAG could make the worker open any file, and the 'one column'
    hint quoted its first line into the task log."""
    secret = tmp_path / "environ"
    secret.write_text(f"AWS_SECRET_ACCESS_KEY={SECRET};HOME=/root\n")
    evil = feed_root.parent / (feed_root.name + "-evil")
    evil.mkdir(exist_ok=True)
    (evil / "changes.csv").write_text(f"AWS_SECRET_ACCESS_KEY={SECRET};x\n")
    os.symlink(secret, feed_dir / "changes.csv")
    uri = {"/etc/passwd": "/etc/passwd", "/proc/self/environ": "file:///proc/self/environ",
           "outside": secret.as_uri(), "symlink": (feed_dir / "changes.csv").as_uri(),
           "dotdot": f"{feed_dir.as_uri()}/../../{tmp_path.parent.name}/{tmp_path.name}/environ",
           "sibling": (evil / "changes.csv").as_uri()}[where]
    run, posts = run_feed(feed_org, uri, retries=2)
    assert run.state == "failed" and posts == 0
    plan = next(ti for ti in run.get_task_instances() if ti.task_id == "plan_changes")
    assert (plan.state, plan.try_number) == ("failed", 1), "a feed outside the roots is not worth a retry"
    output = capfd.readouterr()
    assert "okta_sync_feed_roots" in output.out + output.err
    assert SECRET not in output.out + output.err and "root:x:0:0" not in output.out + output.err


@pytest.mark.airflow
def test_refused_json_rows_and_unknown_members_reach_the_report_and_plan_by_line_and_name_never_value(
        feed_org, feed_env, feed_dir):
    users = [u for u in feed_org.admin.users() if u["status"] == "ACTIVE"][:3]
    feed = feed_dir / "changes.jsonl"
    feed.write_text("\n".join(json.dumps(row) for row in [
        {"login": users[0]["profile"]["login"], "password": "hunter2", "department": "Data"},   # unknown member
        {"login": users[1]["profile"]["login"], f"k={SECRET}": 1},                               # not a name
        {"login": users[2]["profile"]["login"], "firstName": SECRET * 2, "title": "Hunter2 Title"},  # over 50
    ]) + "\n", encoding="utf-8")
    run, posts = run_feed(feed_org, feed)
    assert run.state == "success" and posts == 0
    for name in ("report.csv", "plan.jsonl"):
        text = run_output(feed_env, run, name).read_text(encoding="utf-8")
        assert "hunter2" not in text.lower() and SECRET not in text and "Data" not in text, name
    rows = list(csv.DictReader(run_output(feed_env, run, "report.csv").read_text(encoding="utf-8").splitlines()))
    assert {(r["line"], r["attribute"], r["status"]) for r in rows} >= {
        ("1", "password", "skipped"), ("1", "department", "skipped"), ("2", "", "skipped"),
        ("3", "firstName", "skipped"), ("3", "title", "skipped")}
    assert all(r["new"] == "" for r in rows)


# ---- keys on disk ------------------------------------------------------------------------------------------------

def test_generated_dev_org_keys_are_0600_and_outside_git(tmp_path):
    with DevOrg(DevOrgOptions(users=1, rate_limit=0, state_dir=ROOT / ".devorg-reliability-test")) as org:
        key = Path(org.connection["private_key_path"])
        try:
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
            ignored = subprocess.run(["git", "check-ignore", "-q", str(key)], cwd=ROOT)
            assert ignored.returncode == 0, f"{key} is not git-ignored"
        finally:
            import shutil

            shutil.rmtree(ROOT / ".devorg-reliability-test", ignore_errors=True)
    assert subprocess.run(["git", "check-ignore", "-q", ".devorg/client_private_key.pem"], cwd=ROOT).returncode == 0
    tracked = subprocess.run(["git", "grep", "-l", "-I", "PRIVATE KEY-----", "--", ":!*.md"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert [path for path in tracked if not path.endswith(".py")] == [], tracked
