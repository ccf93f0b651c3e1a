"""The Airflow side of the warehouse loads (core: okta_sync.sync.warehouse): the SQL database of a connection through
its common.sql `DbApiHook` and dialect, the export Asset's events, and the export files and their manifests
(ObjectStoragePath, only under the output root).

    load_new_exports("okta_warehouse", newest_events(context["inlet_events"][USERS_EXPORT]))

An event is loaded only when Airflow says the export task of `okta_user_sync` emitted it, its file lies in that
run's own folder and the manifest beside it (written by that task instance) describes it; the load believes the
manifest. Anything else is refused: logged at ERROR with the event id and the field, counted in the task's return
value and its outlet's extra, and kept in `okta_sync_refused` so that later runs skip it. An export whose file is
missing is looked for again for `MISSING_GRACE` after its event (a store's listing may lag), then given up on.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import BaseHook

from okta_sync.airflow.hooks import AirflowStatsMetrics, fail_fast
from okta_sync.errors import LocationError, ManifestError
from okta_sync.sync.manifest import DigestReader, Manifest, read_manifest
from okta_sync.sync.warehouse import (
    EVENT_CLOCK_SKEW,
    FULL,
    MISSING_GRACE,
    ExportEvent,
    ExportRef,
    Producers,
    SqlFlavour,
    WarehouseLoadError,
    check_claimed_time,
    check_source,
    ensure_schema,
    file_name_in_folder,
    load_export,
    loaded_exports,
    record_refusal,
    refused_events,
    vet_export,
)

WAREHOUSE_CONN_ID = "okta_warehouse"
MAX_EVENTS = 1000  # the newest export events looked at per run (hourly exports: six weeks)
log = logging.getLogger(__name__)


def warehouse_hook(conn_id: str = WAREHOUSE_CONN_ID) -> Any:
    """The connection's own hook (SQLite, PostgreSQL, Snowflake, ...): it must be a common.sql `DbApiHook`."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise WarehouseLoadError(f"connection {conn_id!r}: its type has no SQL hook (common.sql DbApiHook); "
                                 "use a database connection such as sqlite or postgres")
    return hook


def flavour_for(hook: Any) -> SqlFlavour:
    """Placeholders and upserts from the hook and its common.sql dialect; JSONB and timestamptz on PostgreSQL."""
    dialect = hook.dialect

    def replace_sql(table: str, columns: Any, key: Any) -> str:
        return dialect.generate_replace_sql(table, [None] * len(columns), list(columns), replace_index=list(key))

    name = hook.dialect_name
    if name.startswith("postgres"):
        return SqlFlavour(name, hook.placeholder, replace_sql, json_type="JSONB",
                          timestamp_type="TIMESTAMP WITH TIME ZONE")
    if name == "sqlite":  # a bounded page cache (64 MiB) halves a 1,000,000-user load's time
        return SqlFlavour(name, hook.placeholder, replace_sql, session_statements=("PRAGMA cache_size = -65536",))
    return SqlFlavour(name, hook.placeholder, replace_sql)


def export_event(event: Any) -> ExportEvent:
    """The fields of an Airflow Asset event (`AssetEventResult`) the loads use."""
    return ExportEvent(id=int(event.id), timestamp=getattr(event, "timestamp", None), extra=getattr(event, "extra", None),
                       source_dag_id=getattr(event, "source_dag_id", None),
                       source_task_id=getattr(event, "source_task_id", None),
                       source_run_id=getattr(event, "source_run_id", None))


def newest_events(accessor: Any, limit: int = MAX_EVENTS) -> Any:
    """All of an inlet Asset's events (`inlet_events[asset]`), newest first and bounded; order is decided later."""
    with contextlib.suppress(AttributeError):
        return accessor.ascending(False).limit(limit)
    return list(accessor)[-limit:]


class WarehouseRun:
    """One warehouse run's bookkeeping (users and membership loads alike): what was refused (logged, counted in
    Stats, kept in `okta_sync_refused`), what waits for its file, what a newer full export supersedes."""

    def __init__(self, connection: Any, flavour: SqlFlavour, now: datetime):
        self.connection, self.flavour, self.now = connection, flavour, now
        self.refused: list[int] = []
        self.waiting: list[int] = []
        self.superseded: list[int] = []

    def refuse(self, event: ExportEvent, path: str | None, error: Exception, reason: str | None = None) -> None:
        reason = reason or getattr(error, "reason", "unreadable")
        log.error("Asset event %d refused (%s): %s", event.id, reason, error)
        AirflowStatsMetrics().incr("warehouse.events_refused")  # something to alert on
        record_refusal(self.connection, self.flavour, event, path, reason, str(error), now=lambda: self.now)
        self.refused.append(event.id)

    def missing(self, event: ExportEvent, claim: ExportRef, vetted: list[ExportRef]) -> None:
        """A newer full export supersedes it; else it is waited for within the grace, then given up on."""
        if any(other.kind == FULL and other.order > claim.order for other in vetted):
            log.warning("Export of asset event %d is gone; a newer full export supersedes it: not loaded", event.id)
            record_refusal(self.connection, self.flavour, event, claim.path, "superseded_missing",
                           "the export is gone; a newer full export supersedes it", now=lambda: self.now)
            self.superseded.append(event.id)
        else:
            self.gone(event, claim.path, "the export or its manifest is gone and no newer full export supersedes it",
                      "restore both files and delete the event's row from okta_sync_refused, or run okta_user_sync "
                      "with full_refresh")

    def gone(self, event: ExportEvent, path: str | None, what: str, hint: str) -> None:
        """Files an event names are not there: waited for within the grace (a store that lists late), then given
        up on (refused as `missing`: never blocks the loads after it)."""
        if event.timestamp is not None and self.now - event.timestamp < MISSING_GRACE:
            log.warning("Export of asset event %d is not there (yet); looked for again by the next run until %s",
                        event.id, event.timestamp + MISSING_GRACE)
            self.waiting.append(event.id)
        else:
            self.refuse(event, path, WarehouseLoadError(
                f"asset event {event.id}: {what} (looked for during {MISSING_GRACE} after the event); {hint}",
                reason="missing"))


def _read_export_manifest(claim: ExportRef, roots: Any) -> Manifest | None:
    """The manifest beside the export (only under the output root); None when it is not there (yet)."""
    from okta_sync.airflow.storage import OUTPUT_ROOT_VARIABLE, open_within

    folder = claim.path.rpartition("/")[0]
    try:
        with open_within(f"{folder}/{claim.manifest}", roots, what=f"asset event {claim.event_id} manifest",
                         setting=OUTPUT_ROOT_VARIABLE) as file:
            return read_manifest(file)
    except FileNotFoundError:
        return None


@fail_fast
def load_new_exports(conn_id: str, events: Iterable[Any], *, producers: Producers = Producers(),
                     now: datetime | None = None) -> dict[str, Any]:
    """Load every export named by `events` and not in the load log yet, oldest snapshot first, one transaction
    each, when its event and manifest hold up (see the module); refuse, record and report the others. Only what
    Airflow itself may retry (the database, the store) fails the task."""
    from okta_sync.airflow.storage import OUTPUT_ROOT_VARIABLE, open_within, output_root, run_folder_uri
    from okta_sync.sync.locations import parse_roots

    root = output_root()
    roots = parse_roots([root + "/"], setting=OUTPUT_ROOT_VARIABLE)
    now = now or datetime.now(timezone.utc)
    hook = warehouse_hook(conn_id)
    flavour = flavour_for(hook)
    loads: list[dict[str, Any]] = []
    with contextlib.closing(hook.get_conn()) as connection:
        ensure_schema(connection, flavour)
        run = WarehouseRun(connection, flavour, now)
        done, skipped = loaded_exports(connection), refused_events(connection)
        candidates, seen, before = [], 0, 0
        for raw in events:
            event = export_event(raw)
            seen += 1
            if event.key in skipped:
                before += 1
                continue
            try:
                claim = ExportRef.from_event(event.id, event.extra, event.timestamp)
            except WarehouseLoadError as error:
                run.refuse(event, None, error, "bad_extra")
                continue
            if (claim.path, claim.event_id) not in done:
                candidates.append((event, claim))
        vetted, missing = [], []
        for event, claim in candidates:
            try:
                check_source(event, producers)
                if claim.manifest is None:
                    raise WarehouseLoadError(
                        f"asset event {event.id}: extra.manifest is missing (an export from before manifests); it "
                        "is never loaded: run okta_user_sync with full_refresh to load the current users",
                        reason="no_manifest")
                file_name_in_folder(claim, run_folder_uri(root, event.source_dag_id, event.source_run_id))
                check_claimed_time(event, claim, EVENT_CLOCK_SKEW)
                manifest = _read_export_manifest(claim, roots)
                if manifest is None:
                    missing.append((event, claim))
                else:
                    vetted.append((event, vet_export(event, claim, manifest)))
            except (WarehouseLoadError, LocationError) as error:
                run.refuse(event, claim.path, error, "outside_output_root" if isinstance(error, LocationError) else None)
            except ManifestError as error:
                run.refuse(event, claim.path, WarehouseLoadError(f"asset event {event.id}: {error}"), "bad_manifest")
        exports = [export for _, export in vetted]
        for event, claim in missing:
            run.missing(event, claim, exports)
        todo = sorted(vetted, key=lambda pair: pair[1].order)
        log.info("%d export event(s) looked at, %d to load, %d refused before, into %s (%s)", seen, len(todo), before,
                 conn_id, flavour.name)
        for event, export in todo:
            try:
                # read only under the output root, never through a symlink out of it; checked against its manifest
                with open_within(export.path, roots, what=f'asset event {export.event_id} extra["path"]',
                                 setting=OUTPUT_ROOT_VARIABLE) as file:
                    content = DigestReader(file, export.file)
                    result = load_export(connection, flavour, export, content, verify=content.verify)
            except FileNotFoundError:
                run.missing(event, export, exports)
                continue
            except LocationError as error:
                run.refuse(event, export.path, error, "outside_output_root")
                continue
            except (ManifestError, WarehouseLoadError, *UNREADABLE) as error:
                # the file is not what its manifest says (or not an export): the load was rolled back
                run.refuse(event, export.path, WarehouseLoadError(
                    f"asset event {event.id}: {content_error(error)}; the load was rolled back"),
                    "content_not_the_manifest" if isinstance(error, ManifestError) else "unreadable")
                continue
            log.info("Loaded %s (%s, event %d): %s", export.path, export.kind, export.event_id, result.as_dict())
            loads.append(result.as_dict())
    return {"loaded": len([r for r in loads if not r["skipped"]]), "loads": loads[-100:],  # XCom: bounded
            "refused": len(run.refused), "refused_events": run.refused[:100], "refused_before": before,
            "waiting_events": run.waiting[:100], "superseded_missing_events": run.superseded[:100],
            "users_read": sum(r["read"] for r in loads)}


# What reading an export file that is not what it should be raises: a bad line (ValueError), a truncated or corrupt
# gzip stream (EOFError, BadGzipFile, zlib.error). Refused as `unreadable`; other OSErrors (the store) fail the task.
UNREADABLE = (ValueError, EOFError, gzip.BadGzipFile, zlib.error)


def content_error(error: Exception) -> str:
    """Our own errors name the line or the field; a decompressor's or parser's text is not repeated."""
    if isinstance(error, (ManifestError, WarehouseLoadError)) or str(error).startswith("users export line"):
        return str(error)
    return f"the export file cannot be read ({type(error).__name__})"
