"""Warehouse loads (okta_sync.sync.warehouse) against SQLite: versions, deletions, exactly once, one transaction."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from okta_sync.sync.warehouse import (
    ExportRef,
    SqlFlavour,
    WarehouseLoadError,
    ensure_schema,
    load_export,
    loaded_exports,
    pending_exports,
)

SQLITE = SqlFlavour("sqlite", "?", lambda table, columns, key: (
    f"REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"))


def user(n: int, updated: str = "2026-01-01T00:00:00.000Z", status: str = "ACTIVE", **profile) -> dict:
    base = {"login": f"user{n}@example.com", "email": f"user{n}@example.com", "firstName": f"First{n}",
            "lastName": f"Last{n}", "department": "Engineering" if n % 2 else "Sales"}
    return {"id": f"00u{n:08d}", "status": status, "created": "2025-01-01T00:00:00.000Z", "lastUpdated": updated,
            "profile": {**base, **profile}}


@pytest.fixture
def db(tmp_path):
    connection = sqlite3.connect(tmp_path / "warehouse.db")
    ensure_schema(connection, SQLITE)
    yield connection
    connection.close()


def load(db, path, users, kind="incremental", exported_at="2026-01-02T00:00:00.000Z", event_id=1):
    export = ExportRef(path=path, kind=kind, exported_at=exported_at, event_id=event_id)
    return load_export(db, SQLITE, export, iter(users), batch_size=3)


def rows(db, sql):
    return db.execute(sql).fetchall()


def snapshot(db):
    return [rows(db, f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("okta_users", "okta_user_history")]


def test_first_full_load_writes_users_columns_and_one_version_each(db):
    result = load(db, "a.jsonl", [user(n) for n in range(7)], kind="full")
    assert (result.read, result.inserted, result.deleted) == (7, 7, 0)
    (row,) = rows(db, "SELECT id, status, login, email, first_name, department, deleted_at, profile "
                      "FROM okta_users WHERE id = '00u00000003'")
    assert row[:7] == ("00u00000003", "ACTIVE", "user3@example.com", "user3@example.com", "First3", "Engineering",
                       None)
    assert json.loads(row[7])["lastName"] == "Last3"
    assert rows(db, "SELECT COUNT(*), COUNT(valid_to) FROM okta_user_history") == [(7, 0)]
    assert rows(db, "SELECT export_path, kind, users_read FROM okta_sync_loads") == [("a.jsonl", "full", 7)]


def test_the_same_export_again_changes_nothing(db):
    users = [user(n) for n in range(5)]
    load(db, "a.jsonl", users, kind="full")
    before = snapshot(db)
    again = load(db, "a.jsonl", users, kind="full")
    assert again.skipped and again.read == 0
    assert snapshot(db) == before
    # the same users in a new export: read, but no version and no row changes
    other = load(db, "b.jsonl", users, event_id=2)
    assert (other.read, other.unchanged, other.changed) == (5, 5, 0)
    assert snapshot(db) == before


def test_a_change_opens_a_version_and_closes_the_previous_one(db):
    load(db, "a.jsonl", [user(n) for n in range(3)], kind="full")
    t2 = "2026-01-03T10:00:00.000Z"
    changed = user(1, updated=t2, department="Finance")
    touched = user(2, updated=t2)  # lastUpdated moved (say, a password change): nothing we keep changed
    new = user(9, updated=t2)
    result = load(db, "b.jsonl", [changed, touched, new], exported_at="2026-01-04T00:00:00.000Z", event_id=2)
    assert (result.changed, result.touched, result.inserted) == (1, 1, 1)
    history = rows(db, "SELECT valid_from, valid_to, json_extract(profile, '$.department') FROM okta_user_history "
                       "WHERE id = '00u00000001' ORDER BY valid_from")
    assert history == [("2026-01-01T00:00:00.000Z", t2, "Engineering"), (t2, None, "Finance")]
    assert rows(db, "SELECT COUNT(*) FROM okta_user_history WHERE id = '00u00000002'") == [(1,)]
    assert rows(db, "SELECT department, last_updated FROM okta_users WHERE id = '00u00000001'") == [("Finance", t2)]
    assert rows(db, "SELECT last_updated FROM okta_users WHERE id = '00u00000002'") == [(t2,)]


def test_a_full_export_deletes_the_users_it_no_longer_lists(db):
    load(db, "a.jsonl", [user(n) for n in range(4)], kind="full")
    # user 3 changed after the second full export began: a later export saw it, this one cannot delete it
    load(db, "b.jsonl", [user(3, updated="2026-01-05T12:00:00.000Z", title="CTO")], event_id=2,
         exported_at="2026-01-06T00:00:00.000Z")
    result = load(db, "c.jsonl", [user(0), user(1)], kind="full", exported_at="2026-01-05T00:00:00.000Z", event_id=3)
    assert result.deleted == 1
    assert rows(db, "SELECT id, deleted_at FROM okta_users WHERE deleted_at IS NOT NULL") == [
        ("00u00000002", "2026-01-05T00:00:00.000Z")]
    closed = rows(db, "SELECT valid_to FROM okta_user_history WHERE id = '00u00000002'")
    assert closed == [("2026-01-05T00:00:00.000Z",)]
    # an incremental export never deletes
    assert load(db, "d.jsonl", [user(0)], event_id=4).deleted == 0
    # seen again later: restored, with a new version after the deletion
    back = user(2, updated="2026-01-07T00:00:00.000Z")
    assert load(db, "e.jsonl", [back], event_id=5, exported_at="2026-01-08T00:00:00.000Z").restored == 1
    assert rows(db, "SELECT deleted_at FROM okta_users WHERE id = '00u00000002'") == [(None,)]
    assert rows(db, "SELECT valid_from, valid_to FROM okta_user_history WHERE id = '00u00000002' ORDER BY 1") == [
        ("2026-01-01T00:00:00.000Z", "2026-01-05T00:00:00.000Z"), ("2026-01-07T00:00:00.000Z", None)]


def test_an_older_export_loaded_late_does_not_roll_users_back(db):
    load(db, "new.jsonl", [user(1, updated="2026-02-01T00:00:00.000Z", title="Lead")], event_id=2)
    before = snapshot(db)
    result = load(db, "old.jsonl", [user(1, title="Junior")], event_id=1)
    assert result.stale == 1
    assert snapshot(db) == before


def test_a_failed_load_leaves_nothing_behind_and_can_be_retried(db):
    load(db, "a.jsonl", [user(n) for n in range(3)], kind="full")
    before = snapshot(db)
    # the bad line is in the second batch: the first one was already written when it fails
    broken = [user(0, updated="2026-01-03T00:00:00.000Z", title="X"), user(5), user(6), {"id": "00u1", "profile": {}}]
    with pytest.raises(WarehouseLoadError, match="export line 4 .*lastUpdated"):
        load(db, "b.jsonl", broken, kind="full", event_id=2)
    assert snapshot(db) == before
    assert loaded_exports(db) == {("a.jsonl", 1)}
    retried = load(db, "b.jsonl", broken[:3], kind="full", event_id=2)
    assert (retried.changed, retried.inserted, retried.deleted) == (1, 2, 2)
    assert rows(db, "SELECT COUNT(*) FROM okta_user_history") == [(6,)]


def test_a_user_listed_twice_keeps_the_newest(db):
    result = load(db, "a.jsonl", [user(1), user(1, updated="2026-01-01T05:00:00.000Z", title="B"), user(1)])
    assert result.inserted == 1
    assert rows(db, "SELECT title FROM okta_users") == [("B",)]
    assert rows(db, "SELECT COUNT(*) FROM okta_user_history") == [(1,)]


def test_pending_exports_are_ordered_by_snapshot_time_not_event_order():
    events = [(7, {"path": "c", "kind": "incremental", "exported_at": "2026-01-03T00:00:00.000Z"}),
              (3, {"path": "a", "kind": "full", "exported_at": "2026-01-01T00:00:00.000Z", "users": 5}),
              (9, {"path": "b", "users": 1}),  # an event from before `kind`/`exported_at`: its own timestamp
              (5, {"path": "done", "kind": "full", "exported_at": "2026-01-01T00:00:00.000Z"})]
    stamp = datetime(2026, 1, 2, tzinfo=timezone.utc)
    exports = [ExportRef.from_event(i, extra, stamp) for i, extra in events]
    todo = pending_exports(exports, {("done", 5)})
    assert [(e.path, e.kind) for e in todo] == [("a", "full"), ("b", "incremental"), ("c", "incremental")]


@pytest.mark.parametrize("extra, field", [
    ({"kind": "full"}, "path"),
    ({"path": "x" * 5000}, "path"),
    ({"path": "a", "kind": "everything-SECRET"}, "kind"),
    ({"path": "a", "exported_at": "yesterday-SECRET"}, "exported_at"),
    ({"path": "a", "exported_at": "2026-01-01T00:00:00.000Z", "watermark": 5}, "watermark"),
    ({"path": "a", "exported_at": "2026-01-01T00:00:00.000Z", "users": -1}, "users"),
])
def test_bad_event_extras_are_refused_by_field_without_echo(extra, field):
    with pytest.raises(WarehouseLoadError) as caught:
        ExportRef.from_event(4, extra, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert f"extra.{field}" in str(caught.value) and "SECRET" not in str(caught.value)


def test_the_core_imports_no_airflow():
    blocker = ("import sys\nclass Block:\n    def find_spec(self, name, *args):\n"
               "        if name.split('.')[0] == 'airflow': raise ImportError('airflow is blocked')\n"
               "sys.meta_path.insert(0, Block())\nimport okta_sync.sync.warehouse\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
