"""Issue 12 part 2: a full-snapshot changes feed (every user, 1% differing) planned per row vs from one listing.

Each plan runs in its own plain Python process (peak RSS is its own) against an unthrottled dev org in a child
process: the wall time measured is the client's and the loopback's. What a real org's limits make of the same
requests is shown beside it: requests / the bucket's per-minute limit (600/min for users_list and user_read here).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from benchmarks.orgs import OUTPUT, ROOT, dev_org, write_connection

BUCKET_LIMIT = 600  # requests per minute in each of users_list and user_read
CHANGED_FRACTION = 0.01
USERS_GET = "GET /api/v1/users/{id}"
USERS_LIST = "GET /api/v1/users"
MMAP_THRESHOLD = 128 * 1024  # glibc's initial M_MMAP_THRESHOLD, kept fixed


@dataclass
class SnapshotRun:
    users: int
    strategy: str
    rows: int
    changes: int
    list_requests: int
    get_requests: int
    seconds: float
    peak_rss_mb: float
    peak_rss_fixed_mmap_mb: float | None = None  # the same plan with glibc's mmap threshold fixed

    @property
    def minutes_at_limit(self) -> float:
        return (self.list_requests + self.get_requests) / BUCKET_LIMIT


@dataclass
class ExportRun:
    """The DAG's partitioned export of the same org, in its own process (the listing without the join)."""

    users: int
    seconds: float
    peak_rss_mb: float
    peak_rss_fixed_mmap_mb: float


@dataclass
class SnapshotResult:
    runs: list[SnapshotRun] = field(default_factory=list)
    exports: list[ExportRun] = field(default_factory=list)

    def run(self, users: int, strategy: str) -> SnapshotRun | None:
        return next((r for r in self.runs if r.users == users and r.strategy == strategy), None)


def write_feed(org, path, chunk: int = 20_000) -> int:
    """A snapshot of the org keyed by id: every user's title, 1 in 100 changed. Returns the changes written."""
    changed = 0
    offset = 0
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["id", "title", "department"])
        while True:
            users = org.admin.users(offset=offset, limit=chunk)
            for user in users:
                profile = user["profile"]
                change = user["_dev"]["index"] % int(1 / CHANGED_FRACTION) == 0 and user["status"] != "DEPROVISIONED"
                changed += change
                writer.writerow([user["id"], "Snapshot title" if change else profile.get("title") or "",
                                 profile.get("department") or ""])
            if len(users) < chunk:
                return changed
            offset += chunk


def probe(strategy: str, org, feed_path, *, fixed_mmap_threshold: bool = False) -> dict:
    connection = write_connection(org, OUTPUT / "snapshot-connection.json")
    return _run_probe(["benchmarks.snapshot_probe", strategy, str(connection), str(feed_path)], fixed_mmap_threshold)


def export_probe(org, *, fixed_mmap_threshold: bool = False) -> dict:
    connection = write_connection(org, OUTPUT / "snapshot-connection.json")
    return _run_probe(["benchmarks.memory_probe", "partitioned_export", str(connection)], fixed_mmap_threshold)


def _run_probe(module_args: list[str], fixed_mmap_threshold: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if fixed_mmap_threshold:
        # A comparison: glibc raises its mmap threshold after freeing a large block, so large transient blocks
        # then come from the paging threads' heaps and fragment them (what okta_sync.users.pages avoids).
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    out = subprocess.run([sys.executable, "-m", *module_args], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: tuple[int, ...], per_row_up_to: int, log=print) -> SnapshotResult:
    result = SnapshotResult()
    for users in sizes:
        with dev_org(f"snapshot-{users}", users=users, messy_fraction=0.0) as org:
            feed_path = OUTPUT / f"snapshot-feed-{users}.csv"
            expected = write_feed(org, feed_path)
            strategies = ["auto"] + (["per_row"] if users <= per_row_up_to else [])
            for strategy in strategies:
                org.admin.reset_stats()
                measured = probe(strategy, org, feed_path)
                requests = org.admin.stats()["requests"]
                run = SnapshotRun(users, measured["strategy"], measured["rows"], measured["counts"].get("change", 0),
                                  requests.get(USERS_LIST, 0), requests.get(USERS_GET, 0), measured["seconds"],
                                  measured["peak_rss_mb"])
                if run.strategy == "listing":
                    run.peak_rss_fixed_mmap_mb = probe(strategy, org, feed_path, fixed_mmap_threshold=True)["peak_rss_mb"]
                if run.changes != expected:
                    raise AssertionError(f"{strategy} planned {run.changes} changes, the feed holds {expected}")
                result.runs.append(run)
                log(f"  snapshot {users:,} rows, {run.strategy}: {run.list_requests} list + {run.get_requests} "
                    f"single-user requests, {run.seconds:.1f} s, {run.minutes_at_limit:.1f} min at "
                    f"{BUCKET_LIMIT}/min, peak RSS {run.peak_rss_mb:.0f} MB"
                    + (f" ({run.peak_rss_fixed_mmap_mb:.0f} MB with a fixed mmap threshold)"
                       if run.peak_rss_fixed_mmap_mb else "") + f", {run.changes} changes")
            exported, fixed = export_probe(org), export_probe(org, fixed_mmap_threshold=True)
            export = ExportRun(exported["users"], exported["seconds"], exported["peak_rss_mb"], fixed["peak_rss_mb"])
            result.exports.append(export)
            log(f"  partitioned export of the same {export.users:,} users: {export.seconds:.1f} s, peak RSS "
                f"{export.peak_rss_mb:.0f} MB ({export.peak_rss_fixed_mmap_mb:.0f} MB with a fixed mmap threshold)")
    return result
