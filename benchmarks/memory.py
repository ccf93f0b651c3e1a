"""Target 2: the export's peak RSS, each run in its own plain Python process, at two org sizes; the SDK beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from benchmarks.orgs import OUTPUT, ROOT, dev_org, write_connection


@dataclass
class MemoryResult:
    small_users: int
    large_users: int
    export_mb: dict[int, float] = field(default_factory=dict)
    sdk_mb: dict[int, float] = field(default_factory=dict)


def probe(mode: str, org) -> dict:
    connection = write_connection(org, OUTPUT / f"memory-{mode}-connection.json")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory_probe", mode, str(connection)], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(small: int, large: int, sdk_users: int, log=print) -> MemoryResult:
    result = MemoryResult(small, large)
    for users in (small, large):
        with dev_org(f"memory-{users}", users=users, tls=True, deprovisioned_fraction=0.0) as org:
            measured = probe("export", org)
            result.export_mb[users] = measured["peak_rss_mb"]
            log(f"  memory: export of {measured['users']} users peaked at {measured['peak_rss_mb']:.0f} MB")
            if users == sdk_users:
                measured = probe("sdk", org)
                result.sdk_mb[users] = measured["peak_rss_mb"]
                log(f"  memory: SDK collect-all of {measured['users']} users peaked at {measured['peak_rss_mb']:.0f} MB")
    return result
