"""Operators for groups: thin wiring of OktaHook + `okta_sync.sync.group_export` + files + Assets.

    OktaExportGroupsOperator   every group, and the members of those that moved -> groups.jsonl.gz,
                               memberships.jsonl.gz, groups_manifest.json in the run folder
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

from airflow.sdk import Asset

from okta_sync.airflow.hooks import fail_fast
from okta_sync.airflow.operators import _OktaOperator, as_bool
from okta_sync.airflow.storage import open_for_write
from okta_sync.errors import ConfigurationError
from okta_sync.sync.group_export import (
    GROUPS_FILE,
    MANIFEST_FILE,
    MEMBERSHIPS_FILE,
    export_groups,
    parse_watermark,
)
from okta_sync.sync.progress import Progress
from okta_sync.timestamps import okta_timestamp

WATERMARK_STATE_KEY = "watermark"


class OktaExportGroupsOperator(_OktaOperator):
    """Export every group, and the full membership of each group whose `lastMembershipUpdated` moved since the
    watermark (all of them on the first run or with `full_refresh`), into `output_folder`.

    The watermark is read from the first outlet Asset's state (`watermark`), checked as an Okta timestamp; this
    operator never writes it: the DAG commits the returned `watermark` after the export succeeded, so a listing or
    member read that fails part-way leaves it where it was (and leaves no file: each is moved into place only
    once complete, the manifest last).

    :param output_folder: the run folder (`file://...`, `s3://...`); templated.
    :param full_refresh: read every group's members; templated.
    :param max_workers: groups whose members are read at once (default: the connection's `max_concurrency`).
    """

    template_fields: Sequence[str] = ("output_folder", "full_refresh")

    def __init__(self, *, output_folder: str, full_refresh: bool | str = False, max_workers: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_folder = output_folder
        self.full_refresh = full_refresh
        self.max_workers = max_workers

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        folder = str(self.output_folder).rstrip("/")
        if not folder:
            raise ConfigurationError("output_folder", "is empty")
        paths = {"groups": f"{folder}/{GROUPS_FILE}", "memberships": f"{folder}/{MEMBERSHIPS_FILE}",
                 "manifest": f"{folder}/{MANIFEST_FILE}"}
        full_refresh = as_bool(self.full_refresh, "full_refresh")
        watermark = None if full_refresh else self._stored_watermark(context)
        hook = self.okta_hook(context)
        exported_at = okta_timestamp(datetime.now(timezone.utc))
        self.log.info("Exporting groups to %s (%s)", folder,
                      "full" if watermark is None else f"members of groups changed after {watermark}")
        progress = Progress("group export", logger=self.log, headroom=lambda: hook.client.rate_limit_headroom())
        with hook.client.metrics.subscribed(progress), open_for_write(paths["groups"]) as groups_file, \
                open_for_write(paths["memberships"]) as memberships_file:
            result = export_groups(hook.client, groups_file, memberships_file, watermark=watermark,
                                   full_refresh=full_refresh, max_workers=self.max_workers, progress=progress)
        manifest = {**result.manifest(paths), "exported_at": exported_at}
        with open_for_write(paths["manifest"]) as file:
            file.write(json.dumps(manifest, indent=1).encode() + b"\n")
        summary = {**result.as_dict(), "paths": paths, "exported_at": exported_at}
        self.log.info("Exported %d groups (%s), %d memberships of %d groups read; next watermark %s", result.groups,
                      result.kind, result.memberships, len(result.groups_read), result.watermark)
        self._set_outlet_extra(context, summary)
        return summary

    def _stored_watermark(self, context: Any) -> str | None:
        asset = next((o for o in self.outlets if isinstance(o, Asset)), None)
        if asset is None:
            return None
        return parse_watermark(context["asset_state_store"][asset].get(WATERMARK_STATE_KEY))
