"""Warehouse loads (okta_sync.sync.warehouse) against SQLite: versions, deletions, exactly once, one transaction."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from okta_sync.errors import ManifestError
from okta_sync.sync.export import read_users_jsonl
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


# --- what is loaded is what the export task wrote (issue 20, item 1) ---------------------------------------------

from datetime import timedelta  # noqa: E402

from okta_sync.sync.export import ExportResult, users_manifest  # noqa: E402
from okta_sync.sync.manifest import DigestReader, DigestWriter, Producer  # noqa: E402
from okta_sync.sync.sync_window import ALL_USERS_SEARCH  # noqa: E402
from okta_sync.sync.warehouse import (  # noqa: E402
    ExportEvent,
    Producers,
    check_claimed_time,
    check_source,
    file_name_in_folder,
    record_refusal,
    refused_events,
    vet_export,
)

FOLDER = "file:///out/okta_user_sync/scheduled__2026-01-02-0123456789abcdef"
RUN_ID = "scheduled__2026-01-02T00:00:00+00:00"
EVENT_TIME = datetime(2026, 1, 2, 0, 5, tzinfo=timezone.utc)


def export_content(users):
    return b"".join(json.dumps(u).encode() + b"\n" for u in users)


def manifest_for(content, kind="incremental", search='lastUpdated gt "2026-01-01T23:50:00.000Z"', users=2,
                 watermark="2026-01-01T23:59:00.000Z", run_id=RUN_ID, task_id="export_users"):
    sink = DigestWriter(io.BytesIO())
    sink.write(content)
    result = ExportResult(users=users, pages=1, max_last_updated=watermark)
    return users_manifest(producer=Producer("okta_user_sync", run_id, task_id, 1), kind=kind, search=search,
                          exported_at="2026-01-02T00:00:00.000Z", finished_at="2026-01-02T00:00:03.000Z",
                          result=result, file=sink.digest("users.jsonl.gz"))


def event(extra=None, **source):
    extra = {"path": f"{FOLDER}/users.jsonl.gz", "manifest": "users.manifest.json", "kind": "incremental",
             "exported_at": "2026-01-02T00:00:00.000Z", **(extra or {})}
    fields = {"source_dag_id": "okta_user_sync", "source_task_id": "export_users", "source_run_id": RUN_ID, **source}
    return ExportEvent(id=8, timestamp=EVENT_TIME, extra=extra, **fields)


def vet(evt, manifest):
    claim = ExportRef.from_event(evt.id, evt.extra, evt.timestamp)
    check_source(evt, Producers())
    file_name_in_folder(claim, FOLDER)
    check_claimed_time(evt, claim)
    return vet_export(evt, claim, manifest)


def test_an_event_of_the_export_task_is_loaded_as_its_manifest_says():
    content = export_content([user(1), user(2)])
    export = vet(event(), manifest_for(content))
    assert (export.kind, export.exported_at, export.users, export.watermark) == (
        "incremental", "2026-01-02T00:00:00.000Z", 2, "2026-01-01T23:59:00.000Z")
    assert export.file.content_bytes == len(content)


@pytest.mark.parametrize("evt, reason, named", [
    # the attack: a real incremental export, posted over the REST API (no source) as full and dated 9999
    (event({"kind": "full", "exported_at": "9999-12-31T23:59:59.000Z", "from_rest_api": True},
           source_dag_id=None, source_task_id=None, source_run_id=None), "not_the_export_task", "source_dag_id"),
    (event(source_dag_id="someone_elses_dag"), "not_the_export_task", "source_dag_id"),
    (event(source_task_id="plan_changes"), "not_the_export_task", "source_task_id"),
    (event(source_run_id="manual__other"), "not_the_events_export", "source_run_id"),
    (event({"path": "file:///out/okta_user_sync/other-run-0123456789abcdef/users.jsonl.gz"}), "outside_run_folder",
     "extra.path"),
    (event({"exported_at": "9999-12-31T23:59:59.000Z"}), "in_the_future", "extra.exported_at"),
    (event({"kind": "full"}), "extra_not_the_manifest", "extra.kind"),
    (event({"watermark": "2026-01-01T23:59:59.000Z"}), "extra_not_the_manifest", "extra.watermark"),
    (event({"users": 5}), "extra_not_the_manifest", "extra.users"),
])
def test_a_forged_or_relabelled_event_is_refused_naming_the_field(evt, reason, named):
    content = export_content([user(1), user(2)])
    with pytest.raises(WarehouseLoadError) as caught:
        vet(evt, manifest_for(content))
    assert caught.value.reason == reason and named in str(caught.value)
    assert "9999" not in str(caught.value) and "someone_elses" not in str(caught.value)


@pytest.mark.parametrize("manifest, reason", [
    (manifest_for(b"x", run_id="scheduled__another-run"), "not_the_events_export"),
    (manifest_for(b"x", task_id="export_users_again"), "not_the_events_export"),
    (manifest_for(b"x", watermark="2026-01-03T00:00:00.000Z"), "bad_manifest"),  # after the export's own end
])
def test_a_manifest_that_is_not_the_events_export_is_refused(manifest, reason):
    with pytest.raises(WarehouseLoadError) as caught:
        vet(event(), manifest)
    assert caught.value.reason == reason


def test_full_is_only_the_listing_of_every_status():
    from okta_sync.errors import ConfigurationError, ManifestError
    from okta_sync.sync.export import check_export_kind

    with pytest.raises(ManifestError, match="kind is full but search"):
        manifest_for(b"x", kind="full", search='id eq "00u1"')
    assert manifest_for(b"x", kind="full", search=ALL_USERS_SEARCH).kind == "full"
    # what an edited select_users XCom renders: kind=full with a one-user search
    with pytest.raises(ConfigurationError, match="kind: full needs the search of every status"):
        check_export_kind("full", 'id eq "00u1"', None)
    check_export_kind("full", ALL_USERS_SEARCH, None)


def test_content_that_is_not_the_manifests_rolls_the_load_back(db):
    load(db, "a.jsonl", [user(n) for n in range(4)], kind="full")
    before = snapshot(db)
    real = export_content([user(0), user(1)])
    manifest = manifest_for(real, kind="full", search=ALL_USERS_SEARCH)
    export = ExportRef(path="b.jsonl", kind="full", exported_at="2026-01-05T00:00:00.000Z", event_id=2,
                       file=manifest.files[0])
    swapped = export_content([user(0)]) + b"\n" * (len(real) - len(export_content([user(0)])))  # same length
    reader = DigestReader(io.BytesIO(swapped), export.file)
    with pytest.raises(ManifestError, match="SHA-256"):
        load_export(db, SQLITE, export, read_users_jsonl(reader), verify=reader.verify, batch_size=3)
    assert snapshot(db) == before and loaded_exports(db) == {("a.jsonl", 1)}  # nobody marked deleted
    reader = DigestReader(io.BytesIO(real), export.file)
    result = load_export(db, SQLITE, export, read_users_jsonl(reader), verify=reader.verify, batch_size=3)
    assert result.deleted == 2


def test_a_refusal_is_kept_once_per_event(db):
    evt = event()
    record_refusal(db, SQLITE, evt, "x" * 5000, "missing", "gone")
    record_refusal(db, SQLITE, evt, None, "missing", "gone again")
    assert refused_events(db) == {(8, "2026-01-02T00:05:00.000Z")}
    assert rows(db, "SELECT export_path, reason, detail FROM okta_sync_refused") == [(None, "missing", "gone again")]
    later = ExportEvent(id=8, timestamp=EVENT_TIME + timedelta(days=1), extra={})  # the id again, after a DB reset
    assert later.key not in refused_events(db)


def test_the_allowed_producers_are_the_dags_to_choose():
    mine = event(source_dag_id="okta_user_sync_eu", source_task_id="export_eu_users")
    with pytest.raises(WarehouseLoadError, match="okta_user_sync.export_users"):
        check_source(mine, Producers())
    check_source(mine, Producers(dag_ids=("okta_user_sync_eu",), task_ids=("export_eu_users",)))


# Export lines are decoded by msgspec (okta_sync.sync.warehouse._UserLines): the rows, and so the content hashes kept
# in okta_users, must be byte for byte those of json.loads + staged_user, the path every earlier load took.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from okta_sync.sync.warehouse import _UserLines, staged_user  # noqa: E402

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                       max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(profile=st.dictionaries(st.text(), _values, max_size=8), login=st.text() | st.none(),
       status=_values, ensure_ascii=st.booleans())
def test_lines_decoded_by_msgspec_give_the_rows_json_loads_gives(profile, login, status, ensure_ascii):
    profile = {**profile, "login": login, "email": "a@example.com"}
    user = {"id": "00u1", "status": status, "created": "2025-01-01T00:00:00.000Z",
            "lastUpdated": "2026-01-01T00:00:00.000Z", "credentials": {"provider": {"type": "OKTA"}}, "profile": profile}
    line = json.dumps(user, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass") + b"\n"
    assert _UserLines().row(line, 7) == staged_user(json.loads(line), 7)


@pytest.mark.parametrize("line", [
    b'{"id":"00u1","lastUpdated":"2026-01-01T00:00:00.000Z","profile":{"x":NaN,"y":1e400}}\n',  # Python's extensions
    b'{"id":"00u1","lastUpdated":"2026-01-01T00:00:00.000Z","profile":{"x":"\\ud800"}}\n',  # a lone surrogate
    b'\xef\xbb\xbf{"id":"00u1","lastUpdated":"2026-01-01T00:00:00.000Z"}\n',  # a byte order mark
    b'{"id":"00u1","id":"00u2","lastUpdated":"2026-01-01T00:00:00.000Z","profile":{"a":1,"a":2.5}}\n',  # repeats
])
def test_lines_msgspec_refuses_are_read_as_json_loads_reads_them(line):
    assert _UserLines().row(line, 3) == staged_user(json.loads(line), 3)


@pytest.mark.parametrize("line, message", [
    (b'[{"id":"00u1"}]\n', "export line 4: not a user object"),
    (b'{"id":"00u1","lastUpdated":"2026-01-01T00:00:00.000Z"', "users export line 4 is not valid JSON"),
    (b'{"id":"../x","lastUpdated":"2026-01-01T00:00:00.000Z"}\n', "export line 4: id is missing or not an Okta"),
    (b'{"id":"00u1","lastUpdated":"yesterday"}\n', r"export line 4 \(user 00u1\): lastUpdated is not"),
    (b'{"id":"00u1","lastUpdated":"2026-01-01T00:00:00.000Z","profile":[1]}\n', "profile is not an object"),
    (b'{"id":"00u1","lastUpdated":"2026-01-01T00:00:00.000Z","profile":{"x":' + b"[" * 100_000 + b"]" * 100_000
     + b"}}\n", "export line 4: nested too deeply"),
    (b'{"id":"00u1","x":NaN,"profile":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
     "export line 4: nested too deeply"),  # refused by msgspec (NaN), then too deep for json.loads
])
def test_a_bad_line_is_named_by_its_number_and_member_never_its_value(line, message):
    with pytest.raises(ValueError, match=message) as raised:
        _UserLines().row(line, 4)
    assert "yesterday" not in str(raised.value) and "../x" not in str(raised.value)


def test_blank_lines_are_skipped_and_later_lines_keep_their_file_numbers(db):
    lines = [json.dumps(user(1)).encode() + b"\n", b"\n", b"  \r\n", b'{"id":"00u2"}\n']
    with pytest.raises(WarehouseLoadError, match="export line 4"):
        load(db, "a.jsonl", lines)
    assert rows(db, "SELECT COUNT(*) FROM okta_users") == [(0,)]
    assert load(db, "a.jsonl", lines[:3]).inserted == 1
