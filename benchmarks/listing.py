"""Target 1: listing throughput of `iter_users` and the export core against the floor and the official SDK.

Every contender pages the same dev org (over TLS, which the SDK insists on) in rotating order, round after round,
so the machine's noise hits them alike; the median pass of each is compared.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import ssl
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from benchmarks.orgs import OUTPUT, client_for
from okta_sync.config import READ_SCOPE
from okta_sync.sync.export import write_users_jsonl


@dataclass
class ListingResult:
    users: int
    rates: dict[str, list[float]] = field(default_factory=dict)  # contender -> users/s per pass
    profile_text: str = ""

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def ratio(self, name: str, reference: str) -> float:
        """Median over rounds of the ratio within a round: contenders of one round share the machine's mood."""
        return statistics.median(a / b for a, b in zip(self.rates[name], self.rates[reference]))


def floor_pass(org) -> int:
    """The floor: one keep-alive Session that GETs pages, follows Link and decodes JSON; nothing else."""
    with client_for(org) as client:
        token = client.get_token((READ_SCOPE,)).value
    session = requests.Session()
    session.trust_env = False
    session.verify = org.ca_bundle or True
    session.headers["Authorization"] = f"Bearer {token}"
    users = 0
    url = f"{org.url}/api/v1/users?limit=200"
    while url:
        response = session.get(url, timeout=60)
        response.raise_for_status()
        users += len(response.json())
        url = response.links.get("next", {}).get("url")
    session.close()
    return users


def iter_users_pass(org) -> int:
    with client_for(org) as client:
        client.get_token((READ_SCOPE,))  # the token is not what is measured
        return sum(1 for _ in client.iter_users())


def export_pass(org) -> int:
    path = OUTPUT / "listing-export.jsonl"
    with client_for(org) as client, open(path, "wb") as file:
        client.get_token((READ_SCOPE,))
        users = write_users_jsonl(client.list_users(), file).users
    path.unlink()
    return users


def sdk_config(org) -> dict:
    connection = org.connection
    return {
        "orgUrl": connection["org_url"], "authorizationMode": "PrivateKey", "clientId": connection["client_id"],
        "scopes": connection["scopes"], "privateKey": Path(connection["private_key_path"]).read_text(),
        "kid": connection["key_id"], "httpClient": trusting_http_client(connection["ca_bundle"]),
        "logging": {"enabled": False},
    }


def trusting_http_client(ca_bundle: str):
    """As in tests/devorg/test_okta_sdk.py: the SDK deep-copies its config, its httpClient hook takes a class."""
    from okta.http_client import HTTPClient

    context = ssl.create_default_context(cafile=ca_bundle)

    class TrustingHTTPClient(HTTPClient):
        def __init__(self, http_config=None):
            super().__init__({**(http_config or {}), "sslContext": context})

    return TrustingHTTPClient


def sdk_pages(org, on_page: Callable[[list], None]) -> None:
    """The SDK's documented paging: list_users(limit, after) and the next cursor from the Link header."""
    from okta.client import Client
    from okta.pagination import PaginationHelper

    async def run():
        client = Client(sdk_config(org))
        cursor = None
        while True:
            users, response, error = await client.list_users(limit=200, after=cursor)
            if error is not None:
                raise RuntimeError(f"SDK error: {error}")
            on_page(users)
            cursor = PaginationHelper.extract_next_cursor(response.headers)
            if cursor is None:
                return

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.run(run())


def sdk_pass(org) -> int:
    count = 0

    def on_page(users):
        nonlocal count
        count += len(users)

    sdk_pages(org, on_page)
    return count


CONTENDERS: dict[str, Callable] = {
    "floor": floor_pass, "iter_users": iter_users_pass, "export": export_pass, "sdk": sdk_pass,
}


def measure(org, users: int, rounds: int, log=print) -> ListingResult:
    result = ListingResult(users=users, rates={name: [] for name in CONTENDERS})
    names = list(CONTENDERS)
    for number in range(rounds):
        order = names[number % len(names):] + names[: number % len(names)]
        for name in order:
            began = time.perf_counter()
            count = CONTENDERS[name](org)
            elapsed = time.perf_counter() - began
            if count != users:
                raise RuntimeError(f"{name} listed {count} users, expected {users}")
            result.rates[name].append(count / elapsed)
            log(f"  listing round {number + 1}/{rounds} {name}: {count / elapsed:,.0f} users/s")
    result.profile_text = profile_iter_users(org)
    return result


def profile_iter_users(org, top: int = 18) -> str:
    """cProfile of one `iter_users` pass, sorted by own time: where the client spends per user."""
    with client_for(org) as client:
        client.get_token((READ_SCOPE,))
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in client.iter_users():
            pass
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()
