"""Membership exports (`okta_sync.sync.group_export`) into SQL tables a data team can query, beside the users
loader (`okta_sync.sync.warehouse`, whose `SqlFlavour` it shares):

    okta_groups          one row per group ever seen; `deleted_at` once an export's listing no longer names it
    okta_group_members   one row per membership period: [valid_from, valid_to), valid_to null while it lasts
    okta_group_loads     the exports loaded (one row per manifest, written in the load's own transaction)

One export is one transaction, set-based (memory stays flat however many memberships): the memberships of the groups
read are staged in a temporary table (with COPY on PostgreSQL), then each read group's open memberships are compared with it in SQL: who is no
longer listed gets `valid_to`, who is new gets a period from `valid_from`. Both are the group's
`lastMembershipUpdated` as listed in the export (when Okta says the membership last changed); a group's members at
its first load are known from then on, not before. A group missing from the listing gets `deleted_at` (the export's
time) and its open memberships close then.

Each file is checked against the export's manifest (`okta_sync.sync.manifest`: content SHA-256 and length) in the
pass that reads it; a mismatch rolls the whole load back. An export older than what is stored for a group (loaded
late) changes nothing of that group.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import islice
from typing import Any, Protocol

from okta_sync.errors import WarehouseLoadError
from okta_sync.sync.group_export import check_groups_manifest, read_groups_read, read_memberships
from okta_sync.sync.manifest import Manifest
from okta_sync.sync.warehouse import (
    MAX_PATH_LENGTH,
    SqlFlavour,
    can_copy,
    copy_rows,
    create_tables,
    refused_table_statement,
    select_all,
)
from okta_sync.timestamps import okta_timestamp

GROUPS_TABLE = "okta_groups"
MEMBERS_TABLE = "okta_group_members"
GROUP_LOADS_TABLE = "okta_group_loads"
STAGED_TABLE = "okta_group_members_staged"  # temporary: this export's memberships
READ_TABLE = "okta_group_read"  # temporary: the groups whose members this export read, with their as-of time
SEEN_TABLE = "okta_group_seen"  # temporary: the groups this export listed
BATCH_SIZE = 2000
MAX_GROUPS_READ = 1_000_000  # group ids held at once while loading (an org's groups)
FULL, INCREMENTAL = "full", "incremental"
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_OKTA_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
USER_INDEX = f"{MEMBERS_TABLE}_user"  # "groups per user": the memberships by user
USER_INDEX_STATEMENT = f"CREATE INDEX IF NOT EXISTS {USER_INDEX} ON {MEMBERS_TABLE} (user_id, valid_from)"
GROUP_COLUMNS = ("id", "name", "description", "type", "source_app_id", "created", "last_updated",
                 "last_membership_updated", "profile", "deleted_at", "members_as_of", "last_seen_at")


@dataclass(frozen=True)
class GroupExportRef:
    """One membership export to load, from its Asset event: where its manifest is and when it was taken."""

    manifest_path: str
    exported_at: str
    event_id: int = 0

    @classmethod
    def from_event(cls, event_id: int, extra: Any) -> "GroupExportRef":
        """An Asset event's extra is untrusted: each field is checked and bounded; errors name the field only."""
        if not isinstance(extra, dict):
            raise WarehouseLoadError(f"asset event {event_id}: extra is not an object")
        paths = extra.get("paths")
        manifest = paths.get("manifest") if isinstance(paths, dict) else None
        if not isinstance(manifest, str) or not manifest or len(manifest) > MAX_PATH_LENGTH:
            raise WarehouseLoadError(f"asset event {event_id}: extra.paths.manifest is missing or not a path "
                                     f"(a string of at most {MAX_PATH_LENGTH} characters)")
        exported_at = extra.get("exported_at")
        if not isinstance(exported_at, str) or not _TIMESTAMP.match(exported_at):
            raise WarehouseLoadError(f"asset event {event_id}: extra.exported_at is not an Okta timestamp")
        return cls(manifest_path=manifest, exported_at=exported_at, event_id=int(event_id))

    @property
    def order(self) -> tuple[str, int]:
        return self.exported_at, self.event_id


class CheckedLines(Protocol):
    """A file's lines, checked against its manifest entry: `okta_sync.sync.manifest.DigestReader`."""

    def __iter__(self): ...

    def verify(self) -> None: ...


@dataclass
class GroupLoadResult:
    manifest_path: str
    event_id: int
    kind: str = ""
    skipped: bool = False  # already in the load log: nothing changed
    groups: int = 0
    groups_read: int = 0
    stale_groups: int = 0  # read in an export older than what is stored: left alone
    memberships: int = 0
    opened: int = 0
    closed: int = 0
    groups_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schema_statements(flavour: SqlFlavour) -> list[str]:
    text, ts, js = flavour.text_type, flavour.timestamp_type, flavour.json_type
    # SQLite answers the anti-joins below through an index on the staged rows; PostgreSQL hashes them (an index
    # would only slow the COPY down), given statistics (`ANALYZE` after staging: temporary tables get none).
    staged_index = [] if flavour.name.startswith("postgres") else [
        f"CREATE INDEX IF NOT EXISTS {STAGED_TABLE}_key ON {STAGED_TABLE} (group_id, user_id)"]
    return [
        f"CREATE TABLE IF NOT EXISTS {GROUPS_TABLE} (\n    id VARCHAR(64) NOT NULL PRIMARY KEY,\n    name {text},\n"
        f"    description {text},\n    type VARCHAR(32),\n    source_app_id VARCHAR(64),\n    created {ts},\n"
        f"    last_updated {ts},\n    last_membership_updated {ts},\n    profile {js},\n    deleted_at {ts},\n"
        f"    members_as_of {ts},\n    last_seen_at {ts}\n)",
        f"CREATE TABLE IF NOT EXISTS {MEMBERS_TABLE} (\n    group_id VARCHAR(64) NOT NULL,\n"
        f"    user_id VARCHAR(64) NOT NULL,\n    valid_from {ts} NOT NULL,\n    valid_to {ts},\n"
        f"    PRIMARY KEY (group_id, user_id, valid_from)\n)",
        USER_INDEX_STATEMENT,
        f"CREATE TABLE IF NOT EXISTS {GROUP_LOADS_TABLE} (\n    manifest_path VARCHAR({MAX_PATH_LENGTH}) NOT NULL "
        f"PRIMARY KEY,\n    event_id BIGINT NOT NULL,\n    kind VARCHAR(16) NOT NULL,\n    exported_at {ts} NOT NULL,\n"
        f"    watermark {ts},\n    loaded_at {ts} NOT NULL,\n    groups BIGINT NOT NULL,\n"
        f"    groups_read BIGINT NOT NULL,\n    opened BIGINT NOT NULL,\n    closed BIGINT NOT NULL,\n"
        f"    groups_deleted BIGINT NOT NULL\n)",
        # No key: a member listed twice is staged twice and opened once (SELECT DISTINCT below).
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGED_TABLE} (group_id VARCHAR(64) NOT NULL, "
        f"user_id VARCHAR(64) NOT NULL)",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {READ_TABLE} (group_id VARCHAR(64) NOT NULL PRIMARY KEY, "
        f"as_of {ts} NOT NULL)",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {SEEN_TABLE} (group_id VARCHAR(64) NOT NULL PRIMARY KEY)",
        refused_table_statement(flavour),  # shared with the users loads (okta_sync.sync.warehouse.record_refusal)
        *staged_index,
    ]


def ensure_group_schema(connection: Any, flavour: SqlFlavour) -> None:
    """Create the tables when missing (idempotent), committed before any load begins."""
    create_tables(connection, flavour, schema_statements(flavour))


def loaded_group_exports(connection: Any) -> set[str]:
    """The manifest of every membership export loaded."""
    return {path for (path,) in select_all(connection, f"SELECT manifest_path FROM {GROUP_LOADS_TABLE}")}


def pending_group_exports(exports: Iterable[GroupExportRef], done: set[str]) -> list[GroupExportRef]:
    """Exports not loaded yet, each manifest once, oldest first (Asset events come in no particular order)."""
    todo: dict[str, GroupExportRef] = {}
    for export in sorted(exports, key=lambda e: e.order):
        if export.manifest_path not in done:
            todo.setdefault(export.manifest_path, export)
    return list(todo.values())


class _Statements:
    def __init__(self, flavour: SqlFlavour):
        p = flavour.placeholder
        self.p = p
        self.upsert_group = flavour.replace_sql(GROUPS_TABLE, GROUP_COLUMNS, ("id",))
        self.insert_seen = f"INSERT INTO {SEEN_TABLE} (group_id) VALUES ({p})"
        self.insert_read = f"INSERT INTO {READ_TABLE} (group_id, as_of) VALUES ({p}, {p})"
        self.insert_staged = f"INSERT INTO {STAGED_TABLE} (group_id, user_id) VALUES ({p}, {p})"
        self.find_load = f"SELECT 1 FROM {GROUP_LOADS_TABLE} WHERE manifest_path = {p}"
        self.postgres = flavour.name.startswith("postgres")
        self.log_load = (f"INSERT INTO {GROUP_LOADS_TABLE} (manifest_path, event_id, kind, exported_at, watermark, "
                         f"loaded_at, groups, groups_read, opened, closed, groups_deleted) "
                         f"VALUES ({', '.join([p] * 11)})")
        self.close_left = (
            f"UPDATE {MEMBERS_TABLE} SET valid_to = (SELECT r.as_of FROM {READ_TABLE} r "
            f"WHERE r.group_id = {MEMBERS_TABLE}.group_id) WHERE valid_to IS NULL "
            f"AND group_id IN (SELECT group_id FROM {READ_TABLE}) AND NOT EXISTS (SELECT 1 FROM {STAGED_TABLE} s "
            f"WHERE s.group_id = {MEMBERS_TABLE}.group_id AND s.user_id = {MEMBERS_TABLE}.user_id)")
        self.open_new = (
            f"INSERT INTO {MEMBERS_TABLE} (group_id, user_id, valid_from) "  # valid_to: null, the period is open
            f"SELECT DISTINCT s.group_id, s.user_id, r.as_of FROM {STAGED_TABLE} s JOIN {READ_TABLE} r "
            f"ON r.group_id = s.group_id WHERE NOT EXISTS (SELECT 1 FROM {MEMBERS_TABLE} m "
            f"WHERE m.group_id = s.group_id AND m.user_id = s.user_id AND m.valid_to IS NULL) "
            # in the key's order, whatever plan makes them distinct (a hash, given a large work_mem): a B-tree
            # filled in order is written page after page, two to three times faster than in random order
            f"ORDER BY s.group_id, s.user_id")
        self.set_members_as_of = (
            f"UPDATE {GROUPS_TABLE} SET members_as_of = (SELECT r.as_of FROM {READ_TABLE} r "
            f"WHERE r.group_id = {GROUPS_TABLE}.id) WHERE id IN (SELECT group_id FROM {READ_TABLE})")
        missing = (f"deleted_at IS NULL AND (last_seen_at IS NULL OR last_seen_at < {p}) AND id NOT IN "
                   f"(SELECT group_id FROM {SEEN_TABLE})")
        self.close_deleted = (f"UPDATE {MEMBERS_TABLE} SET valid_to = {p} WHERE valid_to IS NULL AND group_id IN "
                              f"(SELECT id FROM {GROUPS_TABLE} WHERE {missing})")
        self.mark_deleted = f"UPDATE {GROUPS_TABLE} SET deleted_at = {p} WHERE {missing}"

    def clear(self, table: str) -> str:
        """Empty a temporary table: TRUNCATE on PostgreSQL (no row-by-row delete), DELETE elsewhere."""
        return f"TRUNCATE {table}" if self.postgres else f"DELETE FROM {table}"

    def select_stored(self, count: int) -> str:
        return (f"SELECT id, last_updated, members_as_of, last_seen_at FROM {GROUPS_TABLE} "
                f"WHERE id IN ({', '.join([self.p] * count)})")


def load_group_export(connection: Any, flavour: SqlFlavour, export: GroupExportRef, manifest: Manifest,
                      groups: CheckedLines, memberships: CheckedLines, groups_read: CheckedLines, *,
                      batch_size: int = BATCH_SIZE, now: Callable[[], datetime] | None = None) -> GroupLoadResult:
    """Load one membership export in one transaction (committed at the end, rolled back on any error, a file that
    is not its manifest's included).

    The three files' lines come streamed, each checked against the manifest as it is read (`DigestReader`). Call
    `ensure_group_schema` first.
    """
    check_groups_manifest(manifest)
    s = _Statements(flavour)
    result = GroupLoadResult(manifest_path=export.manifest_path, event_id=export.event_id, kind=manifest.kind)
    cursor = connection.cursor()
    try:
        cursor.execute(s.find_load, (export.manifest_path,))
        if cursor.fetchone() is not None:
            connection.rollback()
            result.skipped = True
            return result
        for table in (STAGED_TABLE, READ_TABLE, SEEN_TABLE):
            cursor.execute(s.clear(table))
        read = set()
        for group_id in read_groups_read(groups_read):
            read.add(group_id)
            if len(read) > MAX_GROUPS_READ:
                raise WarehouseLoadError(f"groups_read: more than {MAX_GROUPS_READ} groups")
        groups_read.verify()
        as_of = _load_groups(cursor, s, groups, read, manifest.exported_at, result, batch_size)
        groups.verify()
        missing = read - set(as_of)
        if missing:
            raise WarehouseLoadError(f"groups_read: {len(missing)} group(s) are not in the groups file")
        fresh = {g: t for g, t in as_of.items() if t is not None}
        result.groups_read, result.stale_groups = len(fresh), len(as_of) - len(fresh)
        cursor.executemany(s.insert_read, list(fresh.items()))
        postgres = flavour.name.startswith("postgres")
        _stage_memberships(cursor, s, memberships, read, set(fresh), result, batch_size, copy=postgres)
        memberships.verify()
        if postgres:
            cursor.execute(f"ANALYZE {STAGED_TABLE}")
        cursor.execute(s.close_left)
        result.closed = max(cursor.rowcount, 0)
        # The first load into an empty table (PostgreSQL) builds the user index once, sorted, after the rows: kept
        # up row by row, in the order of another key, it costs more than the rows themselves. DDL is transactional
        # there; the table, empty until this commits, is locked for the load.
        rebuild = postgres and _is_empty(cursor, MEMBERS_TABLE)
        if rebuild:
            cursor.execute(f"DROP INDEX {USER_INDEX}")
        cursor.execute(s.open_new)
        result.opened = max(cursor.rowcount, 0)
        if rebuild:
            cursor.execute(USER_INDEX_STATEMENT)
        cursor.execute(s.set_members_as_of)
        cursor.execute(s.close_deleted, (manifest.exported_at, manifest.exported_at))
        result.closed += max(cursor.rowcount, 0)
        cursor.execute(s.mark_deleted, (manifest.exported_at, manifest.exported_at))
        result.groups_deleted = max(cursor.rowcount, 0)
        for table in (STAGED_TABLE, READ_TABLE, SEEN_TABLE):
            cursor.execute(s.clear(table))
        cursor.execute(s.log_load, (export.manifest_path, export.event_id, manifest.kind, manifest.exported_at,
                                    manifest.watermark, okta_timestamp((now or _utc_now)()), result.groups,
                                    result.groups_read, result.opened, result.closed, result.groups_deleted))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()
    return result


def _load_groups(cursor: Any, s: _Statements, lines: Iterable[bytes], read: set[str], exported_at: str,
                 result: GroupLoadResult, batch_size: int) -> dict[str, str | None]:
    """Upsert every listed group (unless a later export already stored it); the as-of time of each read group, or
    None for one whose stored membership is newer (this export was loaded late)."""
    as_of: dict[str, str | None] = {}
    numbered = enumerate(lines, 1)
    while chunk := list(islice(numbered, batch_size)):
        rows = [_group_row(line, number, exported_at) for number, line in chunk]
        cursor.execute(s.select_stored(len(rows)), [row[0] for row in rows])
        stored = {gid: (_text_time(lu), _text_time(mao), _text_time(seen)) for gid, lu, mao, seen in cursor.fetchall()}
        upserts = []
        for row in rows:
            group_id, moved = row[0], row[7] or exported_at
            before = stored.get(group_id)
            if group_id in read:
                as_of[group_id] = None if before and before[1] and before[1] > moved else moved
            if before and before[2] and before[2] > exported_at:
                continue  # a later export already stored this group
            members_as_of = before[1] if before else None
            upserts.append((*row[:10], members_as_of, exported_at))
        if upserts:
            cursor.executemany(s.upsert_group, upserts)
        cursor.executemany(s.insert_seen, [(row[0],) for row in rows])
        result.groups += len(rows)
    return as_of


def _group_row(line: bytes, number: int, exported_at: str) -> tuple:
    try:
        group = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        raise WarehouseLoadError(f"groups line {number}: not JSON") from None
    if not isinstance(group, dict) or not isinstance(group.get("id"), str) or not _OKTA_ID.match(group["id"]):
        raise WarehouseLoadError(f"groups line {number}: id is missing or not an Okta group id")
    profile = group.get("profile") if isinstance(group.get("profile"), dict) else {}
    stamps = []
    for name in ("created", "lastUpdated", "lastMembershipUpdated"):
        value = group.get(name)
        if value is not None and not (isinstance(value, str) and _TIMESTAMP.match(value)):
            raise WarehouseLoadError(f"groups line {number} (group {group['id']}): {name} is not an Okta timestamp")
        stamps.append(value)
    source = ((group.get("_links") or {}).get("source") or {}).get("href") if isinstance(group.get("_links"), dict) \
        else None
    source_app_id = source.rstrip("/").rpartition("/")[2] if isinstance(source, str) else None
    if source_app_id is not None and not _OKTA_ID.match(source_app_id):
        source_app_id = None
    return (group["id"], _text(profile.get("name")), _text(profile.get("description")), _text(group.get("type")),
            source_app_id, *stamps, json.dumps(profile, sort_keys=True, ensure_ascii=False), None)


def _stage_memberships(cursor: Any, s: _Statements, lines: Iterable[bytes], read: set[str], fresh: set[str],
                       result: GroupLoadResult, batch_size: int, copy: bool) -> None:
    """The memberships of the fresh groups read, staged: by one streamed COPY on PostgreSQL, else in batches."""

    def kept() -> Iterable[tuple[str, str]]:
        for row in read_memberships(lines):
            if row[0] not in read:
                raise WarehouseLoadError("memberships file: a membership of a group the manifest does not list as read")
            result.memberships += 1
            if row[0] in fresh:
                yield row

    if copy and can_copy(cursor):
        copy_rows(cursor, STAGED_TABLE, ("group_id", "user_id"), kept())
        return
    rows = kept()
    while chunk := list(islice(rows, batch_size)):
        cursor.executemany(s.insert_staged, chunk)


def _is_empty(cursor: Any, table: str) -> bool:
    cursor.execute(f"SELECT 1 FROM {table} LIMIT 1")
    return cursor.fetchone() is None


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _text_time(value: Any) -> Any:
    """Timestamp columns come back as text (SQLite) or datetimes (PostgreSQL): compare them as Okta's text."""
    return okta_timestamp(value) if isinstance(value, datetime) else value


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
