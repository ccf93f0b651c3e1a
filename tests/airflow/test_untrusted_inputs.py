"""XCom, Asset events and Asset state are written by people as well as by our tasks (issue 20): every place our DAGs
and operators read them gets a hostile value (wrong type, huge, a future date, another run's) and must answer with
a bounded refusal that names the field, never the value. Warehouse events: tests/airflow/test_warehouse_postgres.py
and tests/unit/sync/test_warehouse.py; XCom paths (users_uri, plan_uri): the run-folder checks of storage."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from okta_sync.errors import ConfigurationError, ManifestError, SealedTokenError, UntrustedValueError

pytestmark = pytest.mark.airflow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HOSTILE_STATE = [9, ["2026-01-01T00:00:00.000Z"], {"$gt": ""}, "9999-12-31T23:59:59.000Z", "x" * 1_000_000,
                 "2026-13-01T00:00:00.000Z SECRET"]


class Store:
    """An Asset state accessor (`asset_state_store[asset]`), holding what someone wrote over the REST API."""

    def __init__(self, **values):
        self.values, self.written = values, []

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.written.append((key, value))
        self.values[key] = value


# --- select_users: the watermark read back from the Asset state ---------------------------------------------------

@pytest.mark.parametrize("value", HOSTILE_STATE, ids=["int", "list", "object", "9999", "huge", "bad-date"])
def test_a_hostile_stored_watermark_falls_back_to_a_full_listing_loudly(value, caplog, capfd):
    from okta_sync.airflow.watermark import read_watermark

    caplog.set_level(logging.WARNING)
    assert read_watermark(Store(watermark=value), now=NOW) is None
    text = logged(caplog, capfd)
    assert "WATERMARK REFUSED" in text and "asset state okta_users_export.watermark" in text
    assert "SECRET" not in text and "9999" not in text and "xxxx" not in text


def logged(caplog, capfd) -> str:
    """What the task log shows (Airflow's structlog may write to stderr rather than through caplog)."""
    captured = capfd.readouterr()
    return caplog.text + captured.out + captured.err


# --- commit_watermark: the manifest of this run's export, not the XComs ------------------------------------------

def write_manifest(folder, *, run_id="manual__r", watermark="2026-03-01T11:58:00.000Z", kind="full",
                   finished_at="2026-03-01T11:59:00.000Z", users=3) -> str:
    from okta_sync.sync.manifest import FileDigest, Manifest, Producer
    from okta_sync.sync.sync_window import ALL_USERS_SEARCH

    manifest = Manifest(dataset="users", producer=Producer("okta_user_sync", run_id, "export_users"), kind=kind,
                        search=ALL_USERS_SEARCH, exported_at="2026-03-01T11:58:00.000Z", finished_at=finished_at,
                        files=(FileDigest("users.jsonl.gz", "0" * 64, 0),), counts={"users": users, "pages": 1},
                        watermark=watermark)
    path = folder / "users.manifest.json"
    path.write_bytes(manifest.to_json())
    return path.as_uri()


def commit(store, uri, partial_run=False, now=NOW):
    from okta_sync.airflow.watermark import commit_watermark

    return commit_watermark(store, uri, dag_id="okta_user_sync", run_id="manual__r", partial_run=partial_run, now=now)


def test_the_committed_watermark_is_the_manifests(tmp_path):
    store = Store(watermark="2026-02-01T00:00:00.000Z")
    assert commit(store, write_manifest(tmp_path)) == {"watermark": "2026-03-01T11:58:00.000Z", "advanced": True}
    assert store.written == [("watermark", "2026-03-01T11:58:00.000Z")]


@pytest.mark.parametrize("changes, error, field", [
    ({"watermark": "9999-12-31T23:59:59.000Z", "finished_at": "9999-12-31T23:59:59.000Z"}, UntrustedValueError,
     "manifest.watermark"),
    ({"watermark": "2026-03-01T11:58:00.000Z", "finished_at": "2026-03-01T11:58:00.000Z", "run_id": "manual__other"},
     ManifestError, "producer"),
])
def test_a_future_watermark_or_another_runs_manifest_fails_the_commit_at_once(tmp_path, changes, error, field):
    from airflow.sdk.exceptions import AirflowFailException

    store = Store(watermark="2026-02-01T00:00:00.000Z")
    with pytest.raises(error) as caught:
        commit(store, write_manifest(tmp_path, **changes))
    assert isinstance(caught.value, AirflowFailException)  # no retries: running again reads the same values
    assert field in str(caught.value) and "9999" not in str(caught.value) and store.written == []


@pytest.mark.parametrize("pushed", [None, "apply", {"dry_run": "false"}, {"dry_run": 0}, {}, [1, 2]])
def test_an_edited_push_xcom_can_only_keep_the_watermark(pushed, caplog, capfd):
    from okta_sync.airflow.watermark import was_dry_run

    caplog.set_level(logging.WARNING)
    assert was_dry_run(pushed, decided_dry_run=False) is True
    assert "dry_run is missing or not a boolean" in logged(caplog, capfd)
    assert was_dry_run({"dry_run": False}, decided_dry_run=True) is True  # the write mode, decided again, wins
    assert was_dry_run({"dry_run": False}, decided_dry_run=False) is False


def test_a_run_that_selects_nobody_a_day_after_the_watermark_warns(tmp_path, caplog, capfd):
    caplog.set_level(logging.WARNING)
    from okta_sync.sync.sync_window import users_search

    stored = "2026-02-27T12:00:00.000Z"
    uri = write_manifest(tmp_path, kind="full", watermark=None, users=0)
    manifest = json.loads((tmp_path / "users.manifest.json").read_text())
    manifest.update(kind="incremental", search=users_search(watermark=stored))
    (tmp_path / "users.manifest.json").write_text(json.dumps(manifest))
    assert commit(Store(watermark=stored), uri)["advanced"] is False
    text = logged(caplog, capfd)
    assert "QUIET ORG?" in text and "48 hours" in text


# --- export_users: search, partitions and kind rendered from select_users' XCom ------------------------------------

@pytest.fixture
def export_operator():
    from okta_sync import OktaExportUsersOperator

    def make(**rendered):
        operator = OktaExportUsersOperator(task_id="export", output_uri="file:///nowhere/users.jsonl.gz",
                                           okta_conn_id="no_such_connection", search="{{ x }}", partitions="{{ x }}",
                                           kind="{{ x }}")
        for name in ("search", "partitions", "kind"):  # what the templates rendered from the XCom
            setattr(operator, name, rendered.get(name))
        return operator
    return make


@pytest.mark.parametrize("fields, field", [
    ({"kind": "full", "search": 'id eq "00u1"'}, "kind"),  # the XCom edit: full with a one-user search
    ({"kind": "everything", "search": None}, "kind"),
    ({"partitions": str(10**9)}, "partitions"),
    ({"partitions": "9" * 5000}, "partitions"),
    ({"partitions": "-1"}, "partitions"),
    ({"search": "x" * 100_000}, "search"),
    ({"search": ["status eq \"ACTIVE\""]}, "search"),
])
def test_hostile_xcom_values_fail_the_export_at_once_before_any_request(export_operator, fields, field):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(ConfigurationError) as caught:
        export_operator(**fields).execute({})  # no connection exists: the refusal comes first
    assert isinstance(caught.value, AirflowFailException) and caught.value.field == field
    assert "00u1" not in str(caught.value) and "xxxx" not in str(caught.value)


# --- export_users: the created hint in the Asset state -------------------------------------------------------------

@pytest.mark.parametrize("value", [
    *HOSTILE_STATE, {"search": "", "hint": {"quantiles": list(range(100_000)), "users": 5}},
    {"search": "", "hint": {"quantiles": [1, 2], "users": 10**15}},
    {"search": "", "hint": {"quantiles": [1, 2 * 10**17], "users": 5}},  # after the year 9999
    {"search": "", "hint": {"quantiles": [1, 2], "users": 5, "top_density": float("nan")}},
], ids=lambda value: type(value).__name__)
def test_a_hostile_created_hint_is_dropped_and_the_org_probed(value, export_operator):
    operator = export_operator(partitions="auto")
    assert operator._read_hint(Store(created_hint=value), None) is None


# --- every task: the run's sealed token in the token task's XCom ----------------------------------------------------

@pytest.mark.parametrize("value", [{"value": "eyJ..."}, 12, "okta-sync-token-v1." + "A" * 1_000_000,
                                   "okta-sync-token-v1.not-base64!", "okta-sync-token-v1." + "QUJD" * 30])
def test_a_hostile_sealed_token_xcom_is_refused_and_a_token_minted_instead(value):
    from okta_sync.airflow.token_handoff import open_sealed_token
    from okta_sync.auth.keys import load_signing_key
    from tests.keys import pkcs8_pem, rsa_key

    key = load_signing_key(private_key=pkcs8_pem(rsa_key()))
    with pytest.raises(SealedTokenError) as caught:
        open_sealed_token(value, key, "okta_user_sync|run|org|client|url|okta.users.read")
    assert "AAAA" not in str(caught.value) and "eyJ" not in str(caught.value)
