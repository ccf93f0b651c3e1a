"""Target 3: listing at the physical limit with partitioned extraction (latency and a users-list bucket)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from benchmarks.bounds import windowed_bound
from benchmarks.orgs import OUTPUT, client_for, dev_org
from okta_sync.config import READ_SCOPE
from okta_sync.sync.export import write_users_jsonl


@dataclass
class PartitionedResult:
    users: int
    pages_needed: int
    requests: int
    elapsed: float
    bound: float
    single_cursor: float
    rate_limited: int
    duplicates: int
    missing: int
    unexpected: int
    deprovisioned: int
    tokens_issued: int
    peak_concurrency: int
    workers: int
    partitions: int
    limit: int
    latency: float


def all_ids(org, chunk: int = 20_000) -> dict[str, str]:
    """{id: status} for every user in the org's state (DEPROVISIONED included), read in chunks."""
    ids: dict[str, str] = {}
    offset = 0
    while True:
        users = org.admin.users(offset=offset, limit=chunk)
        ids.update((u["id"], u["status"]) for u in users)
        if len(users) < chunk:
            return ids
        offset += chunk


def run(users: int, limit: int, latency_ms: float, workers: int, partitions: int, log=print) -> PartitionedResult:
    latency = latency_ms / 1000
    with dev_org("partitioned", users=users, latency_ms=latency_ms, rate_limit=0,
                 rate_limits={"users_list": limit}, concurrency_limit=75) as org:
        expected = all_ids(org)
        path = OUTPUT / "partitioned-export.jsonl"
        with client_for(org, max_concurrency=workers) as client:
            org.admin.reset_stats()
            began = time.time()
            client.get_token((READ_SCOPE,))
            with open(path, "wb") as file:
                pages = client.list_users_partitioned(partitions=partitions, max_workers=workers).text_pages()
                write_users_jsonl(pages, file)
            elapsed = time.time() - began
        stats = org.admin.stats()
        seen: dict[str, int] = {}
        with open(path, "rb") as file:
            for line in file:
                user_id = json.loads(line)["id"]
                seen[user_id] = seen.get(user_id, 0) + 1
        path.unlink()
    pages_needed = math.ceil(len(expected) / 200)
    requests = stats["requests"].get("GET /api/v1/users", 0)
    result = PartitionedResult(
        users=len(expected), pages_needed=pages_needed, requests=requests, elapsed=elapsed,
        bound=windowed_bound(pages_needed, began, limit, workers, latency),
        single_cursor=windowed_bound(pages_needed, began, limit, 1, latency), rate_limited=stats["rate_limited"]["rate_limit"]
        + stats["rate_limited"]["concurrency"],
        duplicates=sum(n - 1 for n in seen.values() if n > 1), missing=len(set(expected) - set(seen)),
        unexpected=len(set(seen) - set(expected)),
        deprovisioned=sum(1 for i in seen if expected.get(i) == "DEPROVISIONED"),
        tokens_issued=stats["tokens_issued"], peak_concurrency=stats["peak_concurrency"], workers=workers,
        partitions=partitions, limit=limit, latency=latency)
    log(f"  partitioned: {result.users} users, {requests} list requests in {elapsed:.1f} s; bound {result.bound:.1f} s;"
        f" 429s {result.rate_limited}; duplicates {result.duplicates}, missing {result.missing}")
    return result
