"""Warehouse loads against a real PostgreSQL server, through the postgres provider's DbApiHook and dialect, and the
okta_users_to_warehouse DAG run by Airflow after okta_user_sync runs against the dev org."""

from __future__ import annotations

import gzip
import json
import os
from collections import namedtuple
from datetime import datetime, timezone
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions
from tests.conftest import dev_org_airflow_env, forget_asset_history
from tests.postgres_server import PostgresServer, find_bin_dir

pytestmark = pytest.mark.airflow
ROOT = Path(__file__).resolve().parents[2]
Event = namedtuple("Event", "id extra timestamp")


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


def write_export(folder: Path, name: str, users: list[dict]) -> str:
    path = folder / name
    with gzip.open(path, "wt", encoding="utf-8") as file:
        for item in users:
            file.write(json.dumps(item) + "\n")
    return path.as_uri()


def test_loads_through_the_postgres_hook_in_snapshot_order_exactly_once(warehouse, tmp_path):
    from okta_sync.airflow.warehouse import load_new_exports

    t0, t1, t2 = "2026-01-01T00:00:00.000Z", "2026-01-02T08:00:00.000Z", "2026-01-03T00:00:00.000Z"
    full = write_export(tmp_path, "full.jsonl.gz", [user(n, t0) for n in range(5)])
    incremental = write_export(tmp_path, "incr.jsonl.gz", [user(1, t1, department="Finance"),
                                                           user(2, t1, status="SUSPENDED"), user(7, t1)])
    second_full = write_export(tmp_path, "full2.jsonl.gz", [user(n, t0) for n in (0, 3)] +
                               [user(1, t1, department="Finance"), user(2, t1, status="SUSPENDED"), user(7, t1)])
    stamp = datetime(2026, 1, 5, tzinfo=timezone.utc)
    events = [  # not in snapshot order: the loads must be
        Event(12, {"path": second_full, "kind": "full", "exported_at": "2026-01-04T00:00:00.000Z"}, stamp),
        Event(10, {"path": full, "kind": "full", "exported_at": "2026-01-01T01:00:00.000Z", "users": 5}, stamp),
        Event(11, {"path": incremental, "kind": "incremental", "exported_at": t2, "watermark": t1}, stamp),
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


def test_a_bad_event_fails_the_task_after_the_others_load_without_echoing(warehouse, tmp_path):
    from okta_sync.sync.warehouse import WarehouseLoadError
    from okta_sync.airflow.warehouse import load_new_exports

    good = write_export(tmp_path, "a.jsonl.gz", [user(1, "2026-01-01T00:00:00.000Z")])
    events = [Event(1, {"path": good, "kind": "full", "exported_at": "2026-01-02T00:00:00.000Z"}, None),
              Event(2, {"path": "s3://x/SECRET-TOKEN", "kind": "DROP TABLE okta_users"}, None)]
    with pytest.raises(WarehouseLoadError) as caught:
        load_new_exports("okta_warehouse", events)
    assert "ids [2]" in str(caught.value) and "SECRET" not in str(caught.value) and "DROP" not in str(caught.value)
    assert warehouse("SELECT export_path FROM okta_sync_loads") == [(good,)]


def test_a_missing_export_is_skipped_only_when_a_newer_full_export_supersedes_it(warehouse, tmp_path):
    from okta_sync.sync.warehouse import WarehouseLoadError
    from okta_sync.airflow.warehouse import load_new_exports

    gone = (tmp_path / "pruned.jsonl.gz").as_uri()
    newer = write_export(tmp_path, "b.jsonl.gz", [user(1, "2026-01-05T00:00:00.000Z")])
    old_event = Event(1, {"path": gone, "kind": "incremental", "exported_at": "2026-01-01T00:00:00.000Z"}, None)
    summary = load_new_exports("okta_warehouse", [old_event, Event(
        2, {"path": newer, "kind": "full", "exported_at": "2026-01-06T00:00:00.000Z"}, None)])
    assert summary["superseded_missing_events"] == [1] and summary["loaded"] == 1
    latest = Event(3, {"path": gone, "kind": "incremental", "exported_at": "2026-01-07T00:00:00.000Z"}, None)
    with pytest.raises(WarehouseLoadError, match="event 3: the export .* is gone"):
        load_new_exports("okta_warehouse", [latest])


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


def test_an_event_path_outside_the_output_root_is_refused_by_id_never_read(warehouse, tmp_path, tmp_path_factory):
    from okta_sync.sync.warehouse import WarehouseLoadError
    from okta_sync.airflow.warehouse import load_new_exports

    elsewhere = tmp_path_factory.mktemp("not-the-output-root")
    outside = write_export(elsewhere, "secret.jsonl.gz", [user(7, "2026-01-01T00:00:00.000Z")])
    good = write_export(tmp_path, "a.jsonl.gz", [user(1, "2026-01-01T00:00:00.000Z")])
    events = [Event(1, {"path": good, "kind": "full", "exported_at": "2026-01-02T00:00:00.000Z"}, None),
              Event(2, {"path": outside, "kind": "incremental", "exported_at": "2026-01-03T00:00:00.000Z"}, None)]
    with pytest.raises(WarehouseLoadError) as caught:
        load_new_exports("okta_warehouse", events)
    assert "ids [2]" in str(caught.value) and "not-the-output-root" not in str(caught.value)
    assert warehouse("SELECT id FROM okta_users") == [(user(1, "x")["id"],)]
