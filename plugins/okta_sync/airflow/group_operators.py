"""Operators for groups: thin wiring of OktaHook + `okta_sync.sync.group_export` + files + Assets.

    OktaExportGroupsOperator            every group, and the members of those that moved -> groups.jsonl.gz,
                                        memberships.jsonl.gz, groups_read.jsonl.gz, groups.manifest.json
    OktaPlanMembershipChangesOperator   a membership changes feed -> a plan (each row decided against the org)
    OktaPushMembershipChangesOperator   a plan -> membership PUT/DELETE -> a per-row report, journaled
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from airflow.sdk import Asset

from okta_sync.airflow.hooks import fail_fast
from okta_sync.airflow.operators import _OktaOperator, _optional, _producer, as_bool
from okta_sync.airflow.storage import open_for_write
from okta_sync.errors import ChangesFeedError, ConfigurationError, ManifestError
from okta_sync.sync.group_export import (
    GROUPS_FILE,
    MANIFEST_FILE,
    MEMBERSHIPS_FILE,
    READ_FILE,
    export_groups,
    parse_watermark,
)
from okta_sync.sync.progress import Progress
from okta_sync.timestamps import okta_timestamp, parse_okta_timestamp

WATERMARK_STATE_KEY = "watermark"
WATERMARK_SKEW = timedelta(minutes=5)  # the worker's clock against Okta's
log = logging.getLogger(__name__)


class OktaExportGroupsOperator(_OktaOperator):
    """Export every group, and the full membership of each group whose `lastMembershipUpdated` moved since the
    watermark (all of them on the first run or with `full_refresh`), into `output_folder`.

    The watermark is read from the first outlet Asset's state (`watermark`): a value that is not an Okta timestamp,
    or lies in the future (someone wrote the state), is refused with a warning and every group's members are read
    (safe, slower). This operator never writes it: `commit_group_watermark` commits the manifest's after the export
    succeeded, so a listing or member read that fails part-way leaves it where it was (and leaves no file: each is
    moved into place only once complete, the manifest last).

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
                 "groups_read": f"{folder}/{READ_FILE}", "manifest": f"{folder}/{MANIFEST_FILE}"}
        full_refresh = as_bool(self.full_refresh, "full_refresh")
        watermark = None if full_refresh else self._stored_watermark(context)
        hook = self.okta_hook(context)
        exported_at = okta_timestamp(datetime.now(timezone.utc))
        self.log.info("Exporting groups to %s (%s)", folder,
                      "full" if watermark is None else f"members of groups changed after {watermark}")
        progress = Progress("group export", logger=self.log, headroom=lambda: hook.client.rate_limit_headroom())
        with hook.client.metrics.subscribed(progress), open_for_write(paths["groups"]) as groups_file, \
                open_for_write(paths["memberships"]) as memberships_file, \
                open_for_write(paths["groups_read"]) as read_file:
            result = export_groups(hook.client, groups_file, memberships_file, read_file, watermark=watermark,
                                   full_refresh=full_refresh, max_workers=self.max_workers, progress=progress)
        # The manifest last, once the files are in place: the facts readers believe (not XCom or the event's extra)
        manifest = result.manifest(producer=_producer(context), exported_at=exported_at,
                                   finished_at=okta_timestamp(datetime.now(timezone.utc)))
        with open_for_write(paths["manifest"]) as file:
            file.write(manifest.to_json())
        summary = {**result.as_dict(), "paths": paths, "exported_at": exported_at}
        self.log.info("Exported %d groups (%s), %d memberships of %d groups read; next watermark %s", result.groups,
                      result.kind, result.memberships, len(result.groups_read), result.watermark)
        self._set_outlet_extra(context, summary)
        return summary

    def _stored_watermark(self, context: Any) -> str | None:
        asset = next((o for o in self.outlets if isinstance(o, Asset)), None)
        if asset is None:
            return None
        return read_group_watermark(context["asset_state_store"][asset])


def read_group_watermark(store: Any, *, now: datetime | None = None) -> str | None:
    """The stored watermark, or None (every group's members) when there is none or it cannot be used (logged
    loudly, never echoed): not an Okta timestamp, or later than now."""
    try:
        value = parse_watermark(store.get(WATERMARK_STATE_KEY))
    except ConfigurationError:
        log.warning("WATERMARK REFUSED, reading every group's members: the stored value is not an Okta timestamp. "
                    "Someone may have written the Asset state; the next complete run stores a good one.")
        return None
    if value is not None and parse_okta_timestamp(value) > (now or datetime.now(timezone.utc)) + WATERMARK_SKEW:
        log.warning("WATERMARK REFUSED, reading every group's members: the stored value is in the future.")
        return None
    return value


@fail_fast
def commit_group_watermark(store: Any, manifest_uri: str, *, dag_id: str, run_id: str,
                           export_task_id: str = "export_groups") -> dict[str, Any]:
    """Advance the stored watermark to the export's, read from its manifest in this run's folder (written by this
    run's export task: never from an XCom or an event's extra); keep it when that is not later."""
    from okta_sync.airflow.storage import open_for_read
    from okta_sync.sync.group_export import check_groups_manifest
    from okta_sync.sync.manifest import read_manifest

    stored = read_group_watermark(store)
    with open_for_read(manifest_uri) as file:
        manifest = read_manifest(file)
    check_groups_manifest(manifest)
    producer = manifest.producer
    if (producer.dag_id, producer.run_id, producer.task_id) != (dag_id, run_id, export_task_id):
        raise ManifestError(f"manifest: producer is not this run's {export_task_id}")
    new = manifest.watermark
    if new is None or (stored is not None and new <= stored):
        log.info("Watermark kept at %s (the export's: %s)", stored, new)
        return {"watermark": stored, "advanced": False}
    store.set(WATERMARK_STATE_KEY, new)
    log.info("Watermark advanced from %s to %s (from the export's manifest)", stored, new)
    return {"watermark": new, "advanced": True}


class OktaPlanMembershipChangesOperator(_OktaOperator):
    """A membership changes feed (CSV or JSON Lines: `group`, `user`, `action`) -> a plan file, each row decided
    against the org (see `okta_sync.sync.membership_changes`). Reads the feed only under the feed roots.

    :param changes_uri: the feed; templated.
    :param plan_uri: where the plan goes (JSON Lines); templated.
    :param feed_roots: URI prefixes a feed may be read from; default the Variable `okta_sync_feed_roots`, else the
        project's include/feeds/. Not templated.
    """

    template_fields: Sequence[str] = ("changes_uri", "plan_uri")

    def __init__(self, *, changes_uri: str, plan_uri: str, feed_roots: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.changes_uri = changes_uri
        self.plan_uri = plan_uri
        self.feed_roots = feed_roots

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        from okta_sync.airflow.storage import FEED_ROOTS_VARIABLE, feed_roots, open_within
        from okta_sync.sync.membership_changes import plan_membership_changes, read_membership_feed

        changes_uri = _optional(self.changes_uri)
        if changes_uri is None:
            raise ConfigurationError("changes_uri", "is required: the membership changes feed to apply")
        with open_within(changes_uri, feed_roots(self.feed_roots), what="changes_uri",
                         setting=FEED_ROOTS_VARIABLE) as feed:
            rows = read_membership_feed(feed)
        hook = self.okta_hook(context)
        counts: dict[str, int] = {}
        digest = hashlib.sha256()
        with open_for_write(self.plan_uri) as plan:
            for entry in plan_membership_changes(hook.client, rows):
                line = entry.to_json().encode("utf-8") + b"\n"
                digest.update(line)
                plan.write(line)
                counts[entry.status] = counts.get(entry.status, 0) + 1
        self.log.info("Planned %d feed row(s): %s; plan at %s", len(rows), counts, self.plan_uri)
        return {"path": self.plan_uri, "rows": len(rows), **counts, "sha256": digest.hexdigest()}


class OktaPushMembershipChangesOperator(_OktaOperator):
    """A membership plan -> `PUT`/`DELETE` memberships -> a per-row report (CSV). A retried task replays what its
    journal holds as applied and sends it no more. Holds `okta.groups.manage` only when it has something to write.

    :param plan_uri: the plan; templated.
    :param report_uri: the report (`.csv`); templated.
    :param dry_run: report what would change, change nothing; templated.
    :param run_folder: this run's folder; templated. When set, `plan_uri` (an XCom, which people with the right
        role can edit) is read only inside it; otherwise anywhere under the output root.
    """

    template_fields: Sequence[str] = ("plan_uri", "report_uri", "dry_run", "run_folder")

    def __init__(self, *, plan_uri: str, report_uri: str, dry_run: Any = False, run_folder: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_folder = run_folder
        self.plan_uri = plan_uri
        self.report_uri = report_uri
        self.dry_run = dry_run

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        from okta_sync.airflow.push_journal import PushJournal
        from okta_sync.airflow.storage import open_output_for_read, open_run_file, open_text_for_write
        from okta_sync.sync.membership_changes import (
            MAX_FEED_BYTES,
            MembershipEntry,
            read_bounded,
            push_membership_changes,
            write_report,
        )

        dry_run = as_bool(self.dry_run, "dry_run")
        run_folder = _optional(self.run_folder)
        with (open_run_file(self.plan_uri, run_folder, what="plan_uri") if run_folder
              else open_output_for_read(self.plan_uri, what="plan_uri")) as file:  # else only under the output root
            data = read_bounded(file, 4 * MAX_FEED_BYTES, what="plan_uri")  # a plan line adds ids to its feed row
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ChangesFeedError("plan_uri: not valid UTF-8 (not a membership plan)") from None
        entries = [MembershipEntry.from_json(line, n) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
        hook = self.okta_hook(context)
        journal = None if dry_run else PushJournal.for_report(self.report_uri, hashlib.sha256(data).hexdigest())
        self.log.info("Pushing %d membership change(s) (%s)%s", sum(e.status == "planned" for e in entries),
                      "DRY RUN" if dry_run else "applying",
                      f", {journal.replayable} already applied by an earlier try" if journal and journal.replayable
                      else "")
        with open_text_for_write(self.report_uri, keep_on_error=True) as text, \
                contextlib.closing(journal) if journal else contextlib.nullcontext():
            counts = write_report(push_membership_changes(
                hook.client, entries, dry_run=dry_run,
                done=(lambda e: _replayed(journal, e)) if journal else (lambda e: None),
                record=(lambda o: _record(journal, o)) if journal else (lambda o: None)), text)
        self.log.info("Membership push %s: %s; report at %s", "dry run" if dry_run else "done", counts,
                      self.report_uri)
        return {"report": self.report_uri, **counts, "dry_run": dry_run}


def _record(journal: Any, outcome: Any) -> None:
    """An applied change, in the push journal's own row form (group id in `attribute`, the action in `new`)."""
    from okta_sync.sync.reports import ReportRow, ReportStatus

    e = outcome.entry
    journal.record(str(e.line), [ReportRow(user_id=e.user_id, login=e.user, attribute=e.group_id, old=None,
                                           new=e.action, status=ReportStatus(outcome.status), source=e.group,
                                           line=e.line)])


def _replayed(journal: Any, entry: Any) -> Any:
    from okta_sync.sync.membership_changes import MembershipOutcome

    rows = journal.done(str(entry.line))
    if not rows or rows[0].attribute != entry.group_id or rows[0].user_id != entry.user_id:
        return None
    return MembershipOutcome(entry, str(rows[0].status))
