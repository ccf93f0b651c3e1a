"""The partitioned listing's round trips, its scheduling alone, over many org sizes, in minutes.

    python3.11 scripts/dev.py bench rounds [--quick] [--sizes 8000,20000,40000,100000] [--seeds 2] [--no-docs]

`bench --only paths` times the DAG's export against the dev org over HTTP: its time is the listing's round trips
plus each request's own cost, on two sizes. This runs the same listing (`PartitionedUserListing` with no
partitions, as the export operator builds it) against an in-memory org whose every page takes one fixed round trip
and nothing else, with no rate limit (the latency-bound regime: an org smaller than one window). So it counts the
scheduler's round trips alone: a first export (a probe) and a repeat (from the first one's hint), for the dev org's
`created` distributions and seeds, at each size.

Each is set beside the ideal, ceil(pages / workers) round trips: a client that knows where every page begins. A first
export has a floor of its own, 1 + ceil((pages - 2) / workers), for any client that does not know the org's
`created` distribution: of the windows it asks for in its first round trip, only the first page ascending and the
first descending are sure to hold users (an org can have none in any other window it picks), so at most two pages
are read before it learns anything.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

from benchmarks.orgs import ROOT
from benchmarks.report import MarkedSection
from include.okta_dev_org.options import CREATED_DISTRIBUTIONS
from include.okta_dev_org.population import Population
from okta_sync.users.partitions import PartitionedUserListing
from tests.in_memory_org import InMemoryOrg

DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = MarkedSection("round-trips")
WORKERS, PAGE = 8, 200  # the connection's default max_concurrency and page size: what the DAG runs with


@dataclass
class Measured:
    users: int
    distribution: str
    seed: int
    first_rounds: float
    first_requests: int
    repeat_rounds: float
    repeat_requests: int

    @property
    def pages(self) -> int:
        return math.ceil(self.users / PAGE)

    @property
    def ideal(self) -> int:
        return math.ceil(self.pages / WORKERS)

    @property
    def first_floor(self) -> int:
        return 1 + math.ceil(max(0, self.pages - 2) / WORKERS)


def population(users: int, distribution: str, seed: int) -> list[tuple[int, str]]:
    """The dev org's users' `created` (ms) and ids for this seed and distribution."""
    pop = Population(seed, 0.0, 0.0, 0.0, created_distribution=distribution)
    return [(pop.created(index) * 1000, pop.user_id(index)) for index in range(users)]


def export_rounds(users: list[tuple[int, str]], latency: float, hint=None) -> tuple[float, int, dict | None]:
    """Round trips (elapsed / latency) and requests of one complete listing, and the hint it leaves."""
    org = InMemoryOrg(users, latency)
    listing = PartitionedUserListing(org, max_workers=WORKERS, limit=PAGE, created_hint=hint)
    began = time.perf_counter()
    ids = [user["id"] for page in listing.pages() for user in page]
    elapsed = time.perf_counter() - began
    if len(ids) != len(users) or len(set(ids)) != len(users):
        raise AssertionError(f"{len(users)} users listed as {len(ids)} ({len(set(ids))} distinct)")
    return elapsed / latency, org.requests, listing.created_hint


def measure(sizes: list[int], distributions: list[str], seeds: int, latency: float) -> list[Measured]:
    rows = []
    for users in sizes:
        for distribution in distributions:
            for seed in range(1, seeds + 1):
                people = population(users, distribution, seed)
                first, first_requests, hint = export_rounds(people, latency)
                repeat, repeat_requests, _ = export_rounds(people, latency, hint)
                rows.append(Measured(users, distribution, seed, first, first_requests, repeat, repeat_requests))
                print(f"  {users:>7,} {distribution:10s} seed {seed}: first {first:5.1f} rounds ({first_requests} "
                      f"requests), repeat {repeat:5.1f} ({repeat_requests}); ideal {rows[-1].ideal}", flush=True)
    return rows


def markdown(rows: list[Measured], command: str, latency: float) -> str:
    seeds = max(row.seed for row in rows)
    lines = ["## Round trips of the partitioned listing (its scheduling alone)", "",
             f"Measured on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with:", "", "```", command, "```", "",
             f"The export's listing ({WORKERS} in flight, pages of {PAGE}) against an in-memory org whose every page "
             f"is one round trip of {latency * 1000:.0f} ms and nothing else, with no rate limit: round trips are "
             "elapsed time / that latency (the client's own time per round trip shows as the fraction above a whole "
             f"number). The worst of {seeds} seed(s) of the dev org's population per row. Ideal: ceil(pages / "
             f"{WORKERS}), a client that knows where every page begins. First-export floor: 1 + ceil((pages - 2) / "
             f"{WORKERS}), any client that does not know the org's `created` distribution (its first round trip is "
             "sure of two pages only). Details in benchmarks/rounds.py.", "",
             "| users (pages) | created | ideal | first export | first / ideal | first-export floor / ideal | "
             "repeat (hint) | repeat / ideal |", "|---|---|---|---|---|---|---|---|"]
    keys = dict.fromkeys((row.users, row.distribution) for row in rows)
    for users, distribution in keys:
        group = [row for row in rows if (row.users, row.distribution) == (users, distribution)]
        first = max(group, key=lambda row: row.first_rounds)
        repeat = max(group, key=lambda row: row.repeat_rounds)
        ideal = first.ideal
        lines.append(f"| {users:,} ({first.pages}) | {distribution} | {ideal} | {first.first_rounds:.1f} rounds, "
                     f"{first.first_requests} requests | {first.first_rounds / ideal:.2f}x | "
                     f"{first.first_floor / ideal:.2f}x | {repeat.repeat_rounds:.1f} rounds, {repeat.repeat_requests}"
                     f" requests | {repeat.repeat_rounds / ideal:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3.11 scripts/dev.py bench rounds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two small sizes, one seed, 20 ms: a smoke run")
    parser.add_argument("--sizes", help="comma-separated org sizes (default 8000,20000,40000,100000)")
    parser.add_argument("--seeds", type=int, help="populations per size and distribution (default 2)")
    parser.add_argument("--latency", type=float, help="seconds per round trip (default 0.1)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in (args.sizes or ("2000,8000" if args.quick else "8000,20000,40000,100000"))
             .split(",")]
    seeds = args.seeds or (1 if args.quick else 2)
    latency = args.latency or (0.02 if args.quick else 0.1)
    if min(sizes) < 1 or seeds < 1 or not 0.005 <= latency <= 5:
        parser.error("sizes and seeds must be positive, the latency between 0.005 and 5 s")
    print(f"rounds: {sizes} users x {list(CREATED_DISTRIBUTIONS)} x {seeds} seed(s), {latency * 1000:.0f} ms",
          flush=True)
    rows = measure(sizes, list(CREATED_DISTRIBUTIONS), seeds, latency)
    section = markdown(rows, ("python3.11 scripts/dev.py bench rounds " + " ".join(argv)).strip(), latency)
    print("\n" + section)
    if not args.no_docs:
        SECTION.write(DOCS, section)
        print(f"updated {DOCS.relative_to(ROOT)}")
    return 0
