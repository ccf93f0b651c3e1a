"""A partitioned listing's memory stays flat in the org's size: the peak RSS of a fresh process listing 60,000 users
is close to one listing 10,000 (1.62x and 1.70x while each page was decoded whole: glibc's heaps fragmented).

Each listing runs in its own process (its peak is its own) against a dev org in this one; Linux only (VmHWM)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.okta_dev_org import DevOrg, DevOrgOptions

ROOT = Path(__file__).resolve().parents[3]
PROBE = Path(__file__).with_name("listing_memory_probe.py")
SMALL, LARGE = 10_000, 60_000
MAX_GROWTH = 1.25  # peak RSS at LARGE / at SMALL: 1.03-1.06 measured, 1.62-1.70 with pages decoded whole

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS from /proc (Linux)")


def _peak_rss(org: DevOrg, mode: str, tmp_path: Path) -> dict:
    connection = tmp_path / f"connection-{mode}.json"
    connection.write_text(json.dumps(org.connection))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)  # glibc's defaults, as a user runs it
    out = subprocess.run([sys.executable, str(PROBE), mode, str(connection)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def orgs(tmp_path_factory):
    options = dict(rate_limit=0, concurrency_limit=0, seed=12)
    with DevOrg(DevOrgOptions(users=SMALL, state_dir=tmp_path_factory.mktemp("small"), **options)) as small, \
            DevOrg(DevOrgOptions(users=LARGE, state_dir=tmp_path_factory.mktemp("large"), **options)) as large:
        yield small, large


@pytest.mark.parametrize("mode", ["export", "pages"])
def test_peak_memory_of_a_partitioned_listing_does_not_grow_with_the_org(orgs, mode, tmp_path):
    small, large = (_peak_rss(org, mode, tmp_path) for org in orgs)
    assert (small["users"], large["users"]) == (SMALL, LARGE)
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    assert ratio < MAX_GROWTH, (f"peak RSS {small['peak_rss_mb']:.0f} MB listing {SMALL:,} users, "
                                f"{large['peak_rss_mb']:.0f} MB listing {LARGE:,} ({ratio:.2f}x)")
