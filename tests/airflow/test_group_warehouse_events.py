"""Which membership export events the warehouse believes: only those Airflow says okta_groups_sync.export_groups
emitted, whose manifest lies in that run's folder, was written by that task instance and describes each file."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import namedtuple
from datetime import datetime, timezone
from pathlib import Path

import pytest

from okta_sync.sync.manifest import FileDigest, Manifest, Producer
from tests.conftest import damage_gzip

pytestmark = pytest.mark.airflow
Event = namedtuple("Event", "id timestamp extra source_dag_id source_task_id source_run_id")
T0 = "2026-01-01T00:00:00.000Z"
STAMP = datetime(2026, 1, 2, tzinfo=timezone.utc)
GROUPS = [{"id": "00g1", "type": "OKTA_GROUP", "lastMembershipUpdated": T0, "profile": {"name": "One"}}]


@pytest.fixture
def env(tmp_path, monkeypatch):
    database = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_OKTA_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    monkeypatch.setenv("AIRFLOW_VAR_OKTA_SYNC_OUTPUT_URI", tmp_path.as_uri())
    return tmp_path, database


def write_export(root: Path, run_id: str, *, producer_run_id: str | None = None, tamper: bool = False) -> str:
    """A membership export as okta_groups_sync writes it into the run's folder; the manifest's URI."""
    import gzip

    from okta_sync.airflow.storage import run_folder_uri

    folder = Path(run_folder_uri(root.as_uri(), "okta_groups_sync", run_id).removeprefix("file://"))
    folder.mkdir(parents=True)
    contents = {"groups.jsonl.gz": b"".join(json.dumps(g).encode() + b"\n" for g in GROUPS),
                "memberships.jsonl.gz": b'{"group_id":"00g1","user_id":"00u1"}\n',
                "groups_read.jsonl.gz": b'{"group_id":"00g1"}\n'}
    for name, data in contents.items():
        with gzip.open(folder / name, "wb") as file:
            file.write(data.replace(b"00u1", b"00u2") if tamper and name.startswith("member") else data)
    manifest = Manifest(dataset="groups", producer=Producer("okta_groups_sync", producer_run_id or run_id,
                                                            "export_groups"),
                        kind="full", exported_at=T0, finished_at=T0, watermark=T0,
                        files=tuple(FileDigest(n, hashlib.sha256(d).hexdigest(), len(d)) for n, d in contents.items()),
                        counts={"groups": 1, "groups_read": 1, "memberships": 1, "group_pages": 1, "member_pages": 1})
    (folder / "groups.manifest.json").write_bytes(manifest.to_json())
    return (folder / "groups.manifest.json").as_uri()


def event(n: int, manifest: str, run_id: str | None, dag_id="okta_groups_sync", task_id="export_groups") -> Event:
    return Event(n, STAMP, {"paths": {"manifest": manifest}, "exported_at": T0}, dag_id if run_id else None,
                 task_id if run_id else None, run_id)


def test_only_the_export_tasks_own_manifests_are_loaded(env):
    from okta_sync.airflow.group_warehouse import load_new_group_exports

    root, database = env
    good = write_export(root, "scheduled__1")
    copied = write_export(root, "scheduled__2", producer_run_id="scheduled__9")  # a manifest copied from elsewhere
    tampered = write_export(root, "scheduled__3", tamper=True)
    events = [event(1, good, "scheduled__1"),
              event(2, good, None),  # posted over the REST API: no source
              event(3, good, "scheduled__4"),  # an allowed task, but the manifest is not in its run's folder
              event(4, good, "scheduled__1", dag_id="my_own_dag"),
              event(5, copied, "scheduled__2"),
              event(6, tampered, "scheduled__3")]
    summary = load_new_group_exports("okta_warehouse", events)  # refusals do not fail the task
    assert (summary["loaded"], summary["refused"], summary["refused_events"]) == (1, 5, [2, 3, 4, 5, 6])
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT manifest_path, event_id FROM okta_group_loads").fetchall() == [(good, 1)]
        assert db.execute("SELECT group_id, user_id FROM okta_group_members").fetchall() == [("00g1", "00u1")]


def test_a_refused_event_is_recorded_once_and_skipped_by_later_runs(env, caplog):
    from okta_sync.airflow.group_warehouse import load_new_group_exports

    root, database = env
    tampered = write_export(root, "scheduled__3", tamper=True)
    good = write_export(root, "scheduled__1")
    forged = event(2, good, None)  # posted over the REST API: no source
    summary = load_new_group_exports("okta_warehouse", [forged, event(6, tampered, "scheduled__3")])
    assert summary["refused_events"] == [2, 6]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and all("refused" in e for e in errors) and not any("scheduled__" in e for e in errors)
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT event_id, reason, export_path FROM okta_sync_refused ORDER BY event_id").fetchall() \
            == [(2, "not_the_export_task", None), (6, "bad_manifest", tampered)]
        assert db.execute("SELECT COUNT(*) FROM okta_group_loads").fetchall() == [(0,)]
    caplog.clear()
    summary = load_new_group_exports("okta_warehouse", [forged, event(6, tampered, "scheduled__3"),
                                                        event(1, good, "scheduled__1")])
    assert (summary["loaded"], summary["refused_events"], summary["refused_before"]) == (1, [], 2)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []  # not reported again
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM okta_sync_refused").fetchall() == [(2,)]


def test_a_missing_file_is_waited_for_then_refused_and_never_blocks_the_others(env):
    """An export whose files are gone (retention, a store that lists late) is looked for again during the grace, then
    refused as `missing`; the exports after it load either way."""
    from datetime import timedelta

    from okta_sync.airflow import group_warehouse

    root, database = env
    gone = write_export(root, "scheduled__1")
    Path(gone.removeprefix("file://")).with_name("memberships.jsonl.gz").unlink()
    later = write_export(root, "scheduled__2")
    just_now = event(1, gone, "scheduled__1")._replace(timestamp=datetime.now(timezone.utc))
    events = [just_now, event(2, later, "scheduled__2")]
    summary = group_warehouse.load_new_group_exports("okta_warehouse", events)  # within the grace: waited for
    assert (summary["loaded"], summary["waiting_events"], summary["refused_events"]) == (1, [1], [])
    late = just_now._replace(timestamp=just_now.timestamp - timedelta(hours=3))
    summary = group_warehouse.load_new_group_exports("okta_warehouse", [late, events[1]])
    assert (summary["loaded"], summary["waiting_events"], summary["refused_events"]) == (0, [], [1])
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT event_id, reason FROM okta_sync_refused").fetchall() == [(1, "missing")]
        assert db.execute("SELECT event_id FROM okta_group_loads").fetchall() == [(2,)]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_truncated_or_corrupt_file_is_refused_as_unreadable_and_never_blocks_the_others(env, damage):
    """A gzip stream cut short (EOFError) or damaged (zlib.error, BadGzipFile) is refused, recorded and skipped by
    later runs, like a file that is not its manifest's: failing the task would fail every run after it too."""
    root, database = env
    from okta_sync.airflow.group_warehouse import load_new_group_exports

    damaged = write_export(root, "scheduled__1")
    path = Path(damaged.removeprefix("file://")).with_name("memberships.jsonl.gz")
    damage_gzip(path, damage)
    good = write_export(root, "scheduled__2")
    events = [event(1, damaged, "scheduled__1"), event(2, good, "scheduled__2")]
    summary = load_new_group_exports("okta_warehouse", events)
    assert (summary["loaded"], summary["refused_events"]) == (1, [1])
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT event_id, reason FROM okta_sync_refused").fetchall() == [(1, "unreadable")]
        assert db.execute("SELECT event_id FROM okta_group_loads").fetchall() == [(2,)]
    assert load_new_group_exports("okta_warehouse", events)["refused_before"] == 1
