"""One export (or the SDK's collect-all pattern) in this fresh process; prints its peak RSS as JSON.

    python -m benchmarks.memory_probe export|partitioned_export|sdk CONNECTION_JSON
    python -m benchmarks.memory_probe storage_export CONNECTION_JSON URI

`partitioned_export` is the DAG's export: a partitioned listing (8 workers) gzipped as `dag_export.export_once` does.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def own_peak_rss_mb() -> float:
    """VmHWM: this process's own high-water mark. ru_maxrss would carry the parent's peak across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(mode: str, connection_path: str) -> None:
    connection = json.loads(open(connection_path).read())
    began = time.perf_counter()
    if mode == "export":
        from benchmarks.orgs import client_config
        from okta_sync import OktaClient
        from okta_sync.sync.export import write_users_jsonl

        with OktaClient(client_config(connection)) as client, open(os.devnull, "wb") as sink:
            users = write_users_jsonl(client.list_users(), sink).users
    elif mode == "partitioned_export":
        import gzip

        from benchmarks.orgs import client_config
        from okta_sync import OktaClient
        from okta_sync.sync.export import write_users_jsonl
        from okta_sync.sync.sync_window import ALL_USERS_SEARCH

        with OktaClient(client_config(connection, max_concurrency=8)) as client, open(os.devnull, "wb") as sink, \
                gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=5) as file:
            pages = client.list_users_partitioned(search=ALL_USERS_SEARCH, include_deprovisioned=True).text_pages()
            users = write_users_jsonl(pages, file).users
    elif mode == "storage_export":  # the DAG's export task's writing: okta_sync.airflow.storage, local or S3
        from benchmarks.orgs import client_config
        from okta_sync import OktaClient
        from okta_sync.airflow.storage import open_for_write, storage_path
        from okta_sync.sync.export import write_users_jsonl
        from okta_sync.sync.sync_window import ALL_USERS_SEARCH

        uri = sys.argv[3]
        began, cpu = time.perf_counter(), time.process_time()
        with OktaClient(client_config(connection, max_concurrency=8)) as client, open_for_write(uri) as file:
            pages = client.list_users_partitioned(search=ALL_USERS_SEARCH, include_deprovisioned=True).text_pages()
            users = write_users_jsonl(pages, file).users
        seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
        size = storage_path(uri).stat().st_size
        print(json.dumps({"mode": mode, "users": users, "peak_rss_mb": own_peak_rss_mb(), "seconds": seconds,
                          "cpu_seconds": cpu_seconds, "bytes": size}))
        return
    elif mode == "sdk":
        from benchmarks.listing import sdk_pages

        class Org:
            url, ca_bundle = connection["org_url"], connection["ca_bundle"]

        Org.connection = connection
        collected: list = []
        sdk_pages(Org, collected.extend)  # the SDK's documented pattern: every page's users in one list
        users = len(collected)
    else:
        raise SystemExit(f"unknown mode {mode}")
    peak_mb = own_peak_rss_mb()
    print(json.dumps({"mode": mode, "users": users, "peak_rss_mb": peak_mb, "seconds": time.perf_counter() - began}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
