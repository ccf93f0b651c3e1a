"""Driving the core (no Airflow) through one sync against the dev org, and judging the result from the org's side.

    outcome = sync_once(org, read_timeout=0.5)      # export -> hygiene plan -> push, report kept in memory
    assert_converged(org, outcome)                  # every planned change applied or failed with a reason

Most fault tests use this (seconds per run); a couple of tests drive the DAG instead.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from okta_sync import OktaConfig
from okta_sync.sync.change_plan import plan_hygiene
from okta_sync.client import OktaClient
from okta_sync.sync.export import read_users_jsonl, write_users_jsonl
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.sync.reports import ReportStatus, report_writer

DEPROVISIONED = "DEPROVISIONED"


def client_config(org, **overrides: Any) -> OktaConfig:
    """The dev org's connection.json as an OktaConfig; short retry budgets so a broken fix fails fast."""
    c = org.connection
    settings = {"org_url": c["org_url"], "client_id": c["client_id"], "private_key_path": c["private_key_path"],
                "key_id": c["key_id"], "ca_bundle": c.get("ca_bundle"), "max_concurrency": 4, "max_attempts": 8,
                "max_retry_time": 120.0}
    settings.update(overrides)
    return OktaConfig(**settings)


@dataclass
class SyncOutcome:
    exported: int
    changes: list[ProfileChange]
    rows: list[dict[str, Any]]
    error: BaseException | None
    transport: dict[str, Any] = field(default_factory=dict)
    token_requests: int = 0

    def statuses(self) -> Counter:
        return Counter(row["status"] for row in self.rows)


def sync_once(org, *, client: OktaClient | None = None, push: bool = True, **config: Any) -> SyncOutcome:
    """Export every user, plan hygiene, push; never raises (a push that stopped is in `error`)."""
    own = client is None
    client = client or OktaClient(client_config(org, **config))
    try:
        export = io.BytesIO()
        result = write_users_jsonl(client.iter_user_pages(), export)
        export.seek(0)
        changes = [e for e in plan_hygiene(read_users_jsonl(export), Normalizer.default())
                   if isinstance(e, ProfileChange)]
        report = io.StringIO()
        writer = report_writer(report, "jsonl")
        error = None
        if push:
            try:
                push_changes(client, changes, writer, PushOptions(max_concurrency=client.config.max_concurrency))
            except Exception as exc:  # the report is still complete; the test judges both
                error = exc
        rows = [json.loads(line) for line in report.getvalue().splitlines()]
        metrics = client.metrics
        by_status = {int(name.rsplit(".", 1)[1]): int(count) for name, count in metrics.counters.items()
                     if name.startswith("api.status.")}
        return SyncOutcome(result.users, changes, rows, error,
                           {"requests": int(metrics.total("api.responses.")), "retries": metrics.count("api.retries"),
                            "rate_limited": metrics.count("api.rate_limited"),
                            "refreshes": metrics.count("token.refreshed_on_401"), "by_status": by_status},
                           client.token_requests)
    finally:
        if own:
            client.close()


def messy_active_users(org) -> dict[str, dict]:
    """Users whose profile hygiene would change, that a sync is allowed to touch (not DEPROVISIONED)."""
    normalizer = Normalizer.default()
    return {u["id"]: u for u in org.admin.users()
            if u["status"] != DEPROVISIONED and normalizer.normalize_profile(u["profile"]) != u["profile"]}


def assert_accounted(outcome: SyncOutcome) -> None:
    """Every attribute of every planned change has exactly one report row, and a failure says why."""
    planned = Counter((c.user_id, name) for c in outcome.changes for name in c.changes)
    reported = Counter((r["user_id"], r["attribute"]) for r in outcome.rows)
    assert reported == planned, f"missing {planned - reported}, extra {reported - planned}"
    for row in outcome.rows:
        if row["status"] in (ReportStatus.FAILED, ReportStatus.NOT_ATTEMPTED):
            assert row["reason"] or row["error_summary"], row


def assert_converged(org, outcome: SyncOutcome, before: dict[str, dict], posts_before: dict | None = None) -> None:
    """The org now holds exactly the normalised profiles of the users that were messy, everything else untouched,
    every change is reported applied (or unchanged), and no user got more than one POST."""
    normalizer = Normalizer.default()
    assert outcome.error is None, f"push stopped: {outcome.error!r}"
    assert_accounted(outcome)
    assert set(outcome.statuses()) <= {ReportStatus.APPLIED, ReportStatus.UNCHANGED}, outcome.statuses()
    after = {u["id"]: u for u in org.admin.users()}
    for uid, user in before.items():
        assert after[uid]["profile"] == normalizer.normalize_profile(user["profile"]), uid
    assert not messy_active_users(org)
    posts = post_counts(org, posts_before)
    assert set(posts) == set(before), "a user outside the plan was written, or a planned one was not"
    duplicates = {uid: n for uid, n in posts.items() if n > 1}
    assert not duplicates, f"users written more than once: {duplicates}"


def post_counts(org, before: dict | None = None) -> dict[str, int]:
    """POSTs per user since `before` (an earlier stats()['updates']), from the org's own counters."""
    before = before or {}
    counts = {}
    for uid, methods in org.admin.stats()["updates"].items():
        n = methods.get("POST", 0) - before.get(uid, {}).get("POST", 0)
        if n:
            counts[uid] = n
    return counts
