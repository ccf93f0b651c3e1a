"""The Airflow side of the warehouse loads (core: okta_sync.sync.warehouse): the SQL database of a connection through
its common.sql `DbApiHook` and dialect, the export Asset's events, and the export files (ObjectStoragePath).

    load_new_exports("okta_warehouse", context["inlet_events"][USERS_EXPORT])
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from airflow.sdk import BaseHook

from okta_sync.airflow.hooks import fail_fast
from okta_sync.sync.export import read_users_jsonl
from okta_sync.sync.warehouse import (
    FULL,
    ExportRef,
    SqlFlavour,
    WarehouseLoadError,
    ensure_schema,
    load_export,
    loaded_exports,
    pending_exports,
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


def exports_from_events(events: Iterable[Any]) -> tuple[list[ExportRef], list[int]]:
    """Export references from Asset events (id, timestamp, extra); the ids of events refused, each logged."""
    exports, refused = [], []
    for event in events:
        try:
            exports.append(ExportRef.from_event(event.id, event.extra, getattr(event, "timestamp", None)))
        except WarehouseLoadError as error:
            log.error("%s", error)
            refused.append(event.id)
    return exports, refused


def _superseded(export: ExportRef, exports: list[ExportRef]) -> bool:
    """A newer full export describes the whole population: an older export adds history, not the current state."""
    return any(other.kind == FULL and other.order > export.order for other in exports)


def newest_events(accessor: Any, limit: int = MAX_EVENTS) -> Any:
    """All of an inlet Asset's events (`inlet_events[asset]`), newest first and bounded; order is decided later."""
    with contextlib.suppress(AttributeError):
        return accessor.ascending(False).limit(limit)
    return list(accessor)[-limit:]


@fail_fast
def load_new_exports(conn_id: str, events: Iterable[Any]) -> dict[str, Any]:
    """Load every export named by `events` and not in the load log yet, oldest snapshot first, one transaction
    each. Events that cannot be read are reported (and fail the task) after the others are loaded."""
    from okta_sync.sync.locations import LocationError
    from okta_sync.airflow.storage import OUTPUT_ROOT_VARIABLE, open_within, output_root
    from okta_sync.sync.locations import parse_roots

    roots = parse_roots([output_root() + "/"], setting=OUTPUT_ROOT_VARIABLE)

    hook = warehouse_hook(conn_id)
    flavour = flavour_for(hook)
    exports, refused = exports_from_events(events)
    loads, gone = [], []
    with contextlib.closing(hook.get_conn()) as connection:
        ensure_schema(connection, flavour)
        todo = pending_exports(exports, loaded_exports(connection))
        log.info("%d export event(s), %d not loaded yet, into %s (%s)", len(exports), len(todo), conn_id, flavour.name)
        for export in todo:
            try:
                # an event's extra["path"] is read only under the output root, never through a symlink out of it
                with open_within(export.path, roots, what=f'asset event {export.event_id} extra["path"]',
                                 setting=OUTPUT_ROOT_VARIABLE) as file:
                    result = load_export(connection, flavour, export, read_users_jsonl(file))
            except LocationError as error:
                log.error("Asset event %d refused: %s", export.event_id, error)
                refused.append(export.event_id)
                continue
            except FileNotFoundError:
                if not _superseded(export, exports):
                    raise WarehouseLoadError(f"asset event {export.event_id}: the export {export.path} is gone and "
                                             "no newer full export supersedes it; restore the file or run "
                                             "okta_user_sync with full_refresh") from None
                log.warning("Export %s (event %d) is gone; a newer full export supersedes it: not loaded",
                            export.path, export.event_id)
                gone.append(export.event_id)
                continue
            log.info("Loaded %s (%s, event %d): %s", export.path, export.kind, export.event_id, result.as_dict())
            loads.append(result.as_dict())
    summary = {"loaded": len([r for r in loads if not r["skipped"]]), "loads": loads[-100:],  # XCom: bounded
               "refused_events": refused, "superseded_missing_events": gone,
               "users_read": sum(r["read"] for r in loads)}
    if refused:
        raise WarehouseLoadError(f"{len(refused)} export event(s) could not be loaded (ids {refused[:20]}); "
                                 "the others were loaded, see the log for each event's field")
    return summary
