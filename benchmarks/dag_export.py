"""Issue 12 part 1: the DAG's full export (`partitions="auto"`, the connection's concurrency) against the ideal
client for each run's start, over `created` distributions and start seconds, plus the latency-bound regime.

Time may be compressed (`--quick`): the dev org's rate-limit windows and its latency are both divided by `compress`
(15 s windows and 125 ms for 4x), which also multiplies the weight of per-request CPU by `compress`; the full run
uses Okta's minute and 500 ms. Runs start at chosen offsets into a window the org has not counted anything in; the
ideal is computed for the same start (`benchmarks.bounds.windowed_bound`). On each org the first export probes (no
Asset state yet) and the later ones start their lanes from the hint the previous one left, as the DAG does.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from dataclasses import dataclass

from benchmarks.bounds import windowed_bound
from benchmarks.orgs import OUTPUT, client_for, dev_org
from benchmarks.partitioned import all_ids
from okta_sync.config import READ_SCOPE
from okta_sync.sync.export import write_users_jsonl
from okta_sync.sync.sync_window import ALL_USERS_SEARCH


@dataclass
class ExportRun:
    scenario: str
    distribution: str
    users: int
    offset: float  # seconds into the (compressed) window at which the run started
    elapsed: float  # compressed seconds
    bound: float
    requests: int
    pages_needed: int
    rate_limited: int
    duplicates: int
    missing: int
    partitions: str
    compress: int
    hinted: bool = False  # a repeat export: lanes from the previous export's created hint (the Asset state)

    @property
    def ratio(self) -> float:
        return self.elapsed / self.bound

    @property
    def label(self) -> str:
        return "repeat (hint)" if self.hinted else "first (probe)" if self.partitions == "auto" else "fixed"


def _wait_for_offset(org, offset: float, window: float) -> float:
    """Sleep until the next time `offset` seconds into an epoch-aligned window (at least 2 s away: the token and
    stats reset come first), then make the org forget what this window counted: the run meets a fresh window, as the
    ideal assumes."""
    now = time.time()
    target = math.floor(now / window) * window + offset
    while target < now + 2:
        target += window
    time.sleep(max(0.0, target - 1.5 - time.time()))
    org.admin.configure(forget_rate_limit_counts=True)  # the previous run's requests counted in this window
    time.sleep(max(0.0, target - time.time()))
    return time.time()


def export_once(org, workers: int, partitions, expected: dict[str, str], hint: dict | None = None, *,
                offset: float | None = None, window: float = 60.0) -> tuple[float, float, int, int, int, dict | None]:
    """One export as the DAG's task makes it (given the `created_hint` its Asset state holds from the previous full
    export, if any), started `offset` seconds into a fresh window when given; returns (start, elapsed, requests,
    duplicates, missing, the hint it leaves)."""
    path = OUTPUT / "dag-export.jsonl.gz"
    with client_for(org, max_concurrency=workers) as client:
        client.get_token((READ_SCOPE,))
        org.admin.reset_stats()
        if offset is not None:
            _wait_for_offset(org, offset, window)
        began = time.time()
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=5) as file:
            listing = client.list_users_partitioned(search=ALL_USERS_SEARCH, partitions=partitions,
                                                    include_deprovisioned=True, created_hint=hint)
            write_users_jsonl(listing.text_pages(), file)
        elapsed = time.time() - began
    requests = org.admin.stats()["requests"].get("GET /api/v1/users", 0)
    seen: dict[str, int] = {}
    with gzip.open(path, "rb") as file:
        for line in file:
            user_id = json.loads(line)["id"]
            seen[user_id] = seen.get(user_id, 0) + 1
    path.unlink()
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    return began, elapsed, requests, duplicates, len(set(expected) - set(seen)), listing.created_hint


def run_grid(users: int, limit: int, latency_ms: float, workers: int, compress: int, distributions: list[str],
             offsets: list[float], *, small_users: int, fixed_partitions: int | None = 8, include_small: bool = True,
             small_distributions: tuple[str, ...] = ("uniform",), log=print) -> list[ExportRun]:
    """Every distribution: a first export (probed) at the first start offset (fractions of a window), then a repeat
    export (lanes from the previous export's hint) at every offset; the latency-bound orgs (`small_distributions`) likewise
    at its first two;
    and the old fixed 8 windows beside them at the first offset."""
    window = 60 // compress
    latency = latency_ms / 1000 / compress
    runs: list[ExportRun] = []
    plan = [(d, users, offsets, "auto") for d in distributions]
    if include_small and small_users:
        plan += [(d, small_users, offsets[:2], "auto") for d in small_distributions]
    if fixed_partitions:
        plan.append(("uniform", users, offsets[:1], fixed_partitions))
    for distribution, count, starts, partitions in plan:
        with dev_org(f"dag-export-{distribution}-{count}", users=count, latency_ms=latency * 1000, rate_limit=0,
                     rate_limits={"users_list": limit}, concurrency_limit=75, rate_limit_window=window,
                     created_distribution=distribution) as org:
            expected = all_ids(org)
            pages_needed = math.ceil(len(expected) / 200)
            schedule = [(starts[0], False), *((fraction, True) for fraction in starts)] if partitions == "auto" \
                else [(fraction, False) for fraction in starts]
            hint = None
            for fraction, hinted in schedule:
                began, elapsed, requests, duplicates, missing, left = export_once(
                    org, workers, None if partitions == "auto" else partitions, expected, hint if hinted else None,
                    offset=fraction * window, window=window)
                hint = left or hint
                stats = org.admin.stats()
                bound = windowed_bound(pages_needed, began, limit, workers, latency, window=window)
                scenario = ("latency-bound" if pages_needed <= limit else "rate-bound") + (
                    "" if partitions == "auto" else f", fixed {partitions} windows (before)")
                run = ExportRun(scenario, distribution, len(expected), began % window, elapsed, bound, requests,
                                pages_needed, stats["rate_limited"]["rate_limit"] + stats["rate_limited"]["concurrency"],
                                duplicates, missing, str(partitions), compress, hinted)
                runs.append(run)
                log(f"  dag export {scenario} {distribution} {run.users} users, {run.label}, "
                    f"start {run.offset:.1f}/{window} s: "
                    f"{elapsed:.1f} s vs ideal {bound:.1f} s = {run.ratio:.2f}x; {requests} requests for "
                    f"{pages_needed} pages; 429s {run.rate_limited}; dup {duplicates} missing {missing}", flush=True)
    return runs
