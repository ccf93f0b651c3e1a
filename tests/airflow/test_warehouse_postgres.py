"""Warehouse loads against a real PostgreSQL server, through the postgres provider's DbApiHook and dialect, and the
okta_users_to_warehouse DAG run by Airflow after okta_user_sync runs against the dev org."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections import namedtuple
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.conftest import damage_gzip, dev_org_airflow_env, forget_asset_history
from tests.postgres_server import PostgresServer, find_bin_dir

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
Event = namedtuple("Event", "id extra timestamp source_dag_id source_task_id source_run_id")


@pytest.fixture(scope="session")
def postgres():
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin): "
                    "apt-get install postgresql")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def warehouse(postgres, monkeypatch, tmp_path):
    """`okta_warehouse` pointing at a fresh database of the server; yields a query function. Exports written under
    tmp_path are inside the output root (the warehouse reads Asset-event paths only there)."""
    import psycopg

    name = f"wh_{os.urandom(4).hex()}"
    admin = dict(host="127.0.0.1", port=postgres.port, user="postgres")
    with psycopg.connect(dbname="postgres", autocommit=True, **admin) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_WAREHOUSE", json.dumps({**postgres.connection, "schema": name}))
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", tmp_path.as_uri())

    def query(sql, *args):
        with psycopg.connect(dbname=name, **admin) as connection:
            return connection.execute(sql, args or None).fetchall()

    yield query


def user(n: int, updated: str, status: str = "ACTIVE", **profile) -> dict:
    base = {"login": f"u{n}@example.com", "email": f"u{n}@example.com", "firstName": "Zoë", "lastName": f"L{n}",
            "department": "Engineering"}
    return {"id": f"00u{n:08d}", "status": status, "created": "2025-01-01T00:00:00.000Z", "lastUpdated": updated,
            "profile": {**base, **profile}}


def write_export(folder: Path, name: str, users: list[dict], *, run_id: str | None = None, kind: str = "incremental",
                 exported_at: str = "2026-01-01T00:00:00.000Z", manifest: bool = True) -> str:
    """An export as okta_user_sync.export_users writes it: in its run's folder (`run_id`; default: a run named
    after the file) under the output root `folder`, with its manifest beside it. Returns the export's URI."""
    from okta_sync.airflow.storage import run_folder_uri
    from okta_sync.sync.export import ExportResult, users_manifest
    from okta_sync.sync.manifest import DigestWriter, Producer, manifest_uri
    from okta_sync.sync.sync_window import ALL_USERS_SEARCH

    run_id = run_id or f"manual__{name}"
    uri = f"{run_folder_uri(folder.as_uri(), 'okta_user_sync', run_id)}/{name}"
    path = Path(uri.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    content = DigestWriter(io.BytesIO())
    with gzip.open(path, "wb") as file:
        for item in users:
            line = (json.dumps(item) + "\n").encode()
            file.write(line)
            content.write(line)
    if manifest:
        result = ExportResult(users=len(users), pages=1,
                              max_last_updated=max((u["lastUpdated"] for u in users), default=None))
        written = users_manifest(producer=Producer("okta_user_sync", run_id, "export_users", 1), kind=kind,
                                 search=ALL_USERS_SEARCH if kind == "full" else 'lastUpdated gt "2025-01-01T00:00:00.000Z"',
                                 exported_at=exported_at, finished_at=exported_at, result=result,
                                 file=content.digest(name))
        Path(manifest_uri(uri).removeprefix("file://")).write_bytes(written.to_json())
    return uri


def export_event(event_id: int, uri: str, kind: str = "incremental", exported_at: str = "2026-01-01T00:00:00.000Z",
                 timestamp: datetime | None = None, source: bool = True, **extra) -> Event:
    """The Asset event export_users emits for an export written by `write_export` (source: Airflow's record)."""
    from okta_sync.sync.manifest import manifest_name

    name = uri.rpartition("/")[2]
    run_id = f"manual__{name}" if source is True else source or None
    return Event(event_id, {"path": uri, "kind": kind, "exported_at": exported_at, "manifest": manifest_name(name),
                            **extra}, timestamp or datetime(2026, 2, 1, tzinfo=timezone.utc),
                 "okta_user_sync" if source else None, "export_users" if source else None, run_id)


def test_loads_through_the_postgres_hook_in_snapshot_order_exactly_once(warehouse, tmp_path):
    from okta_sync.airflow.warehouse import load_new_exports

    t0, t1, t2 = "2026-01-01T00:00:00.000Z", "2026-01-02T08:00:00.000Z", "2026-01-03T00:00:00.000Z"
    t3, t4 = "2026-01-01T01:00:00.000Z", "2026-01-04T00:00:00.000Z"
    full = write_export(tmp_path, "full.jsonl.gz", [user(n, t0) for n in range(5)], kind="full", exported_at=t3)
    incremental = write_export(tmp_path, "incr.jsonl.gz", [user(1, t1, department="Finance"),
                                                           user(2, t1, status="SUSPENDED"), user(7, t1)], exported_at=t2)
    second_full = write_export(tmp_path, "full2.jsonl.gz", [user(n, t0) for n in (0, 3)] +
                               [user(1, t1, department="Finance"), user(2, t1, status="SUSPENDED"), user(7, t1)],
                               kind="full", exported_at=t4)
    events = [  # not in snapshot order: the loads must be
        export_event(12, second_full, "full", t4),
        export_event(10, full, "full", t3, users=5),
        export_event(11, incremental, "incremental", t2, watermark=t1),
    ]
    summary = load_new_exports("okta_warehouse", events)
    assert [load["path"] for load in summary["loads"]] == [full, incremental, second_full]
    assert summary["loaded"] == 3 and summary["refused_events"] == []

    assert warehouse("SELECT id, status, department, deleted_at IS NOT NULL FROM okta_users ORDER BY id") == [
        ("00u00000000", "ACTIVE", "Engineering", False), ("00u00000001", "ACTIVE", "Finance", False),
        ("00u00000002", "SUSPENDED", "Engineering", False), ("00u00000003", "ACTIVE", "Engineering", False),
        ("00u00000004", "ACTIVE", "Engineering", True), ("00u00000007", "ACTIVE", "Engineering", False)]
    # JSONB and timestamptz on PostgreSQL: JSON operators and time arithmetic work on the stored values
    assert warehouse("SELECT data_type FROM information_schema.columns WHERE table_name = 'okta_users' "
                     "AND column_name IN ('profile', 'last_updated') ORDER BY column_name") == [
        ("timestamp with time zone",), ("jsonb",)]
    assert warehouse("SELECT profile->>'firstName' FROM okta_users WHERE id = '00u00000001'") == [("Zoë",)]
    history = warehouse("SELECT id, status, profile->>'department', valid_from, valid_to FROM okta_user_history "
                        "WHERE id IN ('00u00000001', '00u00000004') ORDER BY id, valid_from")
    at = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    assert history == [("00u00000001", "ACTIVE", "Engineering", at(t0), at(t1)),
                       ("00u00000001", "ACTIVE", "Finance", at(t1), None),
                       ("00u00000004", "ACTIVE", "Engineering", at(t0), at("2026-01-04T00:00:00.000Z"))]
    assert warehouse("SELECT COUNT(*) FROM okta_user_history") == [(8,)]

    before = [warehouse(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")]
    again = load_new_exports("okta_warehouse", events)
    assert again["loaded"] == 0 and again["loads"] == []
    assert [warehouse(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")] == before


def logged(caplog, capfd) -> str:
    """What the task log shows (Airflow's structlog may write to stderr rather than through caplog)."""
    captured = capfd.readouterr()
    return caplog.text + captured.out + captured.err


def test_a_bad_event_is_refused_and_recorded_once_while_the_others_load_without_echoing(warehouse, tmp_path, caplog,
                                                                                      capfd):
    from okta_sync.airflow.warehouse import load_new_exports

    good = write_export(tmp_path, "a.jsonl.gz", [user(1, "2026-01-01T00:00:00.000Z")], kind="full",
                        exported_at="2026-01-02T00:00:00.000Z")
    events = [export_event(1, good, "full", "2026-01-02T00:00:00.000Z"),
              Event(2, {"path": "s3://x/SECRET-TOKEN", "kind": "DROP TABLE okta_users"}, None, None, None, None)]
    summary = load_new_exports("okta_warehouse", events)
    assert summary["loaded"] == 1 and summary["refused"] == 1 and summary["refused_events"] == [2]
    text = logged(caplog, capfd)
    assert "Asset event 2 refused (bad_extra)" in text and "extra.kind" in text
    assert "SECRET" not in text and "DROP" not in text
    assert warehouse("SELECT export_path FROM okta_sync_loads") == [(good,)]
    assert warehouse("SELECT event_id, reason FROM okta_sync_refused") == [(2, "bad_extra")]
    again = load_new_exports("okta_warehouse", events)  # reported once, then skipped
    assert again["refused"] == 0 and again["refused_before"] == 1


def test_a_missing_export_waits_then_is_given_up_on_or_superseded_and_never_fails_later_runs(warehouse, tmp_path):
    from okta_sync.airflow.warehouse import load_new_exports

    gone = write_export(tmp_path, "pruned.jsonl.gz", [user(1, "2026-01-01T00:00:00.000Z")])
    for leftover in Path(gone.removeprefix("file://")).parent.iterdir():
        leftover.unlink()  # retention (or a person) removed the run folder's files
    newer = write_export(tmp_path, "b.jsonl.gz", [user(1, "2026-01-05T00:00:00.000Z")], kind="full",
                         exported_at="2026-01-06T00:00:00.000Z")
    old_event = export_event(1, gone, exported_at="2026-01-01T00:00:00.000Z")
    summary = load_new_exports("okta_warehouse", [old_event, export_event(2, newer, "full", "2026-01-06T00:00:00.000Z")])
    assert summary["superseded_missing_events"] == [1] and summary["loaded"] == 1
    stamp = datetime(2026, 2, 1, tzinfo=timezone.utc)
    latest = export_event(3, gone, exported_at="2026-01-07T00:00:00.000Z", timestamp=stamp)
    within = load_new_exports("okta_warehouse", [latest], now=stamp + timedelta(minutes=30))
    assert within["waiting_events"] == [3] and within["refused"] == 0  # a store's listing may lag: looked for again
    after = load_new_exports("okta_warehouse", [latest], now=stamp + timedelta(hours=3))
    assert after["refused_events"] == [3] and after["waiting_events"] == []
    assert warehouse("SELECT event_id, reason FROM okta_sync_refused ORDER BY 1") == [
        (1, "superseded_missing"), (3, "missing")]
    assert load_new_exports("okta_warehouse", [latest])["refused_before"] == 1  # never fails a later run


def test_the_issue_attacks_posted_as_asset_events_leave_the_table_unchanged(warehouse, tmp_path, caplog, capfd):
    """A real incremental export relabelled full and dated 9999 (the REST API: no source) must not mark the users
    it does not list deleted; an event naming a missing file dated 9999 must not fail every later run."""
    from okta_sync.airflow.warehouse import load_new_exports

    t0 = "2026-01-01T00:00:00.000Z"
    full = write_export(tmp_path, "full.jsonl.gz", [user(n, t0) for n in range(200)], kind="full", exported_at=t0)
    incremental = write_export(tmp_path, "incr.jsonl.gz", [user(n, "2026-01-02T00:00:00.000Z") for n in range(15)],
                               exported_at="2026-01-02T01:00:00.000Z")
    load_new_exports("okta_warehouse", [export_event(1, full, "full", t0)])
    before = [warehouse(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")]
    forged = [
        export_event(2, incremental, "full", "9999-12-31T23:59:59.000Z", source=False, from_rest_api=True),
        export_event(3, (tmp_path / "nothing-here.jsonl.gz").as_uri(), "full", "9999-12-31T23:59:59.000Z",
                     source=False, from_rest_api=True),
        # the same relabelling, had it come from the export task itself: the manifest says otherwise
        export_event(4, incremental, "full", "2026-01-02T01:00:00.000Z"),
    ]
    summary = load_new_exports("okta_warehouse", forged)
    assert summary["loaded"] == 0 and sorted(summary["refused_events"]) == [2, 3, 4]
    assert [warehouse(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")] == before
    assert warehouse("SELECT COUNT(*) FROM okta_users WHERE deleted_at IS NULL") == [(200,)]
    assert warehouse("SELECT event_id, reason FROM okta_sync_refused ORDER BY 1") == [
        (2, "not_the_export_task"), (3, "not_the_export_task"), (4, "extra_not_the_manifest")]
    text = logged(caplog, capfd)
    assert "not_the_export_task" in text and "9999" not in text
    # the real event of that export still loads, as incremental
    later = load_new_exports("okta_warehouse", [*forged, export_event(5, incremental, "incremental",
                                                                       "2026-01-02T01:00:00.000Z")])
    assert later["loaded"] == 1 and later["refused_before"] == 3
    assert warehouse("SELECT kind FROM okta_sync_loads WHERE event_id = 5") == [("incremental",)]
    assert warehouse("SELECT COUNT(*) FROM okta_users WHERE deleted_at IS NULL") == [(200,)]


def test_an_export_edited_after_its_manifest_is_refused_and_rolled_back(warehouse, tmp_path):
    from okta_sync.airflow.warehouse import load_new_exports

    t0 = "2026-01-01T00:00:00.000Z"
    load_new_exports("okta_warehouse", [export_event(1, write_export(
        tmp_path, "a.jsonl.gz", [user(n, t0) for n in range(50)], kind="full", exported_at=t0), "full", t0)])
    full = write_export(tmp_path, "b.jsonl.gz", [user(n, "2026-01-02T00:00:00.000Z") for n in range(50)],
                        kind="full", exported_at="2026-01-03T00:00:00.000Z")
    path = Path(full.removeprefix("file://"))
    with gzip.open(path, "rb") as file:
        lines = file.readlines()
    with gzip.open(path, "wb") as file:  # one user removed after the manifest was written
        file.writelines(lines[:10] + lines[11:])
    before = [warehouse(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")]
    summary = load_new_exports("okta_warehouse", [export_event(2, full, "full", "2026-01-03T00:00:00.000Z")])
    assert summary["refused_events"] == [2] and summary["loaded"] == 0
    assert [warehouse(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")] == before
    assert warehouse("SELECT reason FROM okta_sync_refused") == [("content_not_the_manifest",)]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_truncated_or_corrupt_export_is_refused_as_unreadable_midway_through_the_copy(warehouse, tmp_path, damage):
    """The gzip stream breaks while the one COPY of the load runs (EOFError, zlib.error or BadGzipFile): the event is
    refused, the load rolled back, and the next export loads."""
    from okta_sync.airflow.warehouse import load_new_exports

    t0, t1 = "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"
    damaged = write_export(tmp_path, "a.jsonl.gz", [user(n, t0) for n in range(3000)], kind="full", exported_at=t0)
    path = Path(damaged.removeprefix("file://"))
    damage_gzip(path, damage)
    good = write_export(tmp_path, "b.jsonl.gz", [user(n, t1) for n in range(5)], kind="full", exported_at=t1)
    summary = load_new_exports("okta_warehouse", [export_event(1, damaged, "full", t0),
                                                  export_event(2, good, "full", t1)])
    assert (summary["refused_events"], summary["loaded"]) == ([1], 1)
    assert warehouse("SELECT reason FROM okta_sync_refused") == [("unreadable",)]
    assert warehouse("SELECT COUNT(*) FROM okta_users") == [(5,)]


def test_the_dag_loads_what_okta_user_sync_exported(warehouse, tmp_path_factory, airflow_db):
    """okta_user_sync (full, then incremental) -> okta_users_to_warehouse -> okta_users_summary, all by Airflow."""
    from airflow.dag_processing.dagbag import DagBag

    options = DevOrgOptions(users=60, messy_fraction=0, seed=5, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-warehouse"))
    output = tmp_path_factory.mktemp("warehouse-output")

    def run(dag_id, **conf):
        dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]
        result = dag.test(run_conf=conf or None)
        assert result.state == "success", f"{dag_id} ended {result.state}"
        return result

    forget_asset_history()  # the export Asset's history is this test's exports only
    with DevOrg(options) as org, dev_org_airflow_env(org.connection, output):
        run("okta_user_sync", full_refresh=True)
        run("okta_users_to_warehouse")
        assert warehouse("SELECT COUNT(*), COUNT(deleted_at) FROM okta_users") == [(60, 0)]
        assert warehouse("SELECT kind, users_read FROM okta_sync_loads") == [("full", 60)]

        someone = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
        org.admin.set_user_status(someone["id"], "SUSPENDED")
        newcomer = org.admin.add_user({"login": "new.hire@example.com", "email": "new.hire@example.com",
                                       "firstName": "New", "lastName": "Hire", "department": "Data"})
        run("okta_user_sync")  # incremental: the watermark of the first run
        run("okta_user_sync", full_refresh=True)
        run("okta_users_to_warehouse")  # both new exports, in order
        loads = warehouse("SELECT kind FROM okta_sync_loads ORDER BY exported_at")
        assert loads == [("full",), ("incremental",), ("full",)]
        assert warehouse("SELECT status, valid_to IS NULL FROM okta_user_history WHERE id = %s ORDER BY valid_from",
                         someone["id"]) == [("ACTIVE", False), ("SUSPENDED", True)]
        assert warehouse("SELECT department FROM okta_users WHERE id = %s", newcomer["id"]) == [("Data",)]
        assert warehouse("SELECT COUNT(*) FROM okta_user_history") == [(62,)]

        before = warehouse("SELECT * FROM okta_user_history ORDER BY 1, 2")
        run("okta_users_to_warehouse")  # a manual run with nothing new
        assert warehouse("SELECT COUNT(*) FROM okta_sync_loads") == [(3,)]
        assert warehouse("SELECT * FROM okta_user_history ORDER BY 1, 2") == before

        run("okta_users_summary")
        folder = output / "okta_users_summary"
        (summary_file,) = list(folder.glob("*/summary.json"))
        summary = json.loads(summary_file.read_text())
        assert summary["users"] == 61 and summary["deleted"] == 0
        assert summary["by_status"]["SUSPENDED"] >= 1 and summary["by_department"]["Data"] == 1


def post_asset_event(extra: dict) -> None:
    """What `POST /api/v2/assets/events` does (Op role): an event of okta_users_export with no source task."""
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils import timezone
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter(AssetModel.name == "okta_users_export").one()
        asset_manager.register_asset_change(asset=asset, timestamp=timezone.utcnow(),
                                            extra={**extra, "from_rest_api": True}, source_is_api=True,
                                            session=session)


def put_asset_state(key: str, value) -> None:
    """What `PUT /api/v2/assets/{id}/state/{key}` does: the value written over the REST API."""
    from airflow._shared.state import AssetScope, AssetStateStoreWriterKind
    from airflow.models.asset import AssetModel
    from airflow.state.metastore import _get_db_backend
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter(AssetModel.name == "okta_users_export").one()
        _get_db_backend().set_asset_state_store(AssetScope(asset_id=asset.id), key, json.dumps(value),
                                                kind=AssetStateStoreWriterKind.API, session=session)


def asset_state(key: str):
    from airflow.models.asset import AssetModel
    from airflow.models.asset_state_store import AssetStateStoreModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter(AssetModel.name == "okta_users_export").one()
        row = session.query(AssetStateStoreModel).filter_by(asset_id=asset.id, key=key).one_or_none()
        return None if row is None else json.loads(row.value)


def test_forged_events_and_a_poisoned_watermark_through_airflow_change_nothing(warehouse, tmp_path_factory,
                                                                               airflow_db):
    """Issue 20's attacks, through real task runs: a real incremental export posted again as `full` dated 9999, an
    event naming a missing file dated 9999, and the watermark written as 9999 in the Asset state."""
    from airflow.dag_processing.dagbag import DagBag

    from okta_sync.airflow.storage import run_folder_uri

    options = DevOrgOptions(users=60, messy_fraction=0, seed=7, rate_limit=0, concurrency_limit=0,
                            state_dir=tmp_path_factory.mktemp("devorg-forged"))
    output = tmp_path_factory.mktemp("forged-output")

    def run(dag_id, **conf):
        dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]
        result = dag.test(run_conf=conf or None)
        assert result.state == "success", f"{dag_id} ended {result.state}"
        return result

    def exported(result) -> list[dict]:
        folder = run_folder_uri(output.as_uri(), "okta_user_sync", result.run_id).removeprefix("file://")
        with gzip.open(Path(folder) / "users.jsonl.gz", "rt") as file:
            return [json.loads(line) for line in file]

    forget_asset_history()
    with DevOrg(options) as org, dev_org_airflow_env(org.connection, output):
        run("okta_user_sync", full_refresh=True)
        run("okta_users_to_warehouse")
        someone = next(u for u in org.admin.users() if u["status"] == "ACTIVE")
        org.admin.set_user_status(someone["id"], "SUSPENDED")
        incremental = run("okta_user_sync")
        assert 1 <= len(exported(incremental)) < 60  # the changed user (and the 10 minutes' overlap)
        path = run_folder_uri(output.as_uri(), "okta_user_sync", incremental.run_id) + "/users.jsonl.gz"
        post_asset_event({"path": path, "kind": "full", "exported_at": "9999-12-31T23:59:59.000Z",
                          "manifest": "users.manifest.json", "users": 1})
        post_asset_event({"path": (output / "gone.jsonl.gz").as_uri(), "kind": "full",
                          "exported_at": "9999-12-31T23:59:59.000Z"})
        run("okta_users_to_warehouse")
        assert warehouse("SELECT COUNT(*), COUNT(deleted_at) FROM okta_users") == [(60, 0)]  # main: 59 deleted
        assert warehouse("SELECT kind FROM okta_sync_loads ORDER BY exported_at") == [("full",), ("incremental",)]
        assert warehouse("SELECT reason, COUNT(*) FROM okta_sync_refused GROUP BY reason") == [
            ("not_the_export_task", 2)]
        run("okta_users_to_warehouse")  # main: fails here, and in every later run, on the missing file

        put_asset_state("watermark", "9999-12-31T23:59:59.000Z")
        changed = next(u for u in org.admin.users() if u["status"] == "ACTIVE" and u["id"] != someone["id"])
        org.admin.set_user_status(changed["id"], "SUSPENDED")
        after = run("okta_user_sync")  # main: selects nobody, now and in every later run
        assert len(exported(after)) == 60  # the refused watermark fell back to a full listing
        stored = asset_state("watermark")
        assert stored == max(u["lastUpdated"] for u in exported(after))  # a sane one again
        run("okta_users_to_warehouse")
        assert warehouse("SELECT status FROM okta_users WHERE id = %s", changed["id"]) == [("SUSPENDED",)]


def test_an_event_path_outside_the_output_root_is_refused_by_id_never_read(warehouse, tmp_path, tmp_path_factory,
                                                                          caplog, capfd):
    from okta_sync.airflow.warehouse import load_new_exports

    elsewhere = tmp_path_factory.mktemp("not-the-output-root")
    outside = write_export(elsewhere, "secret.jsonl.gz", [user(7, "2026-01-01T00:00:00.000Z")])
    good = write_export(tmp_path, "a.jsonl.gz", [user(1, "2026-01-01T00:00:00.000Z")], kind="full",
                        exported_at="2026-01-02T00:00:00.000Z")
    events = [export_event(1, good, "full", "2026-01-02T00:00:00.000Z"),
              export_event(2, outside, "incremental", "2026-01-03T00:00:00.000Z")]
    summary = load_new_exports("okta_warehouse", events)
    text = logged(caplog, capfd)
    assert summary["refused_events"] == [2] and "outside_run_folder" in text and "not-the-output-root" not in text
    assert warehouse("SELECT id FROM okta_users") == [(user(1, "x")["id"],)]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_staged_copy_keeps_every_character_with_either_driver(postgres, driver):
    """PostgresHook connects with psycopg 3 or psycopg2 (by SQLAlchemy's version): COPY's text format must carry
    tabs, newlines, backslashes, `\\N` spelled out and NULL through both."""
    import importlib

    from okta_sync.sync.warehouse import copy_rows

    module = importlib.import_module(driver)
    connection = module.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="postgres")
    rows = [(1, "a\tb\nc\\d\r", None, '{"k": "\\\\N \\t Zoë"}'), (2, "\\N", "", "{}")]
    try:
        cursor = connection.cursor()
        cursor.execute("CREATE TEMPORARY TABLE staged (line BIGINT, text TEXT, other TEXT, doc JSONB)")
        assert copy_rows(cursor, "staged", ("line", "text", "other", "doc"), rows)
        cursor.execute("SELECT line, text, other, doc::text FROM staged ORDER BY line")
        assert cursor.fetchall() == [(1, "a\tb\nc\\d\r", None, '{"k": "\\\\N \\t Zoë"}'), (2, "\\N", "", "{}")]
    finally:
        connection.rollback()
        connection.close()


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_bad_row_met_during_the_copy_raises_its_own_error_with_either_driver(postgres, driver):
    """Rows are made while the COPY runs: a bad export line must surface as the loader's own error (the Airflow layer
    refuses the event on it), not as the driver's QueryCanceled, and leave the connection usable."""
    import importlib

    from okta_sync.errors import WarehouseLoadError
    from okta_sync.sync.warehouse import copy_rows

    def rows():
        for n in range(10_000):
            if n == 7_000:
                raise WarehouseLoadError("export line 7001: id is missing or not an Okta user id")
            yield n, "x"

    module = importlib.import_module(driver)
    connection = module.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="postgres")
    try:
        cursor = connection.cursor()
        cursor.execute("CREATE TEMPORARY TABLE staged (line BIGINT, text TEXT)")
        with pytest.raises(WarehouseLoadError, match="export line 7001"):
            copy_rows(cursor, "staged", ("line", "text"), rows())
        connection.rollback()
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    finally:
        connection.rollback()
        connection.close()


def test_every_kind_of_change_set_based_on_postgres(warehouse):
    """The staged, set-based load on PostgreSQL's own types (timestamptz, JSONB): new, changed, touched, unchanged,
    stale, deleted, restored and a user listed twice, each counted and versioned as on SQLite."""
    import contextlib

    from okta_sync.airflow.warehouse import flavour_for, warehouse_hook
    from okta_sync.sync.warehouse import ExportRef, ensure_schema, load_export

    t1, t2 = "2026-01-01T00:00:00.000Z", "2026-01-20T00:00:00.000Z"
    hook = warehouse_hook("okta_warehouse")
    flavour = flavour_for(hook)

    def load(event_id, kind, exported_at, users):
        export = ExportRef(path=f"e{event_id}", kind=kind, exported_at=exported_at, event_id=event_id)
        return load_export(connection, flavour, export, iter(users), batch_size=2).as_dict()

    def counts(result):
        return {k: v for k, v in result.items() if isinstance(v, int) and v and k not in ("event_id",)}

    with contextlib.closing(hook.get_conn()) as connection:
        ensure_schema(connection, flavour)
        first = load(1, "full", "2026-01-02T00:00:00.000Z",
                     [user(1, t1), user(2, t1), user(3, t1), user(4, t1, title="old"), user(4, t2, title="new")])
        assert counts(first) == {"read": 4, "inserted": 4}
        second = load(2, "full", "2026-02-02T00:00:00.000Z",
                      [user(1, t2, title="changed"), user(2, t2), user(4, t2, title="new")])
        assert counts(second) == {"read": 3, "changed": 1, "touched": 1, "unchanged": 1, "deleted": 1}
        late = load(3, "incremental", "2026-01-15T00:00:00.000Z", [user(1, "2026-01-10T00:00:00.000Z")])
        assert counts(late) == {"read": 1, "stale": 1}
        back = load(4, "incremental", "2026-02-03T00:00:00.000Z", [user(3, "2026-02-01T00:00:00.000Z")])
        assert counts(back) == {"read": 1, "restored": 1}
    assert warehouse("SELECT id, title, deleted_at FROM okta_users ORDER BY id") == [
        ("00u00000001", "changed", None), ("00u00000002", None, None), ("00u00000003", None, None),
        ("00u00000004", "new", None)]
    history = warehouse("SELECT id, valid_from, valid_to, profile->>'title' FROM okta_user_history "
                        "ORDER BY id, valid_from")
    stamp = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    assert [(i, f, t, title) for i, f, t, title in history] == [
        ("00u00000001", stamp(t1), stamp(t2), None), ("00u00000001", stamp(t2), None, "changed"),
        ("00u00000002", stamp(t1), None, None),
        ("00u00000003", stamp(t1), stamp("2026-02-02T00:00:00.000Z"), None),
        ("00u00000003", stamp("2026-02-02T00:00:00.000Z"), None, None),  # restored after its deleted_at
        ("00u00000004", stamp(t2), None, "new")]
