"""Issue 22: the DAG's export written to S3 beside the same export written to local disk, in the same run.

S3 is moto's server on loopback (tests/moto_s3.py; no real S3 installs on this machine), reached through Airflow's
`aws_default` connection as a deployment reaches S3: `okta_sync.airflow.storage.open_for_write` on
`s3://aws_default@bench-runs/...` (ObjectStoragePath, s3fs, a multipart upload in `REMOTE_BLOCK_SIZE` parts, then
the move into place) against `file://...` (a local file, renamed into place). Each export runs in a fresh process
(its own peak RSS, VmHWM) from the same dev org; local and S3 alternate so drift of the shared machine hits both.
moto runs on the same two cores, so its own work (parsing each part, the copy of the move) counts against S3.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from benchmarks.orgs import OUTPUT, ROOT, dev_org, write_connection

BUCKET = "bench-runs"


@dataclass
class StorageRun:
    users: int
    target: str  # "local" or "s3"
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # the exporting process's own CPU (all its threads)
    peak_rss_mb: list[float] = field(default_factory=list)
    bytes: int = 0

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak_mb(self) -> float:
        return max(self.peak_rss_mb)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu_seconds)

    def ratio_to(self, other: "StorageRun", measure: str = "seconds") -> float:
        """The median of per-round ratios: each round's two exports ran one after the other."""
        return statistics.median(mine / theirs for mine, theirs in zip(getattr(self, measure), getattr(other, measure)))


@dataclass
class StorageResult:
    runs: list[StorageRun] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # the machine's 1-minute load average before each size

    def run(self, users: int, target: str) -> StorageRun:
        return next(r for r in self.runs if r.users == users and r.target == target)


def _probe(connection_path, uri: str, s3) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    env["AIRFLOW_HOME"] = str(OUTPUT / "airflow-home")
    env["AIRFLOW_CONN_AWS_DEFAULT"] = s3.connection_env
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory_probe", "storage_export", str(connection_path), uri],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: tuple[int, ...], rounds: int = 3, log=print) -> StorageResult:
    from tests.moto_s3 import MotoS3Server

    result = StorageResult()
    local_root = OUTPUT / "storage-export"
    local_root.mkdir(parents=True, exist_ok=True)
    with MotoS3Server() as s3:
        s3.create_bucket(BUCKET)
        for users in sizes:
            with dev_org(f"storage-{users}", users=users, deprovisioned_fraction=0.0) as org:
                result.load.append(os.getloadavg()[0])
                connection = write_connection(org, OUTPUT / f"storage-{users}-connection.json")
                local = StorageRun(users, "local")
                remote = StorageRun(users, "s3")
                result.runs += [local, remote]
                targets = {"local": (local, (local_root / f"users-{users}.jsonl.gz").as_uri()),
                           "s3": (remote, f"s3://aws_default@{BUCKET}/okta/users-{users}.jsonl.gz")}
                for n in range(rounds):
                    for name in (("local", "s3") if n % 2 == 0 else ("s3", "local")):
                        run_, uri = targets[name]
                        measured = _probe(connection, uri, s3)
                        run_.seconds.append(measured["seconds"])
                        run_.cpu_seconds.append(measured["cpu_seconds"])
                        run_.peak_rss_mb.append(measured["peak_rss_mb"])
                        run_.bytes = measured["bytes"]
                        log(f"  storage: {measured['users']:,} users to {name}: {measured['seconds']:.2f} s "
                            f"(CPU {measured['cpu_seconds']:.2f} s), "
                            f"{measured['bytes'] / 2**20:.1f} MiB, peak RSS {measured['peak_rss_mb']:.0f} MB",
                            flush=True)
                (local_root / f"users-{users}.jsonl.gz").unlink(missing_ok=True)
    return result
