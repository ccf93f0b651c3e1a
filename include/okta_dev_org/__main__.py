"""`python -m include.okta_dev_org`: run the dev org until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from .options import BUCKETS, CREATED_DISTRIBUTIONS, DevOrgOptions


def parse_args(argv: list[str] | None = None) -> DevOrgOptions:
    d = DevOrgOptions()
    p = argparse.ArgumentParser(prog="python -m include.okta_dev_org",
                                description="A local, strict simulator of an Okta org's token endpoint and Users API.")
    p.add_argument("--host", default=d.host, help="interface to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port; 0 picks a free one (default %(default)s)")
    p.add_argument("--state-dir", default=str(d.state_dir), help="keys, certificates, connection.json, ready.json")
    p.add_argument("--users", type=int, default=d.users, help="number of seeded users (default %(default)s)")
    p.add_argument("--groups", type=int, default=d.groups,
                   help="number of seeded groups, Everyone included (default %(default)s)")
    p.add_argument("--group-memberships", type=int, default=None,
                   help="total seeded memberships outside Everyone (default: realistic group sizes)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for users and faults (default %(default)s)")
    p.add_argument("--messy-fraction", type=float, default=d.messy_fraction,
                   help="fraction of users with values a conservative normaliser would fix")
    p.add_argument("--deprovisioned-fraction", type=float, default=d.deprovisioned_fraction,
                   help="fraction of DEPROVISIONED users")
    p.add_argument("--other-status-fraction", type=float, default=d.other_status_fraction,
                   help="fraction spread over STAGED, PROVISIONED, SUSPENDED, LOCKED_OUT, PASSWORD_EXPIRED, RECOVERY")
    p.add_argument("--latency-ms", type=float, default=d.latency_ms, help="added latency per request")
    p.add_argument("--rate-limit", type=int, default=d.rate_limit,
                   help="requests per bucket per minute, 0 = unlimited (default %(default)s)")
    for bucket in BUCKETS:
        p.add_argument(f"--rate-limit-{bucket.replace('_', '-')}", type=int, default=None,
                       help=f"override --rate-limit for the {bucket} bucket")
    p.add_argument("--concurrency-limit", type=int, default=d.concurrency_limit,
                   help="requests in flight before 429, 0 = unlimited (default %(default)s)")
    p.add_argument("--fail-rate", type=float, default=d.fail_rate, help="fraction of requests answered 5xx")
    p.add_argument("--fail-statuses", default=",".join(map(str, d.fail_statuses)), help="statuses for --fail-rate")
    p.add_argument("--reset-rate", type=float, default=d.reset_rate, help="fraction of connections reset")
    p.add_argument("--slow-body-rate", type=float, default=d.slow_body_rate, help="fraction of slow bodies")
    p.add_argument("--slow-body-ms", type=float, default=d.slow_body_ms, help="how slow a slow body is")
    p.add_argument("--truncate-rate", type=float, default=d.truncate_rate,
                   help="fraction of bodies cut short (Content-Length larger than sent)")
    p.add_argument("--invalid-json-rate", type=float, default=d.invalid_json_rate,
                   help="fraction of bodies that are not valid JSON")
    p.add_argument("--dpop", choices=("required", "off"), default=d.dpop, help="DPoP for the default client")
    p.add_argument("--tls", action="store_true", help="serve https with a CA generated into the state dir")
    p.add_argument("--search-cap", type=int, default=None, help="stop paging a `search` after this many results")
    p.add_argument("--granted-scopes", default=" ".join(d.granted_scopes),
                   help="scopes granted to the default client (space-separated)")
    p.add_argument("--client-id", default=None, help="the default client's id (default: derived from the seed)")
    p.add_argument("--key-id", default=None, help="the kid its public key is registered under (default: thumbprint)")
    p.add_argument("--json-cache-limit", type=int, default=d.json_cache_limit,
                   help="serialised users kept in memory")
    p.add_argument("--created-distribution", choices=CREATED_DISTRIBUTIONS, default=d.created_distribution,
                   help="how the seeded users' `created` spreads over time")
    p.add_argument("--rate-limit-window", type=int, default=d.rate_limit_window,
                   help="seconds per rate-limit window (Okta: 60; shorter compresses time for benchmarks)")
    a = p.parse_args(argv)
    rate_limits = {b: getattr(a, f"rate_limit_{b}") for b in BUCKETS if getattr(a, f"rate_limit_{b}") is not None}
    return DevOrgOptions(
        host=a.host, port=a.port, state_dir=a.state_dir, users=a.users, seed=a.seed, groups=a.groups,
        group_memberships=a.group_memberships,
        messy_fraction=a.messy_fraction, deprovisioned_fraction=a.deprovisioned_fraction,
        other_status_fraction=a.other_status_fraction, latency_ms=a.latency_ms, rate_limit=a.rate_limit,
        rate_limits=rate_limits, concurrency_limit=a.concurrency_limit, fail_rate=a.fail_rate,
        fail_statuses=tuple(int(s) for s in a.fail_statuses.split(",") if s), reset_rate=a.reset_rate,
        slow_body_rate=a.slow_body_rate, slow_body_ms=a.slow_body_ms, truncate_rate=a.truncate_rate,
        invalid_json_rate=a.invalid_json_rate, dpop=a.dpop, tls=a.tls, search_cap=a.search_cap,
        granted_scopes=tuple(a.granted_scopes.split()), client_id=a.client_id, key_id=a.key_id, json_cache_limit=a.json_cache_limit,
        created_distribution=a.created_distribution, rate_limit_window=a.rate_limit_window,
    )


def main(argv: list[str] | None = None) -> int:
    from .runner import OrgServer

    options = parse_args(argv)
    started = time.monotonic()
    org = OrgServer(options)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=org.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    org.mark_ready()
    org.start_warmup()
    print(f"okta dev org listening on {org.url} ({options.users} users, ready in {time.monotonic() - started:.1f} s); "
          f"connection: {org.state_dir / 'connection.json'}", flush=True)
    stop.wait()
    org.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
