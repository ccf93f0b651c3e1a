"""Dev orgs for the benchmarks: a child process each (no shared GIL with the client), state under output/."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from include.okta_dev_org import DevOrgOptions, DevOrgProcess
from okta_sync import OktaClient, OktaConfig

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "output" / "benchmarks"


@contextlib.contextmanager
def dev_org(name: str, *, wait_serialised: bool = True, **options) -> Iterator[DevOrgProcess]:
    """A fresh dev org in a child process; waits until every user is pre-serialised so runs measure paging."""
    state_dir = OUTPUT / "orgs" / name
    shutil.rmtree(state_dir, ignore_errors=True)
    options.setdefault("rate_limit", 0)
    options.setdefault("concurrency_limit", 0)
    org = DevOrgProcess(DevOrgOptions(state_dir=state_dir, **options), startup_timeout=300).start()
    try:
        if wait_serialised:
            wait_until_serialised(org)
        yield org
    finally:
        org.stop()


def wait_until_serialised(org: DevOrgProcess, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        users = org.admin.stats()["users"]
        if users["serialised"] >= min(users["count"], users["cache_limit"]):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"dev org still serialising after {timeout} s: {users}")
        time.sleep(0.5)


def client_config(connection: dict, **overrides) -> OktaConfig:
    return OktaConfig(org_url=connection["org_url"], client_id=connection["client_id"],
                      private_key_path=connection["private_key_path"], key_id=connection["key_id"],
                      ca_bundle=connection.get("ca_bundle"), **overrides)


def client_for(org: DevOrgProcess, **overrides) -> OktaClient:
    return OktaClient(client_config(org.connection, **overrides))


def write_connection(org: DevOrgProcess, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(org.connection))
    return path
