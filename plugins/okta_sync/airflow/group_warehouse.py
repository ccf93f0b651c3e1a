"""The Airflow side of the membership loads (core: okta_sync.sync.group_warehouse): the `okta_warehouse` connection's
common.sql hook (as the users loads: `okta_sync.airflow.warehouse`), the `okta_groups_export` Asset's events, and the
export files read only under the output root.

    load_new_group_exports("okta_warehouse", newest_events(inlet_events[GROUPS_EXPORT]))

As for users exports, an event is loaded only when Airflow says `okta_groups_sync.export_groups` emitted it, its
manifest lies in that run's own folder, was written by that task instance and describes every file (each checked in
the pass that reads it). Anything else is refused by event id and field, never by value: logged at ERROR, counted
(`okta_sync.warehouse.events_refused`, the summary's `refused`) and kept in `okta_sync_refused` by the users loads'
own machinery (`okta_sync.airflow.warehouse.WarehouseRun`), so it is reported once and skipped by every later run.
A refusal does not fail the task (anyone who may post Asset events could otherwise stop the loads). Files that are
not there are looked for again for two hours after their event, then refused as `missing`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from okta_sync.airflow.hooks import fail_fast
from okta_sync.airflow.warehouse import (
    UNREADABLE,
    WarehouseRun,
    content_error,
    export_event,
    flavour_for,
    warehouse_hook,
)
from okta_sync.errors import LocationError, ManifestError, WarehouseLoadError
from okta_sync.sync.group_export import GROUPS_FILE, MEMBERSHIPS_FILE, READ_FILE, check_groups_manifest
from okta_sync.sync.group_warehouse import (
    GroupExportRef,
    ensure_group_schema,
    load_group_export,
    loaded_group_exports,
    pending_group_exports,
)
from okta_sync.sync.manifest import DigestReader, Manifest, check_times, read_manifest
from okta_sync.sync.warehouse import EVENT_CLOCK_SKEW, ExportEvent, Producers, check_source, refused_events

GROUP_PRODUCERS = Producers(dag_ids=("okta_groups_sync",), task_ids=("export_groups",))

log = logging.getLogger(__name__)


def group_export_claim(event: ExportEvent, root: str, producers: Producers = GROUP_PRODUCERS) -> GroupExportRef:
    """The export an event names, when the export task emitted it and its manifest lies in the emitting run's own
    folder; WarehouseLoadError (its `reason` a code) otherwise."""
    from okta_sync.airflow.storage import run_folder_uri

    check_source(event, producers)
    try:
        claim = GroupExportRef.from_event(event.id, event.extra)
    except WarehouseLoadError as error:
        raise WarehouseLoadError(str(error), reason="bad_extra") from None
    folder = run_folder_uri(root, event.source_dag_id, event.source_run_id)
    if claim.manifest_path.rpartition("/")[0] != folder.rstrip("/"):
        raise WarehouseLoadError(f"asset event {event.id}: extra.paths.manifest is not in the folder of the run "
                                 "that emitted the event", reason="outside_run_folder")
    return claim


def vet_manifest(event: ExportEvent, manifest: Manifest) -> None:
    """The manifest is this event's export's: written by the task instance that emitted it, no time after it."""
    check_groups_manifest(manifest)
    check_times(manifest, not_after=event.timestamp or datetime.now(timezone.utc), skew=EVENT_CLOCK_SKEW,
                what="the event that announced it")
    producer = manifest.producer
    if (producer.dag_id, producer.task_id, producer.run_id) != \
            (event.source_dag_id, event.source_task_id, event.source_run_id):
        raise ManifestError("manifest: its producer is not the event's source (source_dag_id, source_task_id, "
                            "source_run_id)")


@fail_fast
def load_new_group_exports(conn_id: str, events: Iterable[Any]) -> dict[str, Any]:
    """Load every membership export named by `events` and not in the load log yet, oldest first, one transaction
    each. Events that cannot be believed or read are refused and reported; only the database or the store failing
    fails the task (Airflow retries it)."""
    from okta_sync.airflow.storage import OUTPUT_ROOT_VARIABLE, open_within, output_root
    from okta_sync.sync.locations import parse_roots

    roots = parse_roots([output_root() + "/"], setting=OUTPUT_ROOT_VARIABLE)

    def opened(path: str, what: str) -> Any:
        # every path (the event's manifest, the manifest's files) is read only under the output root
        return open_within(path, roots, what=what, setting=OUTPUT_ROOT_VARIABLE)

    hook = warehouse_hook(conn_id)
    flavour = flavour_for(hook)
    loads = []
    with contextlib.closing(hook.get_conn()) as connection:
        ensure_group_schema(connection, flavour)
        run = WarehouseRun(connection, flavour, datetime.now(timezone.utc))
        skipped, before = refused_events(connection), 0
        pairs = []
        for raw in events:
            event = export_event(raw)
            if event.key in skipped:
                before += 1
                continue
            try:
                pairs.append((event, group_export_claim(event, output_root())))
            except WarehouseLoadError as error:
                run.refuse(event, None, error)
        events_of = {claim.manifest_path: event for event, claim in pairs}
        todo = pending_group_exports([claim for _, claim in pairs], loaded_group_exports(connection))
        log.info("%d membership export event(s), %d not loaded yet, %d refused before, into %s (%s)", len(pairs),
                 len(todo), before, conn_id, flavour.name)
        for export in todo:
            event = events_of[export.manifest_path]
            where = f'asset event {export.event_id} extra["paths"]["manifest"]'
            folder = export.manifest_path.rpartition("/")[0]
            try:
                with opened(export.manifest_path, where) as file:
                    manifest = read_manifest(file)
                vet_manifest(event, manifest)
                files = {name: manifest.file(name) for name in (GROUPS_FILE, MEMBERSHIPS_FILE, READ_FILE)}
                with opened(f"{folder}/{GROUPS_FILE}", f"{where}: {GROUPS_FILE}") as groups, \
                        opened(f"{folder}/{MEMBERSHIPS_FILE}", f"{where}: {MEMBERSHIPS_FILE}") as memberships, \
                        opened(f"{folder}/{READ_FILE}", f"{where}: {READ_FILE}") as groups_read:
                    result = load_group_export(
                        connection, flavour, export, manifest, DigestReader(groups, files[GROUPS_FILE]),
                        DigestReader(memberships, files[MEMBERSHIPS_FILE]), DigestReader(groups_read, files[READ_FILE]))
            except LocationError as error:
                run.refuse(event, export.manifest_path, error, "outside_output_root")
                continue
            except ManifestError as error:
                run.refuse(event, export.manifest_path, WarehouseLoadError(f"asset event {event.id}: {error}"),
                           "bad_manifest")
                continue
            except WarehouseLoadError as error:
                run.refuse(event, export.manifest_path, error)
                continue
            except UNREADABLE as error:  # a truncated or corrupt file: refused, never failing every later run
                run.refuse(event, export.manifest_path, WarehouseLoadError(
                    f"asset event {event.id}: {content_error(error)}; the load was rolled back"), "unreadable")
                continue
            except FileNotFoundError:
                run.gone(event, export.manifest_path, "a file of the membership export is gone",
                         "restore it and delete the event's row from okta_sync_refused, or run okta_groups_sync "
                         "with full_refresh")
                continue
            log.info("Loaded %s (event %d): %s", export.manifest_path, export.event_id, result.as_dict())
            loads.append(result.as_dict())
    return {"loaded": len([r for r in loads if not r["skipped"]]), "loads": loads[-100:],  # XCom: bounded
            "refused": len(run.refused), "refused_events": run.refused[:100], "refused_before": before,
            "waiting_events": run.waiting[:100], "memberships_read": sum(r["memberships"] for r in loads)}
