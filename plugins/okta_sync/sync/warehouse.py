"""Users exports into SQL tables a data team can query: `okta_users` (one row per user ever seen) and
`okta_user_history` (slowly changing dimension, type 2), kept exactly once by a load log (`okta_sync_loads`).

Plain Python over a DB-API connection: the SQL that differs between databases (placeholders, column types, the
upsert statement) comes in a `SqlFlavour`, which the Airflow layer builds from a `DbApiHook` and its dialect.

Which exports are loaded at all is decided by what nobody but the export task can write (`vet_export`): the Asset
event's source (Airflow sets `source_dag_id`/`source_task_id`/`source_run_id`; an event posted over the REST API
has none), the export's place in that source run's own folder, and the manifest the export task wrote beside the
file (okta_sync.sync.manifest). Kind, exported_at, watermark and counts come from the manifest; the event's extra
may only repeat them. The file's content must match the manifest's SHA-256, checked in the pass that loads it;
otherwise the load's transaction is rolled back. Refusals are kept in `okta_sync_refused`, so one bad event is
reported once and never blocks the others.

One export is one transaction: its lines are decoded by msgspec (the same rows `json.loads` gives) and streamed into a
temporary staging table (one COPY on PostgreSQL, one batch in memory), then compared with the rows already stored (by
`lastUpdated` and a hash of status, login and profile) and written by a few set-based statements, only what changed
(a repeat load first moves the new and newer users to a second temporary table, so the writes join only those). A
full export defines the population: users it does not name get `deleted_at` and their current version closed.
The load log row is written in the same transaction, so a retried or repeated load finds it and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from itertools import chain, islice
from typing import Any

import msgspec

from okta_sync.errors import ManifestError, WarehouseLoadError
from okta_sync.sync.export import EXPORT_KINDS, FULL, INCREMENTAL, check_users_manifest
from okta_sync.sync.manifest import FileDigest, Manifest, check_times, manifest_name
from okta_sync.timestamps import okta_timestamp, parse_okta_timestamp

USERS_TABLE = "okta_users"
HISTORY_TABLE = "okta_user_history"
LOADS_TABLE = "okta_sync_loads"
REFUSED_TABLE = "okta_sync_refused"  # events refused (or given up on): never looked at again
STAGED_TABLE = "okta_users_staged"  # temporary: the export's users, compared with the tables in SQL
PENDING_TABLE = "okta_users_pending"  # temporary: the staged users a repeat load writes (new, or newer than stored)
BATCH_SIZE = 1000  # users per executemany round trip (databases without COPY)
COPY_BATCH_SIZE = 2000  # users made at a time while the one COPY of a load runs (PostgreSQL): one batch in memory
MAX_PATH_LENGTH = 2048
MAX_DETAIL = 1000  # our own message naming the field, never a value read from the event
EVENT_CLOCK_SKEW = timedelta(minutes=5)  # the worker's clock (manifest) against the API server's (event timestamp)
MISSING_GRACE = timedelta(hours=2)  # how long after its event a missing export is looked for again
DEFAULT_PRODUCER_DAG_IDS = ("okta_user_sync",)
DEFAULT_PRODUCER_TASK_IDS = ("export_users",)
_OKTA_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_USER_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")

# Profile attributes analysts query most, as columns (Okta's base profile names -> column names).
PROFILE_COLUMNS = {
    "email": "email", "first_name": "firstName", "last_name": "lastName", "display_name": "displayName",
    "department": "department", "title": "title", "manager": "manager", "manager_id": "managerId",
    "employee_number": "employeeNumber", "organization": "organization", "division": "division",
    "cost_center": "costCenter", "user_type": "userType",
}
USER_COLUMNS = ("id", "status", "login", *PROFILE_COLUMNS, "profile", "created", "last_updated", "deleted_at",
                "content_sha256")
HISTORY_COLUMNS = ("id", "valid_from", "valid_to", "status", "login", "profile")
STAGED_COLUMNS = ("line", *(c for c in USER_COLUMNS if c != "deleted_at"))


@dataclass(frozen=True)
class SqlFlavour:
    """What differs between databases. `replace_sql(table, columns, key)` is the database's own upsert statement
    (the common.sql dialect's `generate_replace_sql`): insert, or replace the row with the same `key`."""

    name: str
    placeholder: str
    replace_sql: Callable[[str, Sequence[str], Sequence[str]], str]
    json_type: str = "TEXT"
    timestamp_type: str = "VARCHAR(32)"
    text_type: str = "TEXT"
    session_statements: tuple[str, ...] = ()  # run once per connection, before the schema


@dataclass(frozen=True)
class ExportRef:
    """One export to load: what it is and where it is. From `vet_export` (its manifest), or given by hand;
    `ExportRef.from_event` alone only reads what an event's extra claims."""

    path: str
    kind: str
    exported_at: str  # when the export began: the moment its snapshot describes; loads go in this order
    event_id: int = 0
    watermark: str | None = None  # the newest lastUpdated in the export
    users: int | None = None
    manifest: str | None = None  # the manifest's file name the event names (events from before manifests: None)
    file: FileDigest | None = None  # the content's SHA-256 and length, from the manifest

    @classmethod
    def from_event(cls, event_id: int, extra: Any, timestamp: datetime | None) -> ExportRef:
        """An Asset event's extra is untrusted: each field is checked and bounded, errors name the field only."""
        if not isinstance(extra, dict):
            raise WarehouseLoadError(f"asset event {event_id}: extra is not an object")
        path = extra.get("path")
        if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
            raise WarehouseLoadError(f"asset event {event_id}: extra.path is missing or not a path "
                                     f"(a string of at most {MAX_PATH_LENGTH} characters)")
        kind = extra.get("kind", INCREMENTAL)  # events from before `kind` existed: never treated as full
        if kind not in EXPORT_KINDS:
            raise WarehouseLoadError(f"asset event {event_id}: extra.kind is not one of {', '.join(EXPORT_KINDS)}")
        exported_at = extra.get("exported_at")
        if exported_at is None and timestamp is not None:
            exported_at = okta_timestamp(timestamp)
        watermark = extra.get("watermark")
        for name, value in (("exported_at", exported_at), ("watermark", watermark)):
            if value is not None and not (isinstance(value, str) and _OKTA_TIMESTAMP.match(value)):
                raise WarehouseLoadError(f"asset event {event_id}: extra.{name} is not an Okta timestamp "
                                         "(like 2026-01-01T00:00:00.000Z)")
        if exported_at is None:
            raise WarehouseLoadError(f"asset event {event_id}: extra.exported_at is missing")
        users = extra.get("users")
        if users is not None and (not isinstance(users, int) or isinstance(users, bool) or users < 0):
            raise WarehouseLoadError(f"asset event {event_id}: extra.users is not a count")
        manifest = extra.get("manifest")
        if manifest is not None and manifest != manifest_name(path.rpartition("/")[2]):
            raise WarehouseLoadError(f"asset event {event_id}: extra.manifest is not the manifest beside extra.path")
        return cls(path=path, kind=kind, exported_at=exported_at, event_id=int(event_id), watermark=watermark,
                   users=users, manifest=manifest)

    @property
    def order(self) -> tuple[str, int]:
        return self.exported_at, self.event_id


@dataclass(frozen=True)
class ExportEvent:
    """An Asset event of the export Asset as Airflow keeps it: `source_*` are Airflow's own record of the task
    instance that emitted it (None for an event posted over the REST API); `extra` is anyone's."""

    id: int
    timestamp: datetime | None
    extra: Any
    source_dag_id: str | None = None
    source_task_id: str | None = None
    source_run_id: str | None = None

    @property
    def key(self) -> tuple[int, str]:
        """What `okta_sync_refused` keys a refusal by: the id, and the time (ids repeat after a metadata DB reset)."""
        return int(self.id), okta_timestamp(self.timestamp) if self.timestamp is not None else ""


@dataclass(frozen=True)
class Producers:
    """The tasks whose export events are loaded: DAG code decides (not a Variable a UI user could widen)."""

    dag_ids: tuple[str, ...] = DEFAULT_PRODUCER_DAG_IDS
    task_ids: tuple[str, ...] = DEFAULT_PRODUCER_TASK_IDS


def check_source(event: ExportEvent, producers: Producers) -> None:
    """Refuse an event not emitted by an allowed export task (posted over the REST API, or by another DAG)."""
    if event.source_dag_id not in producers.dag_ids or event.source_task_id not in producers.task_ids \
            or not isinstance(event.source_run_id, str) or not event.source_run_id:
        allowed = ", ".join(f"{d}.{t}" for d in producers.dag_ids for t in producers.task_ids)
        raise WarehouseLoadError(
            f"asset event {event.id}: source_dag_id/source_task_id is not an export task allowed to produce it "
            f"({allowed}); events posted through the REST API or emitted by other DAGs are not loaded",
            reason="not_the_export_task")


def file_name_in_folder(claim: ExportRef, folder: str) -> str:
    """The export's file name, when extra.path lies directly in `folder` (the source run's own folder)."""
    prefix = folder.rstrip("/") + "/"
    name = claim.path[len(prefix):] if claim.path.startswith(prefix) else ""
    if not name or "/" in name or name.startswith("."):
        raise WarehouseLoadError(f"asset event {claim.event_id}: extra.path is not in the folder of the run that "
                                 "emitted the event", reason="outside_run_folder")
    return name


def check_claimed_time(event: ExportEvent, claim: ExportRef, skew: timedelta = EVENT_CLOCK_SKEW) -> None:
    """An export cannot begin after the event that announces it (a `9999-...` exported_at)."""
    if event.timestamp is not None and parse_okta_timestamp(claim.exported_at) > event.timestamp + skew:
        raise WarehouseLoadError(f"asset event {event.id}: extra.exported_at is later than the event itself",
                                 reason="in_the_future")


def vet_export(event: ExportEvent, claim: ExportRef, manifest: Manifest, *,
               skew: timedelta = EVENT_CLOCK_SKEW) -> ExportRef:
    """The export to load, as its manifest describes it, when the manifest is the export's and the event's: written
    by the task instance that emitted the event, naming the file, with times not after the event; whatever the
    event's extra says must agree with it. WarehouseLoadError (its `reason` a code) otherwise."""
    where = f"asset event {event.id}"
    try:
        check_users_manifest(manifest)
        check_times(manifest, not_after=event.timestamp or datetime.now(timezone.utc), skew=skew,
                    what="the event that announced it")
        file = manifest.file(claim.path.rpartition("/")[2])
    except ManifestError as error:
        raise WarehouseLoadError(f"{where}: {error}", reason="bad_manifest") from None
    producer = manifest.producer
    if (producer.dag_id, producer.task_id, producer.run_id) != \
            (event.source_dag_id, event.source_task_id, event.source_run_id):
        raise WarehouseLoadError(f"{where}: the manifest's producer is not the event's source (source_dag_id, "
                                 "source_task_id, source_run_id)", reason="not_the_events_export")
    claimed = {"kind": claim.kind, "exported_at": claim.exported_at, "watermark": claim.watermark,
               "users": claim.users}
    described = {"kind": manifest.kind, "exported_at": manifest.exported_at, "watermark": manifest.watermark,
                 "users": manifest.counts["users"]}
    for name in ("kind", "exported_at", "watermark", "users"):
        present = name in ("kind", "exported_at") or claimed[name] is not None
        if present and claimed[name] != described[name]:
            raise WarehouseLoadError(f"{where}: extra.{name} is not what the export's manifest says",
                                     reason="extra_not_the_manifest")
    return ExportRef(path=claim.path, kind=manifest.kind, exported_at=manifest.exported_at, event_id=claim.event_id,
                     watermark=manifest.watermark, users=manifest.counts["users"], manifest=claim.manifest, file=file)


@dataclass
class LoadResult:
    path: str
    event_id: int
    kind: str
    skipped: bool = False  # already in the load log: nothing changed
    read: int = 0
    inserted: int = 0  # users seen for the first time
    changed: int = 0  # a new version (status, login or profile changed)
    touched: int = 0  # lastUpdated moved, nothing we keep changed: no version
    unchanged: int = 0
    stale: int = 0  # older than what is stored (an earlier export loaded late)
    restored: int = 0  # marked deleted, seen again
    deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schema_statements(flavour: SqlFlavour) -> list[str]:
    text, ts, js = flavour.text_type, flavour.timestamp_type, flavour.json_type
    profile_columns = "".join(f"    {column} {text},\n" for column in PROFILE_COLUMNS)
    return [
        f"CREATE TABLE IF NOT EXISTS {USERS_TABLE} (\n    id VARCHAR(64) NOT NULL PRIMARY KEY,\n"
        f"    status VARCHAR(32),\n    login {text},\n{profile_columns}    profile {js},\n    created {ts},\n"
        f"    last_updated {ts},\n    deleted_at {ts},\n    content_sha256 VARCHAR(64)\n)",
        f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (\n    id VARCHAR(64) NOT NULL,\n    valid_from {ts} NOT NULL,\n"
        f"    valid_to {ts},\n    status VARCHAR(32),\n    login {text},\n    profile {js},\n"
        f"    PRIMARY KEY (id, valid_from)\n)",
        f"CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (\n    export_path VARCHAR({MAX_PATH_LENGTH}) NOT NULL,\n"
        f"    event_id BIGINT NOT NULL,\n    kind VARCHAR(16) NOT NULL,\n    exported_at {ts} NOT NULL,\n"
        f"    watermark {ts},\n    loaded_at {ts} NOT NULL,\n    users_read BIGINT NOT NULL,\n"
        f"    inserted BIGINT NOT NULL,\n    changed BIGINT NOT NULL,\n    deleted BIGINT NOT NULL,\n"
        f"    PRIMARY KEY (export_path, event_id)\n)",
        refused_table_statement(flavour),
        # No key: COPY stages fastest into a bare table (PostgreSQL then hashes the joins, given ANALYZE); elsewhere
        # an index answers them. A user listed twice is staged twice and deduplicated in SQL. The pending table holds
        # what a repeat load has to write (new and newer users), when most of the export is what is stored already.
        *(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} (\n    line BIGINT NOT NULL,\n"
          f"    id VARCHAR(64) NOT NULL,\n    status VARCHAR(32),\n    login {text},\n{profile_columns}"
          f"    profile {js},\n    created {ts},\n    last_updated {ts} NOT NULL,\n    content_sha256 VARCHAR(64)\n)"
          for table in (STAGED_TABLE, PENDING_TABLE)),
        *([] if flavour.name.startswith("postgres") else
          [f"CREATE INDEX IF NOT EXISTS {table}_id ON {table} (id, last_updated)"
           for table in (STAGED_TABLE, PENDING_TABLE)]),
    ]


def refused_table_statement(flavour: SqlFlavour) -> str:
    """`okta_sync_refused`: the Asset events (users and membership exports alike: event ids are Airflow's, one
    sequence for every Asset) refused or given up on."""
    return (f"CREATE TABLE IF NOT EXISTS {REFUSED_TABLE} (\n    event_id BIGINT NOT NULL,\n"
            f"    event_time VARCHAR(32) NOT NULL,\n    export_path VARCHAR({MAX_PATH_LENGTH}),\n"
            f"    reason VARCHAR(32) NOT NULL,\n    detail VARCHAR({MAX_DETAIL}) NOT NULL,\n"
            f"    refused_at {flavour.timestamp_type} NOT NULL,\n    PRIMARY KEY (event_id, event_time)\n)")


def ensure_schema(connection: Any, flavour: SqlFlavour) -> None:
    """Create the tables when missing (idempotent), committed before any load begins."""
    create_tables(connection, flavour, schema_statements(flavour))


def create_tables(connection: Any, flavour: SqlFlavour, statements: Iterable[str]) -> None:
    """The flavour's session statements, then `statements` (each `CREATE ... IF NOT EXISTS`), committed."""
    cursor = connection.cursor()
    try:
        for statement in (*flavour.session_statements, *statements):
            cursor.execute(statement)
    finally:
        cursor.close()
    connection.commit()


def select_all(connection: Any, statement: str) -> list[tuple]:
    """Every row `statement` selects, in a transaction of its own (ended before the loads begin theirs)."""
    cursor = connection.cursor()
    try:
        cursor.execute(statement)
        rows = list(cursor.fetchall())
    finally:
        cursor.close()
    connection.commit()
    return rows


def loaded_exports(connection: Any) -> set[tuple[str, int]]:
    """(export path, event id) of every load done: the DAG's own progress."""
    return {(path, int(event_id)) for path, event_id in
            select_all(connection, f"SELECT export_path, event_id FROM {LOADS_TABLE}")}


def refused_events(connection: Any) -> set[tuple[int, str]]:
    """(event id, event time) of every event refused or given up on: not looked at again."""
    return {(int(event_id), event_time) for event_id, event_time in
            select_all(connection, f"SELECT event_id, event_time FROM {REFUSED_TABLE}")}


def record_refusal(connection: Any, flavour: SqlFlavour, event: ExportEvent, path: str | None, reason: str,
                   detail: str, *, now: Callable[[], datetime] | None = None) -> None:
    """Keep a refusal (its own transaction): the event is reported once, then skipped by every later run."""
    columns = ("event_id", "event_time", "export_path", "reason", "detail", "refused_at")
    event_id, event_time = event.key
    path = path if isinstance(path, str) and len(path) <= MAX_PATH_LENGTH else None
    cursor = connection.cursor()
    try:
        cursor.execute(flavour.replace_sql(REFUSED_TABLE, columns, ("event_id", "event_time")),
                       (event_id, event_time, path, reason[:32], detail[:MAX_DETAIL],
                        okta_timestamp((now or _utc_now)())))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()


def pending_exports(exports: Iterable[ExportRef], done: set[tuple[str, int]]) -> list[ExportRef]:
    """Exports not loaded yet, oldest snapshot first (Asset events come in no particular order)."""
    return sorted((e for e in exports if (e.path, e.event_id) not in done), key=lambda e: e.order)


# Serialisers built once (json.dumps with options builds an encoder per call): the bytes hashed into content_sha256
# are json.dumps([status, login], ensure_ascii=False) followed by the profile's canonical JSON.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_status_login_json = json.JSONEncoder(ensure_ascii=False).encode
_column_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
_PROFILE_NAMES = tuple(PROFILE_COLUMNS.values())


def staged_user(user: Any, number: int) -> tuple:
    """One user of the export (line `number`) as a staged row: STAGED_COLUMNS, the profile as canonical JSON,
    content_sha256 the hash of what a version is made of (status, login, profile)."""
    if not isinstance(user, dict):
        raise WarehouseLoadError(f"export line {number}: not a user object")
    return _staged_row(number, user.get("id"), user.get("status"), user.get("created"), user.get("lastUpdated"),
                       user.get("profile"), None)


class _ExportedUser(msgspec.Struct):
    """What a load keeps of an exported user: msgspec skips the other members (credentials, _links, ...)."""

    id: Any = None
    status: Any = None
    created: Any = None
    lastUpdated: Any = None  # noqa: N815 (Okta's name)
    profile: Any = None


_sorted_json = msgspec.json.Encoder(order="sorted").encode  # keys by code point, compact: _canonical_json's bytes


class _UserLines:
    """Export lines (bytes) to staged rows, the same rows `staged_user(json.loads(line))` gives, three times faster:
    msgspec decodes only the members kept and writes the canonical profile. Its output is byte for byte
    `_canonical_json`'s but for floats (`1e16` where Python writes `1e+16`), so a line with a float in it takes
    Python's encoder; a line msgspec refuses (not an object, NaN, a lone surrogate, a BOM) is read by `json.loads`
    as before, so the same lines load and the same lines fail, with the same messages."""

    def __init__(self) -> None:
        self._floats = False
        self._decode = msgspec.json.Decoder(_ExportedUser, float_hook=self._float).decode

    def _float(self, text: str) -> float:
        self._floats = True
        return float(text)

    def row(self, line: bytes, number: int) -> tuple | None:
        self._floats = False
        try:
            user = self._decode(line)
        except msgspec.MsgspecError:
            if not line.strip():
                return None
            try:
                data = json.loads(line)
            except ValueError:
                raise ValueError(f"users export line {number} is not valid JSON (a truncated file?)") from None
            except RecursionError:
                raise WarehouseLoadError(f"export line {number}: nested too deeply to read") from None
            return staged_user(data, number)
        except RecursionError:  # a line nested thousands deep: refused like any bad line, never a task crash
            raise WarehouseLoadError(f"export line {number}: nested too deeply to read") from None
        return _staged_row(number, user.id, user.status, user.created, user.lastUpdated, user.profile,
                           None if self._floats else _sorted_json)


def _staged_row(number: int, user_id: Any, status: Any, created: Any, last_updated: Any, profile: Any,
                fast: Callable[[Any], bytes] | None) -> tuple:
    """The row, once the members are checked (errors name the line and the member, never a value); `fast` encodes
    the canonical profile (msgspec's sorted encoder), None for Python's."""
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise WarehouseLoadError(f"export line {number}: id is missing or not an Okta user id")
    if not isinstance(last_updated, str) or not _OKTA_TIMESTAMP.match(last_updated):
        raise WarehouseLoadError(f"export line {number} (user {user_id}): lastUpdated is not an Okta timestamp")
    profile = profile or {}
    if not isinstance(profile, dict):
        raise WarehouseLoadError(f"export line {number} (user {user_id}): profile is not an object")
    status, login = _text(status), _text(profile.get("login"))
    if fast is None:
        profile_json = _canonical_json(profile)
        digest = hashlib.sha256(_status_login_json([status, login]).encode("utf-8", "surrogatepass"))
        digest.update(profile_json.encode("utf-8", "surrogatepass"))
    else:  # the same bytes: json.dumps([a, b]) is "[" a ", " b "]" with each string as msgspec writes it
        profile_bytes = fast(profile)
        digest = hashlib.sha256(b"[%s, %s]" % (fast(status), fast(login)))
        digest.update(profile_bytes)
        profile_json = profile_bytes.decode()
    get = profile.get
    return (number, user_id, status, login,
            *[v if v is None or v.__class__ is str else _text(v) for v in map(get, _PROFILE_NAMES)],
            profile_json, created if isinstance(created, str) else None, last_updated, digest.hexdigest())


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return _column_json(value)
    return str(value)


def _staged_rows(users: Iterable[Any], size: int) -> Iterator[list[tuple]]:
    """The export's users as staged rows (line number first), `size` at a time: one batch in memory. Each user is a
    line of the export file (bytes; blank lines skipped) or an already decoded object."""
    lines = _UserLines()
    numbered = enumerate(users, start=1)
    while chunk := list(islice(numbered, size)):
        rows = [lines.row(user, number) if user.__class__ is bytes else staged_user(user, number)
                for number, user in chunk]
        yield [row for row in rows if row is not None]


class _Statements:
    """The load, set-based: the export staged, then each step one statement over the staged rows."""

    def __init__(self, flavour: SqlFlavour):
        p = flavour.placeholder
        self.postgres = flavour.name.startswith("postgres")
        self.insert_staged = (f"INSERT INTO {STAGED_TABLE} ({', '.join(STAGED_COLUMNS)}) "
                              f"VALUES ({', '.join([p] * len(STAGED_COLUMNS))})")
        self.clear_staged = f"TRUNCATE {STAGED_TABLE}" if self.postgres else f"DELETE FROM {STAGED_TABLE}"
        self.find_duplicate = f"SELECT id FROM {STAGED_TABLE} GROUP BY id HAVING COUNT(*) > 1"
        # a user listed twice: the newest lastUpdated is kept, the first line of equals
        self.drop_duplicates = (
            f"DELETE FROM {STAGED_TABLE} WHERE EXISTS (SELECT 1 FROM {STAGED_TABLE} t WHERE t.id = {STAGED_TABLE}.id "
            f"AND (t.last_updated > {STAGED_TABLE}.last_updated OR (t.last_updated = {STAGED_TABLE}.last_updated "
            f"AND t.line < {STAGED_TABLE}.line)))")
        both = f"FROM {STAGED_TABLE} s LEFT JOIN {USERS_TABLE} u ON u.id = s.id"
        self.count = ("SELECT COUNT(*), " + ", ".join(f"SUM(CASE WHEN {when} THEN 1 ELSE 0 END)" for when in (
            _NEW, _CHANGED, _TOUCHED, _UNCHANGED, _RESTORED)) + f" {both}")
        # what the steps below act on (new users, newer versions), when the export is mostly unchanged or stale:
        # each step then joins these few, not the whole export
        self.keep_pending = (f"INSERT INTO {PENDING_TABLE} ({', '.join(STAGED_COLUMNS)}) SELECT "
                             f"{', '.join(f's.{c}' for c in STAGED_COLUMNS)} {both} "
                             f"WHERE u.id IS NULL OR s.last_updated > u.last_updated")
        self.clear_pending = f"TRUNCATE {PENDING_TABLE}" if self.postgres else f"DELETE FROM {PENDING_TABLE}"
        self.merge = {table: _merge_statements(table) for table in (STAGED_TABLE, PENDING_TABLE)}
        missing = (f"deleted_at IS NULL AND last_updated < {p} AND NOT EXISTS "
                   f"(SELECT 1 FROM {STAGED_TABLE} s WHERE s.id = {USERS_TABLE}.id)")
        self.close_missing = (f"UPDATE {HISTORY_TABLE} SET valid_to = {p} WHERE valid_to IS NULL AND id IN "
                              f"(SELECT id FROM {USERS_TABLE} WHERE {missing})")
        self.delete_missing = f"UPDATE {USERS_TABLE} SET deleted_at = {p} WHERE {missing}"
        self.log_load = (f"INSERT INTO {LOADS_TABLE} (export_path, event_id, kind, exported_at, watermark, loaded_at, "
                         f"users_read, inserted, changed, deleted) VALUES ({', '.join([p] * 10)})")
        self.find_load = f"SELECT 1 FROM {LOADS_TABLE} WHERE export_path = {p} AND event_id = {p}"


# How a staged user (s) compares with the stored one (u). Okta moves lastUpdated on every change: the same time is
# the same version; an older one is an earlier export loaded late (stale); a user marked deleted comes back only
# with a newer version.
_NEW = "u.id IS NULL"
_LIVE_AND_NEWER = "u.deleted_at IS NULL AND s.last_updated > u.last_updated"
_CHANGED = f"{_LIVE_AND_NEWER} AND (u.content_sha256 IS NULL OR s.content_sha256 <> u.content_sha256)"
_TOUCHED = f"{_LIVE_AND_NEWER} AND s.content_sha256 = u.content_sha256"  # lastUpdated moved, nothing we keep
_UNCHANGED = "u.deleted_at IS NULL AND s.last_updated = u.last_updated"
_RESTORED = "u.deleted_at IS NOT NULL AND s.last_updated > u.last_updated"


def _merge_statements(staged: str) -> list[str]:
    """The versions closed and opened, users updated and inserted, from the users in `staged`, in this order."""
    both = f"FROM {staged} s LEFT JOIN {USERS_TABLE} u ON u.id = s.id"
    kept = [c for c in USER_COLUMNS if c not in ("id", "deleted_at")]
    return [
        f"UPDATE {HISTORY_TABLE} SET valid_to = s.last_updated FROM {staged} s, {USERS_TABLE} u "
        f"WHERE {HISTORY_TABLE}.id = s.id AND u.id = s.id AND {HISTORY_TABLE}.valid_to IS NULL AND {_CHANGED}",
        # a restored user's version begins after the closed one's valid_to (its deleted_at)
        f"INSERT INTO {HISTORY_TABLE} (id, valid_from, status, login, profile) SELECT s.id, CASE WHEN "
        f"u.deleted_at IS NOT NULL AND u.deleted_at > s.last_updated THEN u.deleted_at ELSE s.last_updated END, "
        f"s.status, s.login, s.profile {both} WHERE {_NEW} OR ({_CHANGED}) OR ({_RESTORED})",
        # changed, touched and restored: whatever is newer than what is stored
        f"UPDATE {USERS_TABLE} SET {', '.join(f'{c} = s.{c}' for c in kept)}, deleted_at = NULL "
        f"FROM {staged} s WHERE {USERS_TABLE}.id = s.id AND s.last_updated > {USERS_TABLE}.last_updated",
        f"INSERT INTO {USERS_TABLE} ({', '.join(c for c in USER_COLUMNS if c != 'deleted_at')}) "
        f"SELECT {', '.join(f's.{c}' for c in USER_COLUMNS if c != 'deleted_at')} FROM {staged} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {USERS_TABLE} u WHERE u.id = s.id)",
    ]


def load_export(connection: Any, flavour: SqlFlavour, export: ExportRef, users: Iterable[Any], *,
                batch_size: int | None = None, now: Callable[[], datetime] | None = None,
                verify: Callable[[], None] | None = None) -> LoadResult:
    """Load one export in one transaction (committed at the end, rolled back on any error).

    `users` is the export's users (the file's lines, as bytes, or decoded objects), streamed into a staging table (COPY on PostgreSQL, `executemany` elsewhere; one
    batch in memory), then compared with the stored rows and written by a few set-based statements. `verify` is
    called once every user was read and before anything is written to the tables (a `DigestReader.verify`: the
    content is the manifest's); its error rolls the load back. Call `ensure_schema` once first.
    """
    s = _Statements(flavour)
    result = LoadResult(path=export.path, event_id=export.event_id, kind=export.kind)
    cursor = connection.cursor()
    try:
        cursor.execute(s.find_load, (export.path, export.event_id))
        if cursor.fetchone() is not None:
            connection.rollback()
            result.skipped = True
            return result
        cursor.execute(s.clear_staged)
        size = batch_size or (COPY_BATCH_SIZE if s.postgres else BATCH_SIZE)
        if s.postgres and can_copy(cursor):  # one COPY: the server stores rows while the next are read
            copy_rows(cursor, STAGED_TABLE, STAGED_COLUMNS, chain.from_iterable(_staged_rows(users, size)))
        else:
            for rows in _staged_rows(users, size):
                cursor.executemany(s.insert_staged, rows)
        if verify is not None:
            verify()
        if s.postgres:
            cursor.execute(f"ANALYZE {STAGED_TABLE} (id)")  # temporary tables get no statistics otherwise
        cursor.execute(s.find_duplicate)
        if cursor.fetchone() is not None:
            cursor.fetchall()
            cursor.execute(s.drop_duplicates)
        cursor.execute(s.count)
        read, inserted, changed, touched, unchanged, restored = (int(n or 0) for n in cursor.fetchone())
        result.read, result.inserted, result.changed, result.touched = read, inserted, changed, touched
        result.unchanged, result.restored = unchanged, restored
        result.stale = read - inserted - changed - touched - unchanged - restored
        if export.kind == FULL:  # users the export does not name: untouched by the steps below, so marked first
            cursor.execute(s.close_missing, (export.exported_at, export.exported_at))  # (a first load: none, at once)
            cursor.execute(s.delete_missing, (export.exported_at, export.exported_at))
            result.deleted = max(cursor.rowcount, 0)
        staged = STAGED_TABLE
        if result.unchanged + result.stale:  # a repeat load: only what changed goes on
            cursor.execute(s.clear_pending)
            cursor.execute(s.keep_pending)
            staged = PENDING_TABLE
            if s.postgres:
                cursor.execute(f"ANALYZE {PENDING_TABLE} (id)")
        for statement in s.merge[staged]:
            cursor.execute(statement)
        if staged == PENDING_TABLE:
            cursor.execute(s.clear_pending)
        cursor.execute(s.clear_staged)
        loaded_at = okta_timestamp((now or _utc_now)())
        cursor.execute(s.log_load, (export.path, export.event_id, export.kind, export.exported_at,
                                    export.watermark, loaded_at, result.read, result.inserted,
                                    result.changed + result.restored, result.deleted))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()
    return result


def copy_rows(cursor: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bool:
    """Rows into `table` by one PostgreSQL COPY (text format), in the cursor's own transaction: psycopg 3's
    `cursor.copy`, or psycopg2's `copy_expert` (PostgresHook's driver, either). `rows` is streamed (a generator
    holds one batch): the server stores each block while the next is made. False, before `rows` is touched, when
    the driver has no COPY (the caller inserts the rows)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    if hasattr(cursor, "copy_expert"):  # psycopg2
        source = _CopyText(rows)
        cursor.copy_expert(statement, source, size=1 << 16)
        if source.error is not None:  # the rows' own error (a bad line), not psycopg2's QueryCanceled around it
            raise source.error
        return True
    if callable(getattr(cursor, "copy", None)):  # psycopg 3: it escapes each value itself
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return True
    return False


def can_copy(cursor: Any) -> bool:
    """Whether `copy_rows` can use this cursor's driver."""
    return hasattr(cursor, "copy_expert") or callable(getattr(cursor, "copy", None))


class _CopyText:
    """Rows as COPY's text format, read lazily by psycopg2's `copy_expert` (a file's `read`). An error raised by the
    rows ends the COPY early and is kept in `error` for the caller to raise (psycopg2 would turn it into a
    QueryCanceled naming it); the transaction then holds part of the rows and must be rolled back."""

    def __init__(self, rows: Iterable[Sequence[Any]]):
        self._rows = iter(rows)
        self.error: Exception | None = None

    def read(self, size: int = -1) -> str:
        lines, length = [], 0
        try:
            for row in self._rows:
                line = _copy_line(row)
                lines.append(line)
                length += len(line)
                if 0 <= size <= length:
                    break
        except Exception as error:
            self.error = error
            return ""
        return "".join(lines)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(row: Sequence[Any]) -> str:
    """One row in COPY's text format: None is \\N; backslash, tab, newline and carriage return escaped."""
    return "\t".join("\\N" if value is None else str(value).translate(_COPY_ESCAPES) for value in row) + "\n"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
