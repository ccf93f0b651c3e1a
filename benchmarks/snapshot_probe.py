"""Plan one changes feed in this fresh process with a given lookup strategy; prints counts, time and peak RSS as JSON.

    python -m benchmarks.snapshot_probe per_row|listing|auto CONNECTION_JSON FEED_CSV
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks.memory_probe import own_peak_rss_mb


def main(strategy: str, connection_path: str, feed_path: str) -> None:
    from benchmarks.orgs import client_config
    from okta_sync import OktaClient
    from okta_sync.sync.change_plan import plan_changes_feed
    from okta_sync.sync.changes_feed import read_changes_feed
    from okta_sync.sync.plan_file import PlanWriter
    from okta_sync.sync.snapshot_plan import feed_lookup

    connection = json.loads(open(connection_path).read())
    with OktaClient(client_config(connection)) as client:
        client.get_token()  # the token is not what is measured
        began = time.perf_counter()
        with open(feed_path, "rb") as file, open(os.devnull, "w") as sink:
            feed = read_changes_feed(file, format="csv")
            with feed_lookup(client, feed.rows, strategy=strategy) as found, PlanWriter(sink) as writer:
                for entry in plan_changes_feed(feed, found.find_user, max_workers=found.max_workers):
                    writer.write(entry)
        seconds = time.perf_counter() - began
    print(json.dumps({"strategy": found.strategy, "rows": feed.rows, "counts": dict(writer.counts),
                      "seconds": seconds, "peak_rss_mb": own_peak_rss_mb(), **found.summary()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
