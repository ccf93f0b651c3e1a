"""Membership loads (okta_sync.sync.group_warehouse) against SQLite: membership periods, deleted groups, exactly once
per export, one transaction, files checked against the manifest, and the README's queries."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3

import pytest

from okta_sync.errors import ManifestError, WarehouseLoadError
from okta_sync.sync.group_warehouse import (
    GroupExportRef,
    ensure_group_schema,
    load_group_export,
    loaded_group_exports,
    pending_group_exports,
)
from okta_sync.sync.manifest import DigestReader, FileDigest, Manifest, Producer, parse_manifest
from okta_sync.sync.warehouse import SqlFlavour

SQLITE = SqlFlavour("sqlite", "?", lambda table, columns, key: (
    f"REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"))
T0, T1, T2, T3 = ("2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z", "2026-01-03T00:00:00.000Z",
                  "2026-01-04T00:00:00.000Z")


def group(n: int, moved: str, kind: str = "OKTA_GROUP") -> dict:
    body = {"id": f"00g{n:05d}", "created": T0, "lastUpdated": T0, "lastMembershipUpdated": moved, "type": kind,
            "profile": {"name": f"Group {n}", "description": f"the {n}th"}, "_links": {}}
    if kind == "APP_GROUP":
        body["_links"]["source"] = {"href": "https://example.okta.com/api/v1/apps/0oa1source"}
    return body


def digest(name: str, data: bytes) -> FileDigest:
    return FileDigest(name, hashlib.sha256(data).hexdigest(), len(data))


def export(path: str, exported_at: str, groups: list[dict], members: dict[str, list[str]], kind="incremental",
           event_id=1, tamper=False):
    """(ref, manifest, the three files' contents) of an export as okta_groups_sync writes it."""
    data = {"groups.jsonl.gz": b"".join(json.dumps(g).encode() + b"\n" for g in groups),
            "memberships.jsonl.gz": b"".join(json.dumps({"group_id": g, "user_id": u}).encode() + b"\n"
                                             for g, us in members.items() for u in us),
            "groups_read.jsonl.gz": b"".join(json.dumps({"group_id": g}).encode() + b"\n" for g in members)}
    manifest = Manifest(dataset="groups", producer=Producer("okta_groups_sync", "manual__1", "export_groups"),
                        kind=kind, exported_at=exported_at, finished_at=exported_at, watermark=exported_at,
                        files=tuple(digest(name, content) for name, content in data.items()),
                        counts={"groups": len(groups), "groups_read": len(members),
                                "memberships": sum(map(len, members.values())), "group_pages": 1,
                                "member_pages": len(members)})
    if tamper:
        data["memberships.jsonl.gz"] = data["memberships.jsonl.gz"].replace(b"00u6", b"00x6")
    ref = GroupExportRef(manifest_path=path, exported_at=exported_at, event_id=event_id)
    return ref, parse_manifest(manifest.to_json()), data


@pytest.fixture
def db(tmp_path):
    connection = sqlite3.connect(tmp_path / "warehouse.db")
    ensure_group_schema(connection, SQLITE)
    yield connection
    connection.close()


def readers(manifest, data, **replaced):
    data = {**data, **replaced}
    return [DigestReader(io.BytesIO(data[name]), manifest.file(name))
            for name in ("groups.jsonl.gz", "memberships.jsonl.gz", "groups_read.jsonl.gz")]


def load(db, parts, batch_size=2, **replaced):
    ref, manifest, data = parts
    return load_group_export(db, SQLITE, ref, manifest, *readers(manifest, data, **replaced), batch_size=batch_size)


def members_on(db, group_id: str, day: str) -> list[str]:
    """The README's "members of group X on date D"."""
    return [r[0] for r in db.execute(
        "SELECT m.user_id FROM okta_group_members m JOIN okta_groups g ON g.id = m.group_id "
        "WHERE g.name = ? AND m.valid_from <= ? AND (m.valid_to IS NULL OR m.valid_to > ?) ORDER BY m.user_id",
        (group_id, day, day))]


def groups_per_user(db) -> dict[str, int]:
    """The README's "groups per user" (today)."""
    return dict(db.execute(
        "SELECT m.user_id, COUNT(*) FROM okta_group_members m JOIN okta_groups g ON g.id = m.group_id "
        "WHERE m.valid_to IS NULL AND g.deleted_at IS NULL GROUP BY m.user_id ORDER BY m.user_id"))


def snapshot(db):
    return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("okta_groups", "okta_group_members", "okta_group_loads")]


def first_export():
    groups = [group(1, T0), group(2, T0), group(3, T0, "APP_GROUP")]
    return export("run1/manifest.json", T1, groups, {"00g00001": ["00u1", "00u2"], "00g00002": ["00u2", "00u3"],
                                                      "00g00003": ["00u1"]}, kind="full")


def test_first_load_writes_groups_and_open_membership_periods(db):
    result = load(db, first_export())
    assert (result.groups, result.groups_read, result.memberships, result.opened, result.closed) == (3, 3, 5, 5, 0)
    assert db.execute("SELECT id, name, description, type, source_app_id, last_membership_updated, deleted_at "
                      "FROM okta_groups WHERE id = '00g00003'").fetchone() == (
        "00g00003", "Group 3", "the 3th", "APP_GROUP", "0oa1source", T0, None)
    assert members_on(db, "Group 1", T1) == ["00u1", "00u2"]
    assert members_on(db, "Group 1", "2025-12-31T00:00:00.000Z") == []  # before the group's lastMembershipUpdated
    assert groups_per_user(db) == {"00u1": 2, "00u2": 2, "00u3": 1}


def test_a_group_read_again_closes_who_left_and_opens_who_joined_and_a_missing_group_is_deleted(db):
    load(db, first_export())
    # group 1 changed at T2 (00u2 left, 00u4 joined); group 2 unchanged (not read); group 3 deleted
    second = export("run2/manifest.json", T3, [group(1, T2), group(2, T0)], {"00g00001": ["00u1", "00u4"]},
                    event_id=2)
    result = load(db, second)
    assert (result.opened, result.closed, result.groups_deleted) == (1, 2, 1)  # 00u2 left; group 3's member
    assert members_on(db, "Group 1", T1) == ["00u1", "00u2"]
    assert members_on(db, "Group 1", T3) == ["00u1", "00u4"]
    assert members_on(db, "Group 2", T3) == ["00u2", "00u3"]  # not read: untouched
    assert db.execute("SELECT valid_from, valid_to FROM okta_group_members WHERE group_id = '00g00001' "
                      "AND user_id = '00u2'").fetchall() == [(T0, T2)]
    assert db.execute("SELECT deleted_at FROM okta_groups WHERE id = '00g00003'").fetchone() == (T3,)
    assert db.execute("SELECT valid_to FROM okta_group_members WHERE group_id = '00g00003'").fetchall() == [(T3,)]
    assert groups_per_user(db) == {"00u1": 1, "00u2": 1, "00u3": 1, "00u4": 1}


def test_each_export_is_loaded_exactly_once_and_in_order(db):
    load(db, first_export())
    before = snapshot(db)
    again = load(db, first_export())
    assert again.skipped and snapshot(db) == before
    assert loaded_group_exports(db) == {"run1/manifest.json"}
    refs = [GroupExportRef("b", T3, 2), GroupExportRef("a", T1, 1), GroupExportRef("a", T1, 7),
            GroupExportRef("run1/manifest.json", T1, 3)]
    assert [r.manifest_path for r in pending_group_exports(refs, loaded_group_exports(db))] == ["a", "b"]


def test_an_export_loaded_late_changes_nothing_of_groups_stored_newer(db):
    load(db, first_export())
    load(db, export("run3/manifest.json", T3, [group(1, T2), group(2, T0), group(3, T0, "APP_GROUP")],
                    {"00g00001": ["00u9"]}, event_id=3))
    before = snapshot(db)[1]
    late = load(db, export("run2/manifest.json", T2, [group(1, "2026-01-01T12:00:00.000Z"), group(2, T0),
                                                       group(3, T0, "APP_GROUP")], {"00g00001": ["00u7"]},
                           event_id=2))
    assert late.stale_groups == 1 and late.opened == 0 and late.closed == 0
    assert snapshot(db)[1] == before
    assert db.execute("SELECT last_membership_updated FROM okta_groups WHERE id = '00g00001'").fetchone() == (T2,)


def test_a_file_that_does_not_match_its_manifest_rolls_the_whole_load_back(db):
    load(db, first_export())
    before = snapshot(db)
    with pytest.raises(ManifestError, match="memberships.jsonl.gz: its SHA-256 is not the manifest's"):
        load(db, export("run2/manifest.json", T3, [group(1, T2)], {"00g00001": ["00u1", "00u5", "00u6"]},
                        event_id=2, tamper=True))
    assert snapshot(db) == before  # groups already upserted and deletions were rolled back with it
    parts = export("run2/manifest.json", T3, [group(1, T2)], {"00g00001": ["00u1"]}, event_id=2)
    with pytest.raises(ManifestError, match="groups.jsonl.gz: shorter than its manifest says"):
        load(db, parts, **{"groups.jsonl.gz": b""})
    with pytest.raises(ManifestError, match="groups_read.jsonl.gz: longer"):
        load(db, parts, **{"groups_read.jsonl.gz": parts[2]["groups_read.jsonl.gz"] * 2})
    assert snapshot(db) == before


def test_a_manifest_of_another_dataset_is_refused(db):
    ref, manifest, data = first_export()
    users = Manifest(dataset="users", producer=manifest.producer, kind="full", exported_at=T1, finished_at=T1,
                     files=manifest.files, counts=manifest.counts)
    with pytest.raises(ManifestError, match="dataset is not groups"):
        load_group_export(db, SQLITE, ref, users, *readers(manifest, data))
    assert loaded_group_exports(db) == set()


def test_event_extras_are_checked():
    with pytest.raises(WarehouseLoadError, match="paths.manifest"):
        GroupExportRef.from_event(4, {"paths": {"manifest": 7}, "exported_at": T1})
    with pytest.raises(WarehouseLoadError, match="exported_at"):
        GroupExportRef.from_event(4, {"paths": {"manifest": "x"}, "exported_at": "now"})
    assert GroupExportRef.from_event(4, {"paths": {"manifest": "x"}, "exported_at": T1}).manifest_path == "x"
