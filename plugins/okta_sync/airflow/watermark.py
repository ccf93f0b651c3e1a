"""The incremental watermark of `okta_user_sync`, kept in the export Asset's state (core: okta_sync.sync.sync_window).

The Asset state, the XComs of `select_users`, `export_users` and `push_changes` can all be written by people (the
REST API, the UI), so none of them is believed as it is:
- reading (`read_watermark`): a stored value that is not an Okta timestamp, or lies in the future, is refused with
  a warning and the run lists every user (safe, slower);
- committing (`commit_watermark`): the value comes from the export's manifest in this run's own folder (written by
  this run's `export_users`), only after a complete, real run: the push's XCom can only make a run count as a dry
  run, never the other way round.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from okta_sync.airflow.hooks import fail_fast
from okta_sync.errors import ManifestError, UntrustedValueError
from okta_sync.sync.export import check_users_manifest
from okta_sync.sync.manifest import Manifest, read_manifest
from okta_sync.sync.sync_window import next_watermark, quiet_warning, stored_watermark

WATERMARK_KEY = "watermark"
log = logging.getLogger(__name__)


def read_watermark(store: Any, *, now: datetime | None = None) -> str | None:
    """The stored watermark, or None (a full listing) when there is none or it cannot be used (logged loudly)."""
    try:
        return stored_watermark(store.get(WATERMARK_KEY), now=now or datetime.now(timezone.utc))
    except UntrustedValueError as refused:
        log.warning("WATERMARK REFUSED, listing every user instead of the changed ones: %s. Someone may have "
                    "written the Asset state (or this worker's clock is behind Okta's: check NTP); the next complete "
                    "run stores a good one.", refused)
        return None


def was_dry_run(pushed: Any, decided_dry_run: bool) -> bool:
    """Whether the run wrote nothing to Okta: the push's own XCom says so, or the write mode decided now says so
    (an edited XCom can only keep the watermark, never advance it)."""
    flag = pushed.get("dry_run") if isinstance(pushed, dict) else None
    if not isinstance(flag, bool):
        log.warning("push_changes' XCom dry_run is missing or not a boolean: the run counts as a dry run")
        return True
    return flag or decided_dry_run


def _read_run_manifest(manifest_uri: str, *, dag_id: str, run_id: str, task_id: str) -> Manifest:
    from okta_sync.airflow.storage import open_for_read

    with open_for_read(manifest_uri) as file:
        manifest = read_manifest(file)
    check_users_manifest(manifest)
    producer = manifest.producer
    if (producer.dag_id, producer.run_id, producer.task_id) != (dag_id, run_id, task_id):
        raise ManifestError(f"manifest: producer is not this run's {task_id}")
    return manifest


@fail_fast
def commit_watermark(store: Any, manifest_uri: str, *, dag_id: str, run_id: str, partial_run: bool,
                     export_task_id: str = "export_users", now: datetime | None = None) -> dict[str, Any]:
    """Advance the stored watermark to the export's (its manifest's) after a complete, real run; keep it otherwise.
    A watermark later than now or than the export's end fails the task at once (UntrustedValueError)."""
    now = now or datetime.now(timezone.utc)
    stored = read_watermark(store, now=now)
    manifest = _read_run_manifest(manifest_uri, dag_id=dag_id, run_id=run_id, task_id=export_task_id)
    warning = quiet_warning(manifest, stored=stored, now=now)
    if warning:
        log.warning("QUIET ORG? %s", warning)
    if partial_run:
        log.info("Watermark kept at %s (a dry run, a changes feed or a run restricted to user ids)", stored)
        return {"watermark": stored, "advanced": False}
    new, why = next_watermark(manifest, stored=stored, now=now)
    if new is None:
        log.info("Watermark kept at %s (%s)", stored, why)
        return {"watermark": stored, "advanced": False}
    store.set(WATERMARK_KEY, new)
    log.info("Watermark advanced from %s to %s (%s, from the export's manifest)", stored, new, why)
    return {"watermark": new, "advanced": True}
