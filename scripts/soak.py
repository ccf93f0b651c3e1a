"""A bounded soak: one full sync of a large dev org under seeded faults and Okta's rate limits, judged from the org's
side. Not part of the test suite (about 10 minutes with the defaults).

    python3.11 scripts/dev.py python scripts/soak.py                       # 100,000 users, ~10 minutes
    python3.11 scripts/dev.py python scripts/soak.py --users 20000 --minutes 2

The dev org runs in a child process (its own GIL). Faults (5% of requests, seeded): 5xx, connection resets,
truncated and invalid JSON bodies, slow bodies beyond the read timeout. Rate limits: 600 requests per minute per
bucket, 75 in flight. The number of messy users is sized so the push (one re-read and one partial update per user,
both limited to 600/min) fits in --minutes.

Prints requests, faults injected, retries, 429s, updates applied, lost (intended changes not in Okta at the end, or
missing from the report), duplicates (users written more than once), peak RSS; exits 1 unless lost = duplicates = 0.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
from collections import Counter

from include.okta_dev_org import DevOrgOptions, DevOrgProcess
from okta_sync import OktaConfig
from okta_sync.sync.change_plan import plan_hygiene
from okta_sync.client import OktaClient
from okta_sync.sync.export import read_users_jsonl, write_users_jsonl
from okta_sync.sync.profile_diff import ProfileChange
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.sync.reports import ReportStatus, report_writer

RATE_LIMIT = 600
FAULTS = {"fail_rate": 0.02, "reset_rate": 0.01, "truncate_rate": 0.005, "invalid_json_rate": 0.005,
          "slow_body_rate": 0.01, "slow_body_ms": 2000}  # 5% of requests in all
READ_TIMEOUT = 0.4  # below slow_body_ms / 4: every slow body is a read timeout


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=10.0, help="the budget the messy share is sized for")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--concurrency", type=int, default=8, help="updates in flight")
    return parser.parse_args(argv)


def messy_fraction(users: int, minutes: float) -> float:
    """Enough messy users to keep the update bucket busy for most of the budget (the export takes the rest)."""
    export_minutes = users / 200 / RATE_LIMIT
    push_minutes = max(0.5, minutes - export_minutes - 1.0)
    return min(0.5, RATE_LIMIT * push_minutes * 0.9 / users)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run(args: argparse.Namespace) -> int:
    state = tempfile.mkdtemp(prefix="okta-soak-")
    options = DevOrgOptions(users=args.users, seed=args.seed, messy_fraction=messy_fraction(args.users, args.minutes),
                            rate_limit=RATE_LIMIT, concurrency_limit=75, state_dir=state)
    started = time.monotonic()
    with DevOrgProcess(options) as org:
        normalizer = Normalizer.default()
        c = org.connection
        config = OktaConfig(org_url=c["org_url"], client_id=c["client_id"], private_key_path=c["private_key_path"],
                            key_id=c["key_id"], read_timeout=READ_TIMEOUT, max_concurrency=args.concurrency)
        org.admin.configure(fault_seed=args.seed, **FAULTS)
        with OktaClient(config) as client:
            export = tempfile.TemporaryFile()
            exported = write_users_jsonl(client.iter_user_pages(), export)
            export_seconds = time.monotonic() - started
            export.seek(0)
            changes = [e for e in plan_hygiene(read_users_jsonl(export), normalizer) if isinstance(e, ProfileChange)]
            report = io.StringIO()
            writer = report_writer(report, "jsonl")
            error = None
            try:
                push_changes(client, changes, writer, PushOptions(max_concurrency=args.concurrency))
            except Exception as exc:
                error = exc
            metrics = client.metrics
        sync_seconds = time.monotonic() - started
        org.admin.configure(**{name: 0 for name in FAULTS if name.endswith("_rate")})
        stats = org.admin.stats()

        rows = [json.loads(line) for line in report.getvalue().splitlines()]
        statuses = Counter(row["status"] for row in rows)
        reported = {(row["user_id"], row["attribute"]) for row in rows}
        planned = {(change.user_id, name): new for change in changes for name, (_, new) in change.changes.items()}
        missing_from_report = [key for key in planned if key not in reported]
        not_in_okta = 0
        for offset in range(0, args.users + 1000, 5000):
            for user in org.admin.users(offset=offset, limit=5000):
                for name in normalizer.normalize_profile(user["profile"]):
                    if (user["id"], name) in planned and user["profile"].get(name) != planned[(user["id"], name)]:
                        not_in_okta += 1
        lost = len(missing_from_report) + not_in_okta
        duplicates = sum(1 for methods in stats["updates"].values() if methods.get("POST", 0) > 1)
        figures = {
            "users": args.users, "exported": exported.users, "planned changes (users)": len(changes),
            "planned changes (attributes)": len(planned), "export seconds": round(export_seconds, 1),
            "sync seconds": round(sync_seconds, 1),
            "requests (server)": sum(stats["requests"].values()), "requests (client)": int(metrics.total("api.responses.")),
            "faults injected": sum(stats["faults"].values()), "faults by kind": stats["faults"],
            "retries": int(metrics.count("api.retries")),
            "429s": stats["rate_limited"]["rate_limit"] + stats["rate_limited"]["concurrency"],
            "429s by reason": {k: v for k, v in stats["rate_limited"].items() if k != "by_bucket"},
            "client rate-limit wait seconds": round(metrics.seconds.get("rate_limit.wait", 0.0), 1),
            "updates applied": statuses.get(ReportStatus.APPLIED, 0), "report statuses": dict(statuses),
            "POSTs (server)": stats["requests"].get("POST /api/v1/users/{id}", 0),
            "lost": lost, "duplicates": duplicates, "push error": repr(error) if error else None,
            "peak RSS MB (client)": round(peak_rss_mb(), 1),
        }
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    return 0 if lost == 0 and duplicates == 0 and error is None else 1


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
