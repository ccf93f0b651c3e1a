"""Operators: thin wiring of OktaHook + core + files (ObjectStoragePath) + Assets. XCom carries counts and paths.

    OktaTokenOperator              mints the DAG run's tokens once and hands them on sealed (one token per run)
    OktaExportUsersOperator        users -> JSON Lines (gzip optional), streamed page by page
    OktaPlanProfileChangesOperator export (hygiene) or a changes feed -> plan file
    OktaPushProfileChangesOperator plan file -> partial updates -> per-change report
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import Asset, BaseOperator

from okta_sync.sync.change_plan import Skipped, plan_changes_feed, plan_hygiene
from okta_sync.sync.changes_feed import MAX_FEED_BYTES, read_changes_feed
from okta_sync.config import MANAGE_SCOPE, READ_SCOPE
from okta_sync.errors import ConfigurationError, LocationError, PushFailedError
from okta_sync.sync.export import INCREMENTAL, check_export_kind, read_users_jsonl, users_manifest, write_users_jsonl
from okta_sync.sync.manifest import MAX_SEARCH_LENGTH, DigestWriter, Producer, manifest_name, manifest_uri
from okta_sync.airflow.hooks import DEFAULT_TOKEN_TASK_ID, OktaHook, fail_fast
from okta_sync.sync.plan_file import PlanWriter, read_plan
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.sync.progress import Progress
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.airflow.push_journal import PushJournal
from okta_sync.airflow.storage import (
    FEED_ROOTS_VARIABLE,
    feed_roots,
    open_for_read,
    open_for_write,
    open_run_file,
    open_text_for_write,
    open_within,
    storage_path,
)
from okta_sync.sync.reports import ReportStatus, report_writer, rows_for_plan_entry
from okta_sync.sync.snapshot_plan import AUTO, STRATEGIES, feed_lookup
from okta_sync.timestamps import okta_timestamp
from okta_sync.users.partition_stealing import parse_created_hint


def as_bool(value: Any, name: str) -> bool:
    """Templated fields render as text unless the DAG renders native objects: accept both."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "none", ""):
        return False
    raise ConfigurationError(name, "is not a boolean (true or false)")


def as_optional_list(value: Any, name: str) -> list[str] | None:
    if value in (None, "", "None", []):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [v for v in text.replace(",", " ").split() if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(name, "expected a list of strings")
    return list(value) or None


def _optional(value: Any) -> Any:
    return None if value in (None, "", "None") else value


class _OktaOperator(BaseOperator):
    """Shared wiring: the hook is built inside `execute`, never at DAG parse time."""

    ui_color = "#e8f0fe"

    def __init__(self, *, okta_conn_id: str = OktaHook.default_conn_name,
                 token_task_id: str | None = DEFAULT_TOKEN_TASK_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.okta_conn_id = okta_conn_id
        self.token_task_id = token_task_id

    def okta_hook(self, context: Any, **overrides: Any) -> OktaHook:
        hook = OktaHook(self.okta_conn_id, **overrides)
        if self.token_task_id and self.token_task_id in self.dag.task_ids:
            hook.join_run(context, token_task_id=self.token_task_id)
        return hook

    def _set_outlet_extra(self, context: Any, extra: dict[str, Any]) -> None:
        for outlet in self.outlets:
            with contextlib.suppress(Exception):
                context["outlet_events"][outlet].extra = extra


class OktaTokenOperator(_OktaOperator):
    """Mint this DAG run's access tokens once and hand them to every Okta task of the run, sealed.

    :param scope_sets: scope sets to mint now; by default the read scope only (writers mint the manage scope when,
        and only when, they have something to write).
    """

    template_fields: Sequence[str] = ("scope_sets",)

    def __init__(self, *, scope_sets: Iterable[Iterable[str]] = ((READ_SCOPE,),), **kwargs: Any) -> None:
        kwargs.setdefault("task_id", DEFAULT_TOKEN_TASK_ID)
        super().__init__(token_task_id=None, **kwargs)
        self.scope_sets = [list(s) for s in scope_sets]

    @fail_fast
    def execute(self, context: Any) -> list[dict[str, Any]]:
        hook = OktaHook(self.okta_conn_id).join_run(context, token_task_id=self.task_id)
        published = hook.mint_run_tokens(self.scope_sets)
        self.log.info("Minted %d token(s) for this run: %s", len(published), [" ".join(p["scopes"]) for p in published])
        return published


class OktaExportUsersOperator(_OktaOperator):
    """Export users to JSON Lines (one user per line; `.gz` compresses), streamed page by page.

    :param output_uri: where to write (`file://...`, `s3://...` with the provider installed); templated.
    :param search: Okta `search` expression (includes DEPROVISIONED users); templated.
    :param filter: Okta `filter` expression; templated.
    :param partitions: page disjoint `created` windows concurrently (bounded by the connection's
        `max_concurrency`) instead of one cursor: the way to reach the rate limit when latency bounds a single
        cursor. `"auto"` lets the client decide (windows split while they are paged, whenever a worker goes idle);
        a number fixes the windows. The same users are exported either way (DEPROVISIONED only with a `search`);
        not with `filter`. With `"auto"`, a complete export leaves a `created` hint (quantiles of the users'
        `created`, and their count) in its first outlet Asset's state under `created_hint`; the next `"auto"`
        export of the same `search` starts its lanes there at once instead of after a probe round trip.
    :param kind: what the export holds, for its readers: `full` (every user of every status: it defines the
        population, so users missing from it were deleted; only with `search=ALL_USERS_SEARCH` and no filter, else
        the task fails at once), `incremental` (changed users only, the default) or `user_ids`; templated.

    Once the export file is complete, a manifest is written beside it (`users.jsonl.gz` -> `users.manifest.json`,
    see okta_sync.sync.manifest): this task instance, kind, search, exported_at, finished_at, watermark, counts
    and the SHA-256 and length of the file's content. Readers believe the manifest, not the XCom or the Asset
    event's extra, which people can write too.
    """

    template_fields: Sequence[str] = ("output_uri", "search", "filter", "partitions", "kind")

    def __init__(self, *, output_uri: str, search: str | None = None, filter: str | None = None,
                 partitions: int | str | None = None, kind: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if partitions is not None and not _is_template(partitions):
            _check_partitions(partitions, filter)
        self.output_uri = output_uri
        self.search = search
        self.filter = filter
        self.partitions = partitions
        self.kind = kind

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        # search, partitions and kind are rendered from select_users' XCom, which people can edit: checked first
        search, filter_ = _optional(self.search), _optional(self.filter)
        for name, value in (("search", search), ("filter", filter_)):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_SEARCH_LENGTH):
                raise ConfigurationError(name, f"must be text of at most {MAX_SEARCH_LENGTH} characters")
        partitions = _optional(self.partitions)
        partitions = _check_partitions(partitions, filter_) if partitions is not None else None
        kind = _optional(self.kind) or INCREMENTAL
        check_export_kind(kind, search, filter_)  # `full` only for the listing of every user
        hook = self.okta_hook(context)
        self.log.info("Exporting users to %s (search=%r, filter=%r, partitions=%s)", self.output_uri, search, filter_,
                      partitions)
        exported_at = okta_timestamp(datetime.now(timezone.utc))  # before the first page: the snapshot's time
        progress = Progress("export", logger=self.log, headroom=lambda: hook.client.rate_limit_headroom())
        hint_store = self._hint_store(context) if partitions == AUTO_PARTITIONS else None
        if partitions:
            users = hook.client.list_users_partitioned(
                search=search, partitions=None if partitions == AUTO_PARTITIONS else partitions,
                include_deprovisioned=search is not None, created_hint=self._read_hint(hint_store, search))
        else:
            users = hook.list_users(search=search, filter=filter_)
        # the progress log hears of rate-limit waits while they last
        with open_for_write(self.output_uri) as file, hook.client.metrics.subscribed(progress):
            content = DigestWriter(file)  # the content's SHA-256, in the pass that writes it
            result = write_users_jsonl(users, content, progress=progress)
        # The manifest last, once the export is in place: the facts readers believe (not an XCom or an event's extra)
        manifest = users_manifest(producer=_producer(context), kind=kind, search=search, exported_at=exported_at,
                                  finished_at=okta_timestamp(datetime.now(timezone.utc)), result=result,
                                  file=content.digest(self.output_uri.rpartition("/")[2]))
        with open_for_write(manifest_uri(self.output_uri)) as file:
            file.write(manifest.to_json())
        summary = {"path": self.output_uri, "manifest": manifest_uri(self.output_uri), **result.as_dict()}
        self.log.info("Exported %d users in %d pages to %s (content SHA-256 %s)", result.users, result.pages,
                      self.output_uri, manifest.files[0].content_sha256)
        if hint_store is not None:
            self._write_hint(hint_store, search, users.created_hint)
        self._set_outlet_extra(context, {"users": result.users, "path": self.output_uri, "kind": kind,
                                         "exported_at": exported_at, "watermark": result.max_last_updated,
                                         "pages": result.pages, "by_status": dict(result.by_status),
                                         "manifest": manifest_name(self.output_uri.rpartition("/")[2])})
        return summary


    def _hint_store(self, context: Any) -> Any:
        """The state of the first outlet Asset, where the `created` hint lives; None without one."""
        asset = next((o for o in self.outlets if isinstance(o, Asset)), None)
        if asset is None:
            return None
        try:
            return context["asset_state_store"][asset]
        except (KeyError, TypeError):
            return None

    def _read_hint(self, store: Any, search: str | None) -> dict[str, Any] | None:
        """The hint the last complete export of the same `search` left; a missing or unreadable one means a probe
        (it only balances the first lanes: never a reason to fail the export)."""
        if store is None:
            return None
        try:
            stored = store.get(HINT_STATE_KEY)
        except Exception:  # the state store is an optimisation here; its failure is logged, not raised
            self.log.warning("Could not read the Asset state %r; probing the org instead", HINT_STATE_KEY)
            return None
        if not isinstance(stored, dict) or stored.get("search") != (search or ""):
            return None
        hint = parse_created_hint(stored.get("hint"))
        if hint is None:
            self.log.warning("Ignored the Asset state %r: not a created hint; probing the org instead", HINT_STATE_KEY)
        else:
            self.log.info("First lanes start at the created quantiles of the last full export (%d users)",
                          hint["users"])
        return hint

    def _write_hint(self, store: Any, search: str | None, hint: dict[str, Any] | None) -> None:
        if hint is None:
            return
        try:
            store.set(HINT_STATE_KEY, {"search": search or "", "hint": hint})
        except Exception:  # as above: the next export probes
            self.log.warning("Could not write the Asset state %r; the next export will probe the org", HINT_STATE_KEY)


AUTO_PARTITIONS = "auto"
MAX_PARTITIONS = 1000
HINT_STATE_KEY = "created_hint"


def _producer(context: Any) -> Producer:
    """This task instance, as the manifest names it (readers match it against the Asset event's source)."""
    ti = context["ti"]
    return Producer(dag_id=ti.dag_id, run_id=context["run_id"], task_id=ti.task_id,
                    try_number=int(getattr(ti, "try_number", None) or 1))


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _check_partitions(partitions: int | str, filter_: str | None) -> int | str:
    if partitions != AUTO_PARTITIONS:
        try:
            partitions = int(partitions)
        except (TypeError, ValueError):
            raise ConfigurationError("partitions", 'must be "auto" or a whole number') from None
        if not 1 <= partitions <= MAX_PARTITIONS:  # each window costs requests; an edited XCom may say 10**9
            raise ConfigurationError("partitions", f"must be from 1 to {MAX_PARTITIONS}")
    if filter_ is not None:
        raise ConfigurationError("partitions", "page `search` windows; they cannot combine with a `filter`")
    return partitions


class OktaPlanProfileChangesOperator(_OktaOperator):
    """Plan profile changes: hygiene over an export, or desired values from a changes feed (CSV / JSON Lines).

    :param plan_uri: where the plan file goes; templated.
    :param users_uri: a users export (hygiene: normalise Okta's own profiles); templated.
    :param changes_uri: a changes feed keyed by `id` or `login`; when set, it is planned instead; templated.
    :param user_ids: restrict the plan to these user ids; templated.
    :param normalization: normalisation rules (dict or JSON), see `Normalizer.from_config`; templated.
    :param feed_roots: URI prefixes a changes feed may be read from (a list or JSON list); default the Airflow
        Variable `okta_sync_feed_roots`, else the project's include/feeds/. Not templated, so a trigger's conf
        cannot widen it. A feed elsewhere (or reached through a symlink or `..` out of a root) fails the task
        at once, without retries.
    :param feed_lookup: how a changes feed's rows find their users: "per_row" (one read each), "listing" (one
        listing of the org, joined on disk) or "auto" (by cost: large feeds such as full snapshots list).
    :param max_feed_bytes: a changes feed larger than this is refused, before reading when its size is known
        (default 1 GiB).
    :param run_folder: this run's folder (`okta_run_folder(...)`); templated. When set, `users_uri` is read only
        inside it: set it whenever `users_uri` comes from an XCom, which people with the right role can edit.
    """

    template_fields: Sequence[str] = ("plan_uri", "users_uri", "changes_uri", "user_ids", "normalization",
                                      "run_folder")

    def __init__(self, *, plan_uri: str, users_uri: str | None = None, changes_uri: str | None = None,
                 user_ids: Any = None, normalization: Any = None, changes_format: str | None = None,
                 feed_roots: Any = None, feed_lookup: str = AUTO, max_feed_bytes: int = MAX_FEED_BYTES,
                 run_folder: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_feed_bytes = max_feed_bytes
        self.run_folder = run_folder
        if feed_lookup not in STRATEGIES:
            raise ConfigurationError("feed_lookup", f"must be one of {', '.join(STRATEGIES)}")
        self.feed_lookup = feed_lookup
        self.feed_roots = feed_roots
        self.plan_uri = plan_uri
        self.users_uri = users_uri
        self.changes_uri = changes_uri
        self.user_ids = user_ids
        self.normalization = normalization
        self.changes_format = changes_format

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        normalizer = Normalizer.from_config(_optional(self.normalization))
        only = as_optional_list(self.user_ids, "user_ids")
        changes_uri, users_uri = _optional(self.changes_uri), _optional(self.users_uri)
        if not changes_uri and not users_uri:
            raise ConfigurationError("users_uri", "plan needs users_uri (hygiene) or changes_uri (a changes feed)")
        counts: dict[str, int] = {}
        found = None
        with contextlib.ExitStack() as stack:
            if changes_uri:
                source = f"changes feed {changes_uri}"
                feed_file = stack.enter_context(open_within(  # LocationError: not retried (fail_fast)
                    changes_uri, feed_roots(self.feed_roots), what="changes_uri", setting=FEED_ROOTS_VARIABLE))
                fmt = self.changes_format or ("jsonl" if ".jsonl" in changes_uri or ".ndjson" in changes_uri else
                                             "csv" if ".csv" in changes_uri else None)
                feed = read_changes_feed(feed_file, format=fmt, normalizer=normalizer,
                                         max_feed_bytes=self.max_feed_bytes)
                hook = self.okta_hook(context)
                # A large feed (a full snapshot) is planned from one listing, a small one row by row: by cost.
                found = stack.enter_context(feed_lookup(hook.client, feed.rows, strategy=self.feed_lookup))
                entries = plan_changes_feed(feed, found.find_user, max_workers=found.max_workers)
            else:
                source = f"users export {users_uri}"
                users = read_users_jsonl(stack.enter_context(_open_run_file(users_uri, self.run_folder, "users_uri")))
                entries = plan_hygiene(users, normalizer)
            if only is not None:
                wanted = set(only)
                entries = (e for e in entries if getattr(e, "user_id", None) in wanted)
            metadata = {"source": source, "dag_id": context["dag"].dag_id, "run_id": context["run_id"]}
            _refuse_another_runs_plan(self.plan_uri, metadata)
            with open_text_for_write(self.plan_uri) as text, PlanWriter(text, metadata=metadata) as writer:
                for entry in entries:
                    writer.write(entry)
            counts = dict(writer.counts)
        summary = {"path": self.plan_uri, "change": counts.get("change", 0), "skipped": counts.get("skipped", 0),
                   "unchanged": counts.get("unchanged", 0), **(found.summary() if found is not None else {})}
        self.log.info("Planned from %s: %s", source, summary)
        return summary


def _open_run_file(uri: str, run_folder: Any, what: str) -> Any:
    """A file an earlier task wrote: only inside `run_folder` when the DAG gives it (the path came from an XCom)."""
    return open_run_file(uri, run_folder, what=what) if _optional(run_folder) else open_for_read(uri)


def _refuse_another_runs_plan(plan_uri: str, metadata: dict[str, Any]) -> None:
    """A plan file of another run at `plan_uri` means the runs share a folder: fail rather than overwrite it."""
    path = storage_path(plan_uri)
    if not path.exists():
        return
    with path.open("rb") as file:
        first = file.readline(64 * 1024)
    try:
        owner = json.loads(first).get("metadata") or {}
    except (ValueError, AttributeError):
        return  # not a plan we wrote: replaced as before
    if (owner.get("dag_id"), owner.get("run_id")) != (metadata["dag_id"], metadata["run_id"]):
        raise LocationError(f"{plan_uri} holds the plan of another DAG run; a run never reuses another run's "
                            f"folder (name run folders with okta_sync.airflow.storage.run_folder_uri)")


WRITE_MODE_VARIABLE = "okta_sync_write_mode"
WRITE_MODES = ("dry_run", "apply")


def decide_write_mode(dry_run: bool, run_type: Any, write_mode: str | None, variable: str = WRITE_MODE_VARIABLE
                      ) -> tuple[bool, str]:
    """(dry_run, why): a manual run follows its `dry_run` param; any other run (scheduled, backfill, asset
    triggered) writes to Okta only once the operator has set the Variable to `apply`: unpausing is not consent."""
    run_type = str(getattr(run_type, "value", run_type) or "unknown")
    if run_type == "manual":
        return dry_run, f"manual run with dry_run={dry_run}"
    mode = (write_mode or "dry_run").strip().lower()
    if mode not in WRITE_MODES:
        raise ConfigurationError(
            variable, f"the Airflow Variable must be one of {', '.join(WRITE_MODES)} ('apply' lets scheduled runs "
                      f"write to Okta)")
    if mode == "apply":
        return dry_run, f"{run_type} run, Variable {variable}=apply"
    current = "unset" if write_mode is None else repr(mode)
    return True, (f"{run_type} run, Variable {variable} is {current}: "
                  f"nothing is written to Okta until it is set to 'apply'")


class OktaPushProfileChangesOperator(_OktaOperator):
    """Apply a plan with partial updates (`POST /api/v1/users/{id}`), and write a per-change report.

    :param plan_uri: the plan file; templated.
    :param report_uri: the report (`.csv` or `.jsonl`); templated.
    :param dry_run: write the report, change nothing; templated.
    :param max_concurrency: updates in flight at once; templated. Default: adaptive, starting at the connection's
        max_concurrency and following the update bucket's limit and the observed latency (Little's law), capped
        well below Okta's concurrent-request limit.
    :param fail_on_errors: fail the task (after writing the whole report) if any change failed.
    :param write_mode_variable: runs that nobody triggered by hand are dry runs until this Variable is `apply`
        (see `decide_write_mode`); None: always follow `dry_run`.
    :param run_folder: this run's folder; templated. When set, `plan_uri` is read only inside it (set it whenever
        `plan_uri` comes from an XCom).
    """

    template_fields: Sequence[str] = ("plan_uri", "report_uri", "dry_run", "max_concurrency", "run_folder")

    def __init__(self, *, plan_uri: str, report_uri: str, dry_run: Any = False, max_concurrency: Any = None,
                 fail_on_errors: bool = True, write_mode_variable: str | None = WRITE_MODE_VARIABLE,
                 run_folder: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_folder = run_folder
        self.write_mode_variable = write_mode_variable
        self.plan_uri = plan_uri
        self.report_uri = report_uri
        self.dry_run = dry_run
        self.max_concurrency = max_concurrency
        self.fail_on_errors = fail_on_errors

    @fail_fast
    def execute(self, context: Any) -> dict[str, Any]:
        dry_run = as_bool(self.dry_run, "dry_run")
        if self.write_mode_variable:
            from airflow.sdk import Variable

            dry_run, why = decide_write_mode(dry_run, getattr(context.get("dag_run"), "run_type", None),
                                             Variable.get(self.write_mode_variable, default=None),
                                             self.write_mode_variable)
            self.log.info("Mode: %s (%s)", "DRY RUN" if dry_run else "APPLY, writing to Okta", why)
        with _open_run_file(self.plan_uri, self.run_folder, "plan_uri") as plan_file:
            plan = read_plan(plan_file)
            hook = self.okta_hook(context)
            fixed = _optional(self.max_concurrency)
            concurrency = int(fixed or hook.config.max_concurrency)
            fmt = "jsonl" if ".jsonl" in self.report_uri else "csv"
            journal = PushJournal.for_report(self.report_uri, plan.sha256)
            progress = Progress("push", logger=self.log, total=plan.counts.get("change"),
                                headroom=lambda: hook.client.rate_limit_headroom())
            with open_text_for_write(self.report_uri, keep_on_error=True) as text, contextlib.closing(journal), \
                    hook.client.metrics.subscribed(progress):  # the progress log hears of rate-limit waits
                writer = report_writer(text, fmt)
                for entry in plan:
                    if isinstance(entry, Skipped):
                        writer.write_all(rows_for_plan_entry(entry))
                push_changes(hook.client, plan.changes(), writer,
                             PushOptions(dry_run=dry_run, max_concurrency=concurrency, adaptive=fixed is None),
                             journal=journal if not dry_run else None, progress=progress)
        summary = writer.summary.as_dict()
        self.log.info("Push %s: %s; report at %s", "dry run" if dry_run else "done", summary, self.report_uri)
        self._set_outlet_extra(context, {"report": self.report_uri, **summary})
        # The mode last: the summary's own "dry_run" (rows with that status) must not overwrite it.
        result = {"report": self.report_uri, **summary, "dry_run": dry_run}
        if self.fail_on_errors and summary.get(str(ReportStatus.FAILED)):
            raise PushFailedError(f"{summary[str(ReportStatus.FAILED)]} change(s) failed; see the report {self.report_uri}")
        return result


__all__ = [
    "OktaExportUsersOperator",
    "OktaPlanProfileChangesOperator",
    "OktaPushProfileChangesOperator",
    "OktaTokenOperator",
    "MANAGE_SCOPE",
    "WRITE_MODE_VARIABLE",
    "decide_write_mode",
]
