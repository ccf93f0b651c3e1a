"""Target 5 (client side): one token per scope set, whatever the threads, pages and partitions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks.orgs import client_for, dev_org


@dataclass
class TokenResult:
    threads: int
    pages: int
    tokens_issued: int
    scope_sets: int
    client_token_requests: int


def run(threads: int = 16, users: int = 2000, page: int = 20, log=print) -> TokenResult:
    with dev_org("tokens", users=users) as org, client_for(org, max_concurrency=threads) as client:
        org.admin.reset_stats()

        def list_all(_):
            return sum(1 for _ in client.iter_user_pages(limit=page))

        with ThreadPoolExecutor(threads) as pool:
            pages = sum(pool.map(list_all, range(threads)))
        pages += sum(1 for _ in client.iter_user_pages_partitioned(partitions=2 * threads, max_workers=threads))
        some = next(iter(client.iter_users(limit=5)))
        for _ in range(20):  # reads and writes: the manage scope is a second scope set
            client.get_user(some["id"])
        client.update_profile(some["id"], {"title": "Token economy"})
        stats = org.admin.stats()
        result = TokenResult(threads, pages + 22, stats["tokens_issued"], 2, client.token_requests)
    log(f"  tokens: {result.pages} requests from {threads} threads -> {result.tokens_issued} tokens for 2 scope sets")
    return result
