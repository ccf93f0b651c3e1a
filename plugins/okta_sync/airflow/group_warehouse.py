"""The Airflow side of the membership loads (core: okta_sync.sync.group_warehouse): the `okta_warehouse` connection's
common.sql hook (as the users loads: `okta_sync.airflow.warehouse`), the `okta_groups_export` Asset's events, and the
export files read only under the output root.

    load_new_group_exports("okta_warehouse", newest_events(inlet_events[GROUPS_EXPORT]))
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from okta_sync.airflow.hooks import fail_fast
from okta_sync.airflow.warehouse import flavour_for, warehouse_hook
from okta_sync.errors import LocationError, WarehouseLoadError
from okta_sync.sync.group_warehouse import (
    MAX_MANIFEST_BYTES,
    GroupExportRef,
    GroupManifest,
    ensure_group_schema,
    load_group_export,
    loaded_group_exports,
    pending_group_exports,
)

log = logging.getLogger(__name__)


def group_exports_from_events(events: Iterable[Any]) -> tuple[list[GroupExportRef], list[int]]:
    exports, refused = [], []
    for event in events:
        try:
            exports.append(GroupExportRef.from_event(event.id, event.extra))
        except WarehouseLoadError as error:
            log.error("%s", error)
            refused.append(event.id)
    return exports, refused


@fail_fast
def load_new_group_exports(conn_id: str, events: Iterable[Any]) -> dict[str, Any]:
    """Load every membership export named by `events` and not in the load log yet, oldest first, one transaction
    each. Events that cannot be read are reported (and fail the task) after the others are loaded."""
    from okta_sync.airflow.storage import OUTPUT_ROOT_VARIABLE, open_within, output_root
    from okta_sync.sync.locations import parse_roots

    roots = parse_roots([output_root() + "/"], setting=OUTPUT_ROOT_VARIABLE)

    def opened(path: str, what: str) -> Any:
        # every path (the event's manifest, the manifest's files) is read only under the output root
        return open_within(path, roots, what=what, setting=OUTPUT_ROOT_VARIABLE)

    hook = warehouse_hook(conn_id)
    flavour = flavour_for(hook)
    exports, refused = group_exports_from_events(events)
    loads = []
    with contextlib.closing(hook.get_conn()) as connection:
        ensure_group_schema(connection, flavour)
        todo = pending_group_exports(exports, loaded_group_exports(connection))
        log.info("%d membership export event(s), %d not loaded yet, into %s (%s)", len(exports), len(todo), conn_id,
                 flavour.name)
        for export in todo:
            where = f'asset event {export.event_id} extra["paths"]["manifest"]'
            try:
                with opened(export.manifest_path, where) as file:
                    manifest = GroupManifest.parse(file.read(MAX_MANIFEST_BYTES + 1), where)
                with opened(manifest.groups.path, f"{where} files.groups") as groups, \
                        opened(manifest.memberships.path, f"{where} files.memberships") as memberships:
                    result = load_group_export(connection, flavour, export, manifest, groups, memberships)
            except (LocationError, WarehouseLoadError) as error:
                log.error("Asset event %d refused: %s", export.event_id, error)
                refused.append(export.event_id)
                continue
            except FileNotFoundError:
                raise WarehouseLoadError(f"asset event {export.event_id}: a file of the export is gone; restore it "
                                         "or run okta_groups_sync with full_refresh") from None
            log.info("Loaded %s (event %d): %s", export.manifest_path, export.event_id, result.as_dict())
            loads.append(result.as_dict())
    summary = {"loaded": len([r for r in loads if not r["skipped"]]), "loads": loads[-100:],
               "refused_events": refused, "memberships_read": sum(r["memberships"] for r in loads)}
    if refused:
        raise WarehouseLoadError(f"{len(refused)} membership export event(s) could not be loaded (ids "
                                 f"{refused[:20]}); the others were loaded, see the log for each event's field")
    return summary
