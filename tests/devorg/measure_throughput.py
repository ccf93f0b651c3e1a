"""Pages per second one keep-alive requests.Session gets from the dev org (run by hand, not by pytest).

    .venv/bin/python tests/devorg/measure_throughput.py --users 20000 [--parse] [--in-process]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_assertions import client_assertion, load_private_key, token_form  # noqa: E402
from include.okta_dev_org import DevOrg, DevOrgOptions, DevOrgProcess  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--parse", action="store_true", help="also json-decode every page on the client")
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    options = DevOrgOptions(users=args.users, state_dir=tempfile.mkdtemp(), rate_limit=0, concurrency_limit=0,
                            deprovisioned_fraction=0.0, tls=args.tls)
    started = time.perf_counter()
    org = (DevOrg if args.in_process else DevOrgProcess)(options).start()
    print(f"startup with {args.users} users: {time.perf_counter() - started:.1f} s")
    while org.admin.stats()["users"]["serialised"] < min(args.users, options.json_cache_limit):
        time.sleep(0.5)
    print(f"all users serialised after {time.perf_counter() - started:.1f} s")
    try:
        connection = org.connection
        key = load_private_key(connection["private_key_path"])
        session = requests.Session()
        session.trust_env = False
        session.verify = connection["ca_bundle"] or True
        token_url = f"{org.url}/oauth2/v1/token"
        token = session.post(token_url, data=token_form(client_assertion(
            key, connection["client_id"], token_url, kid=connection["key_id"])), timeout=10).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        for number in range(args.passes):
            pages = users = 0
            url = f"{org.url}/api/v1/users?limit=200"
            began = time.perf_counter()
            while url:
                response = session.get(url, timeout=30)
                response.raise_for_status()
                users += len(response.json()) if args.parse else response.content.count(b'"id":"00u')
                pages += 1
                url = response.links.get("next", {}).get("url")
            elapsed = time.perf_counter() - began
            print(f"pass {number + 1}: {pages} pages, {users} users in {elapsed:.2f} s = {pages / elapsed:.0f} pages/s")
    finally:
        org.stop()


if __name__ == "__main__":
    main()
