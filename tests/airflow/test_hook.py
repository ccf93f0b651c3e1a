"""OktaHook: connection in, core client out; lazy; secrets only from the connection; one token per run."""

from __future__ import annotations

import json
import os
import time
from unittest import mock

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from okta_sync.errors import ConfigurationError
from tests.conftest import connection_env_value

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    options = DevOrgOptions(users=30, seed=5, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-hook"))
    with DevOrg(options) as org:
        yield org


@pytest.fixture
def okta_conn(monkeypatch, org):
    def set_conn(conn_id="okta_default", **extra):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_env_value(org.connection, **extra))

    set_conn()
    return set_conn


def test_creating_the_hook_touches_nothing(monkeypatch):
    from okta_sync import OktaHook

    monkeypatch.setenv("AIRFLOW_CONN_OKTA_NOWHERE", json.dumps(
        {"conn_type": "okta", "host": "https://unreachable.invalid", "login": "0oa1", "extra": {"private_key_path": "/nope"}}))
    with mock.patch("requests.Session.request", side_effect=AssertionError("network at hook creation")):
        hook = OktaHook(okta_conn_id="okta_nowhere")
        assert hook.okta_conn_id == "okta_nowhere"
        assert "client" not in vars(hook) and "config" not in vars(hook)


def test_connection_fields_and_overrides(okta_conn, org):
    from okta_sync import OktaHook

    okta_conn(page_size="50", timeout="7")
    hook = OktaHook(max_concurrency=3)
    config = hook.config
    assert config.org_url == org.url
    assert config.client_id == org.connection["client_id"]
    assert (config.page_size, config.read_timeout, config.max_concurrency) == (50, 7.0, 3)
    assert OktaHook(page_size=10).config.page_size == 10  # the hook argument wins over the extra


def test_secrets_are_refused_as_hook_arguments(okta_conn):
    from okta_sync import OktaHook

    for secret in ("private_key", "private_key_path", "private_key_passphrase"):
        with pytest.raises(ConfigurationError) as raised:
            OktaHook(**{secret: "x"}).config
        assert raised.value.field == secret


@pytest.mark.parametrize(
    "conn, field",
    [
        ({"conn_type": "okta", "host": "http://okta.example.com", "login": "0oa1", "extra": {"private_key_path": "/k"}}, "org_url"),
        ({"conn_type": "okta", "host": "https://okta.example.com", "extra": {"private_key_path": "/k"}}, "login"),
        ({"conn_type": "okta", "host": "https://okta.example.com", "login": "0oa1", "extra": {"pagesize": 5, "private_key_path": "/k"}}, "extra.pagesize"),
        ({"conn_type": "okta", "host": "https://okta.example.com", "login": "0oa1"}, "private_key"),
    ],
    ids=["http-non-loopback", "no-client-id", "unknown-extra", "no-key"],
)
def test_connection_errors_name_the_field(monkeypatch, conn, field):
    from okta_sync import OktaHook

    monkeypatch.setenv("AIRFLOW_CONN_OKTA_BAD", json.dumps(conn))
    with pytest.raises(ConfigurationError) as raised:
        OktaHook("okta_bad").config
    assert raised.value.field == field


def test_unreadable_key_path_is_named_at_first_use(okta_conn, tmp_path):
    from okta_sync import OktaHook, PrivateKeyError

    okta_conn(private_key_path=str(tmp_path / "missing.pem"))
    with pytest.raises(PrivateKeyError) as raised:
        OktaHook().client
    assert raised.value.field == "private_key_path" and "missing.pem" in str(raised.value)


def test_the_test_button_is_no_file_existence_oracle(okta_conn, tmp_path):
    """Whoever may edit a connection must not learn from Test whether a file exists or what it holds."""
    from okta_sync import OktaHook

    (tmp_path / "shadow").write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for name in ("missing", "shadow", "dir", "fifo"):  # the FIFO last: on a blocking open it would hang there
        okta_conn(private_key_path=str(tmp_path / name))
        ok, message = OktaHook().test_connection()
        assert (ok, message.replace(repr(str(tmp_path / name)), "<path>")) == (False, (
            "private_key_path: <path> cannot be used: it must be a regular file of at most 64 KiB, readable by the "
            "worker, holding a PEM or JWK private key (every unusable file gets this same message)")), name


def test_inline_key_in_the_password_field(monkeypatch, org):
    from okta_sync import OktaHook

    connection = json.loads(connection_env_value(org.connection))
    connection["password"] = open(connection["extra"].pop("private_key_path")).read()
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_INLINE", json.dumps(connection))
    assert OktaHook("okta_inline").get_user(org.admin.users()[0]["id"])["id"]


def test_test_connection_mints_a_token_reads_a_user_and_names_the_scopes(okta_conn):
    from okta_sync import OktaHook

    ok, message = OktaHook().test_connection()
    assert ok, message
    assert "okta.users.read" in message and "read one user" in message


@pytest.mark.parametrize(
    ("org_options", "extra", "expected"),
    [
        ({}, {}, ["okta.users.manage can be minted", "read one group", "okta.groups.manage can be minted",
                  "does not require DPoP"]),
        ({"granted_scopes": ("okta.users.read",)}, {"scopes": "okta.users.read okta.users.manage"},
         ["okta.users.manage cannot be minted, pushes will fail", "invalid_scope"]),
        ({}, {"scopes": "okta.users.read"}, ["okta.users.manage is not in this connection's scopes",
                                             "neither okta.groups.read nor okta.groups.manage is in this connection"]),
        ({}, {"scopes": "okta.users.read okta.groups.read"}, ["read one group", "okta.groups.manage is not in this"]),
        ({"granted_scopes": ("okta.users.read", "okta.groups.read")},
         {"scopes": "okta.users.read okta.groups.read okta.groups.manage"},
         ["read one group", "okta.groups.manage cannot be minted, membership changes will fail"]),
        ({"granted_scopes": ("okta.users.read", "okta.groups.manage")},
         {"scopes": "okta.users.read okta.groups.read okta.groups.manage"},
         ["groups cannot be read, the groups DAGs will fail", "okta.groups.manage can be minted"]),
        ({"dpop": "required"}, {"dpop": "auto"}, ["the app requires DPoP (dpop=auto turned it on)"]),
    ],
    ids=["full", "manage-not-granted", "read-only-connection", "groups-read-only", "groups-manage-not-granted",
         "groups-read-not-granted", "dpop-required"],
)
def test_test_connection_says_whether_pushes_can_write_and_whether_dpop_is_required(
        monkeypatch, tmp_path, org_options, extra, expected):
    from okta_sync import OktaHook

    options = DevOrgOptions(users=3, seed=6, rate_limit=0, concurrency_limit=0, state_dir=tmp_path, **org_options)
    with DevOrg(options) as other:
        monkeypatch.setenv("AIRFLOW_CONN_OKTA_PROBE", connection_env_value(other.connection, max_attempts="1", **extra))
        ok, message = OktaHook("okta_probe").test_connection()
    assert ok, message
    assert "read one user" in message
    for part in expected:
        assert part in message


def test_test_connection_reports_a_refusal(okta_conn, org):
    from okta_sync import OktaHook

    okta_conn(token_url=org.url + "/oauth2/nosuchserver/v1/token", max_attempts="1")
    ok, message = OktaHook().test_connection()
    assert not ok and "token request" in message


def test_new_tokens_are_masked(okta_conn):
    from okta_sync import OktaHook

    with mock.patch("okta_sync.airflow.hooks.mask_secret") as mask:
        token = OktaHook().get_token(["okta.users.read"])
    assert mock.call(token.value) in mask.call_args_list


class FakeTI:
    """The few TaskInstance members the hook uses, with an in-memory XCom table."""

    xcom: dict = {}

    def __init__(self, task_id, dag_id="okta_user_sync"):
        self.task_id, self.dag_id = task_id, dag_id

    def xcom_push(self, key, value):
        FakeTI.xcom[(self.task_id, key)] = value

    def xcom_pull(self, task_ids, key):
        return FakeTI.xcom.get((task_ids, key))


def test_one_token_per_run_and_scope_set_across_hooks(okta_conn, org):
    from okta_sync import OktaHook

    FakeTI.xcom = {}
    run = {"run_id": "manual__1"}
    before = org.admin.stats()["tokens_issued"]
    OktaHook().join_run({**run, "ti": FakeTI("okta_token")}, token_task_id="okta_token").mint_run_tokens([["okta.users.read"]])
    sealed = list(FakeTI.xcom.values())
    assert len(sealed) == 1 and sealed[0].startswith("okta-sync-token-v1.")
    for task in ("export", "plan", "push"):  # separate hooks, as in separate task processes
        hook = OktaHook().join_run({**run, "ti": FakeTI(task)}, token_task_id="okta_token")
        list(hook.iter_users())
        assert hook.tokens_adopted == 1
    assert org.admin.stats()["tokens_issued"] - before == 1
    token_value = OktaHook().join_run({**run, "ti": FakeTI("x")}).get_token(["okta.users.read"]).value
    assert token_value not in sealed[0]

    # another run cannot open this run's token: it mints its own
    other = OktaHook().join_run({"run_id": "manual__2", "ti": FakeTI("export")}, token_task_id="okta_token")
    list(other.iter_users())
    assert other.tokens_adopted == 0
    assert org.admin.stats()["tokens_issued"] - before == 2


def test_an_expiring_shared_token_is_not_adopted(okta_conn, org):
    from okta_sync import OktaHook
    from okta_sync.airflow.token_handoff import seal_token
    from okta_sync.auth.tokens import AccessToken

    FakeTI.xcom = {}
    minter = OktaHook().join_run({"run_id": "r", "ti": FakeTI("okta_token")}, token_task_id="okta_token")
    almost_expired = AccessToken("old-token", "Bearer", time.time() + 60, ("okta.users.read",))
    from okta_sync.airflow.hooks import token_xcom_key

    FakeTI.xcom[("okta_token", token_xcom_key(["okta.users.read"]))] = seal_token(
        almost_expired, minter.client.signing_key, minter.token_provider.seal_context(["okta.users.read"]))
    hook = OktaHook().join_run({"run_id": "r", "ti": FakeTI("export")}, token_task_id="okta_token")
    assert hook.get_token(["okta.users.read"]).value != "old-token"
    assert hook.tokens_adopted == 0


CUSTOM_SECRET = "hook-secret-Zx9+/=="


def _secret_connection(org, **extra) -> str:
    fields = {"client_auth": "client_secret_basic", "authorization_server_id": "default", "scopes": "internal.api.read"}
    fields.update(extra)
    return json.dumps({"conn_type": "okta", "host": org.url, "login": "0oahooksecret", "password": CUSTOM_SECRET,
                       "extra": {k: v for k, v in fields.items() if v is not None}})


def test_get_token_for_a_custom_authorization_server_with_a_client_secret(monkeypatch, org, caplog):
    from okta_sync import OktaHook

    org.app.auth.register_client("0oahooksecret", [], (), client_secret=CUSTOM_SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_INTERNAL", _secret_connection(org))
    hook = OktaHook("okta_internal")
    with mock.patch("okta_sync.airflow.hooks.mask_secret") as mask:
        token = hook.get_token()
        ok, message = hook.test_connection()
    assert token.scopes == ("internal.api.read",) and token.token_type == "Bearer"
    assert ok and "authorization server default with scopes: internal.api.read" in message, message
    assert CUSTOM_SECRET in [call.args[0] for call in mask.call_args_list]  # the secret is masked when read
    for text in (repr(hook.config), repr(hook.client.client_auth), str(token), message, caplog.text):
        assert CUSTOM_SECRET not in text


@pytest.mark.parametrize(
    ("extra", "field", "says"),
    [
        ({"authorization_server_id": None}, "authorization_server_id",
         "Okta refuses a client secret at the org authorization server"),
        ({"scopes": "okta.users.read"}, "scopes", "okta.* scopes are minted only by the org authorization server"),
        ({"private_key_path": "/keys/app.pem"}, "private_key_path", "not used with client_secret_basic"),
        ({"client_auth": "client_secret_jwt"}, "client_auth", "must be one of"),
    ],
    ids=["org-server", "management-scope", "key-too", "unknown-method"],
)
def test_a_client_secret_connection_that_okta_would_refuse_names_the_field(monkeypatch, org, extra, field, says):
    from okta_sync import OktaHook

    monkeypatch.setenv("AIRFLOW_CONN_OKTA_INTERNAL", _secret_connection(org, **extra))
    with pytest.raises(ConfigurationError) as refused:
        OktaHook("okta_internal").get_token()
    assert refused.value.field == field and says in str(refused.value)
    assert CUSTOM_SECRET not in str(refused.value)


def test_the_token_task_mints_no_scope_the_connection_does_not_list(okta_conn, org):
    """The connection's `scopes` is a ceiling for the run's tokens too: a DAG asking the token task for a groups
    scope on a users-only connection fails before any token is minted, naming the scope and the field."""
    from airflow.sdk.exceptions import AirflowFailException

    from okta_sync import OktaHook, ScopeNotConfiguredError

    okta_conn(scopes="okta.users.read okta.users.manage")
    FakeTI.xcom = {}
    before = org.admin.stats()["tokens_issued"]
    hook = OktaHook().join_run({"run_id": "manual__ceiling", "ti": FakeTI("okta_token")}, token_task_id="okta_token")
    with pytest.raises(AirflowFailException) as refused:
        hook.mint_run_tokens([["okta.users.read"], ["okta.groups.read"]])
    assert isinstance(refused.value, ScopeNotConfiguredError)
    assert refused.value.scope == "okta.groups.read" and refused.value.field == "scopes"
    assert org.admin.stats()["tokens_issued"] == before and FakeTI.xcom == {}

    # a read is served by the manage scope of its family when only that one is configured (one token, not two)
    okta_conn(scopes="okta.users.manage")
    hook = OktaHook().join_run({"run_id": "manual__manage", "ti": FakeTI("okta_token")}, token_task_id="okta_token")
    published = hook.mint_run_tokens([["okta.users.read"], ["okta.users.manage"]])
    assert [entry["scopes"] for entry in published] == [["okta.users.manage"], ["okta.users.manage"]]
    assert org.admin.stats()["tokens_issued"] - before == 1
