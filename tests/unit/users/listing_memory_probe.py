"""One partitioned listing in this fresh process, as the DAG's export or the snapshot plan reads it; prints the
process's peak RSS (VmHWM, MB) as JSON. Run by test_listing_memory.py.

    python tests/unit/users/listing_memory_probe.py export|pages CONNECTION_JSON
"""

from __future__ import annotations

import gzip
import json
import os
import sys


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(mode: str, connection_path: str) -> None:
    from okta_sync import OktaClient, OktaConfig
    from okta_sync.sync.export import write_users_jsonl

    connection = json.loads(open(connection_path).read())
    config = OktaConfig(org_url=connection["org_url"], client_id=connection["client_id"],
                        key_id=connection["key_id"], private_key_path=connection["private_key_path"])
    users = 0
    with OktaClient(config) as client:
        listing = client.list_users_partitioned(include_deprovisioned=True)
        if mode == "export":
            with open(os.devnull, "wb") as sink, gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1) as file:
                users = write_users_jsonl(listing.text_pages(), file).users
        else:
            for page in listing.pages():
                users += len(page)
    print(json.dumps({"users": users, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
