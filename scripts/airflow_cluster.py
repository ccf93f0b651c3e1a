"""A real local CeleryExecutor cluster: the deployment our users run (Helm chart, Astro, MWAA), on one machine.

    with LocalCeleryCluster(home, dags_folder, plugins_folder, workers=2) as cluster:
        result = cluster.stack.run_dag("okta_user_sync", conf={}, timeout=300)
        cluster.s3.keys("okta-runs")            # what the run wrote to (moto's) S3
        cluster.worker_path("okta-worker-1", "/tmp")   # that worker's private /tmp, seen from outside

Starts, each on a free loopback port and stopped by its PID:
- PostgreSQL (Debian's, a throwaway server): the metadata DB (database `airflow`), the Celery result backend, and
  the data team's warehouse (database `okta_warehouse`, the `okta_warehouse` connection);
- Redis (Debian's redis-server): the Celery broker;
- moto's server: an in-memory stand-in for S3 (no real S3 runs or is reached here), with the buckets `okta-runs`
  (the Variable `okta_sync_output_uri` = s3://aws_default@okta-runs/okta/) and `okta-feeds` (the Variable
  `okta_sync_feed_roots`), reached through the `aws_default` connection (endpoint_url to moto, placeholder keys);
- Airflow's api-server, scheduler (CeleryExecutor) and dag-processor (and the triggerer if asked);
- N Celery workers (`airflow celery worker`), each in its own PID, mount and UTS namespace when run as root
  (`unshare`): a private tmpfs over /tmp, /var/tmp and the project's include/output, and its own hostname
  (`okta-worker-<n>`, which Airflow records on each task instance), so no task can read another worker's files.
  Not as root there are no namespaces: the workers then share those folders, and the cluster says so loudly.
  Each consumes Airflow's default queue and a queue named after it: a task whose `queue` is `okta-worker-2` runs
  on that worker (how the tests make every hand-off of a run cross workers).

What the workers still share, as on a real deployment's shared volumes: the project (DAGs and plugins, read as
code), the Airflow home (its logs folder, standing in for remote logging) and the network. The namespaces make a
run that relies on a shared disk fail; they are not a security boundary (tasks run as root).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

import psutil
import yaml

from scripts.airflow_stack import AIRFLOW_BIN, COMPONENTS, AirflowStack, AirflowStackError
from scripts.cluster_services import MotoS3Server, RedisServer
from scripts.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
PROJECT_OUTPUT = ROOT / "include" / "output"
WORKER_PRIVATE_FOLDERS = ("/tmp", "/var/tmp", str(PROJECT_OUTPUT))
OUTPUT_BUCKET = "okta-runs"
FEEDS_BUCKET = "okta-feeds"
OUTPUT_URI = f"s3://aws_default@{OUTPUT_BUCKET}/okta/"
FEED_ROOT = f"s3://aws_default@{FEEDS_BUCKET}/"
WAREHOUSE_DATABASE = "okta_warehouse"
METADATA_DATABASE = "airflow"
DEFAULT_QUEUE = "default"  # Airflow's [operators] default_queue
NOT_ISOLATED = ("workers are NOT isolated (not root: no mount namespaces): they share /tmp, /var/tmp and "
                f"{PROJECT_OUTPUT}, so a task can read another worker's files and a run that passes here may "
                "still fail on a cluster whose workers share no disk")

# Run inside the worker's new namespaces, before the worker: private tmpfs over /tmp and /var/tmp; the shared
# folders that lie under them (a checkout in /tmp: the project, its .venv, the Airflow home) bound back in from a
# stash taken before the tmpfs hid them; then the private output folder (which would hold PII: its owner only), its
# own hostname, then the worker. Arguments: name, the number of shared folders, those folders, the worker command.
_ISOLATE_SCRIPT = """set -eu
name="$1"; keeps="$2"; shift 2
i=0; stashes=""
while [ "$i" -lt "$keeps" ]; do
  stash=$(mktemp -d /dev/shm/okta-keep-XXXXXX)
  mount --bind "$1" "$stash"
  stashes="$stashes $1=$stash"; shift; i=$((i + 1))
done
for folder in %s; do
  mkdir -p "$folder"
  mount -t tmpfs -o mode=1777 "okta-private-$name" "$folder"
done
for pair in $stashes; do
  keep="${pair%%=*}"; stash="${pair#*=}"
  mkdir -p "$keep"
  mount --bind "$stash" "$keep"
  umount "$stash"; rmdir "$stash"
done
mkdir -p %s
mount -t tmpfs -o mode=0700 "okta-private-$name" %s
hostname "$name"
exec "$@"
""" % (" ".join(shlex.quote(folder) for folder in WORKER_PRIVATE_FOLDERS[:2]), shlex.quote(str(PROJECT_OUTPUT)),
       shlex.quote(str(PROJECT_OUTPUT)))


def can_isolate() -> bool:
    """Mount and UTS namespaces need root (CAP_SYS_ADMIN) and util-linux's unshare."""
    return os.geteuid() == 0 and Path("/usr/bin/unshare").exists()


def worker_name(index: int) -> str:
    return f"okta-worker-{index}"


class CeleryStack(AirflowStack):
    """AirflowStack with the CeleryExecutor, a PostgreSQL metadata DB and Celery workers (optionally isolated)."""

    def __init__(self, *args, database_url: str, broker_url: str, result_backend: str, workers: int = 2,
                 worker_concurrency: int = 1, isolate: bool = True, **kwargs):
        kwargs.setdefault("components", COMPONENTS)
        super().__init__(*args, **kwargs)
        self.database_url = database_url
        self.broker_url = broker_url
        self.result_backend = result_backend
        self.worker_concurrency = worker_concurrency
        self.isolate = isolate
        self.workers = [worker_name(i + 1) for i in range(workers)]
        self.components = (*self.components, *self.workers)
        self._worker_output_start: dict[str, int] = {}
        # Folders every worker must see that lie under /tmp or /var/tmp (a checkout in /tmp): bound back in over the
        # worker's private tmpfs. Only the outermost of them; the output folder stays private.
        shared = [Path(p).resolve() for p in (ROOT, self.home, self.dags_folder, self.plugins_folder) if p]
        under = [p for p in shared if any(_inside(p, Path(f)) for f in WORKER_PRIVATE_FOLDERS[:2])]
        self.shared_under_private = sorted({p for p in under if not any(_inside(p, q) for q in under if q != p)})
        if isolate:
            for path in (self.home, self.dags_folder, self.plugins_folder):
                if path and _inside(Path(path).resolve(), PROJECT_OUTPUT):
                    raise AirflowStackError(f"{path} is inside the workers' private output folder {PROJECT_OUTPUT}: "
                                            "the workers could not see it; put it elsewhere")

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": self.result_backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",  # sending a task to Redis on a busy 2-core machine
            # Each worker's hostname is its own (UTS namespace): what Airflow records as the task instance's host.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        })
        for key, value in self.extra_env.items():  # the caller's overrides win
            env[key] = value
        return env

    def _create_metadata_db(self) -> None:
        self._airflow("db", "migrate", timeout=300)

    def component_command(self, component: str) -> list[str]:
        if component not in self.workers:
            return super().component_command(component)
        # Airflow's default queue, and one named after the worker: a task with queue="okta-worker-2" runs there.
        worker = [str(AIRFLOW_BIN), "celery", "worker", "--celery-hostname", f"{component}@%h",
                  "--queues", f"{DEFAULT_QUEUE},{component}",
                  "--concurrency", str(self.worker_concurrency), "--skip-serve-logs",  # one port per machine
                  "--pid", str(self.home / f"{component}.pid"), "--without-mingle", "--without-gossip"]
        if not self.isolate:
            return worker
        # --fork --pid --kill-child: the worker is PID 1 of its own PID namespace, and everything in it dies with
        # unshare, so killing unshare (SIGKILL) ends the whole worker tree, task processes included.
        return ["/usr/bin/unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc",
                "--propagation", "private", "--", "/bin/sh", "-c", _ISOLATE_SCRIPT, "okta-isolate", component,
                str(len(self.shared_under_private)), *map(str, self.shared_under_private), *worker]

    def _spawn(self, component: str) -> None:
        if component in self.workers:
            path = self.home / f"{component}.out"
            self._worker_output_start[component] = path.stat().st_size if path.exists() else 0
        super()._spawn(component)

    def start(self) -> CeleryStack:
        if not self.isolate:
            print(f"WARNING: {NOT_ISOLATED}", file=sys.stderr, flush=True)
        super().start()
        self.wait_for_workers()
        return self

    def _worker_ready(self, name: str) -> bool:
        path = self.home / f"{name}.out"
        if not path.exists():
            return False
        with open(path, "rb") as out:  # only what this start wrote: the home (and its .out files) may be reused
            out.seek(self._worker_output_start.get(name, 0))
            # Celery's "<name>@<host> ready."; the host is the worker's own name only in its UTS namespace.
            return re.search(rb"%s@\S+ ready\." % re.escape(name.encode()), out.read()) is not None

    def wait_for_workers(self) -> None:
        started = time.monotonic()
        self._wait_until(lambda: all(self._worker_ready(name) for name in self.workers), self.startup_timeout,
                         f"Celery workers {self.workers} to be ready")
        self.timings["workers"] = time.monotonic() - started

    # ---- the workers, seen from outside -----------------------------------------------------------------------

    def worker_running(self, name: str) -> bool:
        return name in self._processes and self._processes[name].poll() is None

    def worker_process(self, name: str) -> psutil.Process:
        """The worker's outermost process (`unshare`, or the worker itself when not isolated)."""
        popen = self._processes[name]
        if popen.poll() is not None:
            raise AirflowStackError(f"{name} is not running (exit code {popen.returncode})")
        return psutil.Process(popen.pid)

    def worker_tree(self, name: str) -> list[psutil.Process]:
        top = self.worker_process(name)
        return [top, *top.children(recursive=True)]

    def worker_init(self, name: str) -> psutil.Process:
        """The first process inside the worker's namespaces (its /proc/<pid>/root is the worker's view of files)."""
        top = self.worker_process(name)
        if not self.isolate:
            return top
        children = top.children()
        if not children:
            raise AirflowStackError(f"{name}: unshare has no child")
        return children[0]

    def worker_path(self, name: str, path: str | os.PathLike) -> Path:
        """`path` as the worker sees it (inside its mount namespace), readable from here as root."""
        return Path(f"/proc/{self.worker_init(name).pid}/root") / str(path).lstrip("/")

    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL the whole worker: every process of its tree at once (and, isolated, its PID namespace with
        it). Returns the PIDs killed. The worker's private tmpfs folders go with its namespace."""
        tree = self.worker_tree(name)
        self._expected_exits.add(name)
        for proc in tree:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=10)
        self._processes[name].wait(timeout=10)
        return [proc.pid for proc in tree]


def _inside(path: Path, folder: Path) -> bool:
    path = Path(path).resolve()
    return path == folder or folder in path.parents


class LocalCeleryCluster:
    """PostgreSQL + Redis + moto's S3 + a CeleryStack, with the buckets, connections and Variables set up."""

    def __init__(self, home: str | os.PathLike, dags_folder: str | os.PathLike,
                 plugins_folder: str | os.PathLike | None = ROOT / "plugins", *, workers: int = 2,
                 worker_concurrency: int = 1, isolate: bool | None = None, port: int | None = None,
                 env: dict[str, str] | None = None, settings_files: Sequence[str | os.PathLike] = (),
                 components: Sequence[str] = COMPONENTS, startup_timeout: float = 180.0, parallelism: int = 8,
                 use_job_schedule: bool = False, python_path: Sequence[str | os.PathLike] = (ROOT,)):
        """`settings_files`: airflow_settings.yaml files applied first (the cluster's own connections and Variables
        are applied after them and win). `isolate` defaults to "when root"; True without root is refused."""
        self.home = Path(home).resolve()
        self.isolate = can_isolate() if isolate is None else isolate
        if self.isolate and not can_isolate():
            raise AirflowStackError("isolated workers need root and /usr/bin/unshare (mount namespaces); "
                                    f"without them: {NOT_ISOLATED}")
        self._stack_args = dict(dags_folder=dags_folder, plugins_folder=plugins_folder, workers=workers,
                                worker_concurrency=worker_concurrency, port=port, env=dict(env or {}),
                                components=components, startup_timeout=startup_timeout, parallelism=parallelism,
                                use_job_schedule=use_job_schedule, python_path=python_path)
        self.settings_files = [Path(path).resolve() for path in settings_files]
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.s3: MotoS3Server | None = None
        self.stack: CeleryStack | None = None
        self.timings: dict[str, float] = {}

    def __enter__(self) -> LocalCeleryCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def warehouse_connection(self) -> dict:
        return {**self.postgres.connection, "schema": WAREHOUSE_DATABASE}

    def settings(self) -> dict:
        """The cluster's own connections and Variables, in the airflow_settings.yaml format."""
        aws = self.s3.connection
        warehouse = self.warehouse_connection
        return {"airflow": {
            "connections": [
                {"conn_id": "aws_default", "conn_type": "aws", "conn_login": aws["login"],
                 "conn_password": aws["password"], "conn_extra": aws["extra"]},
                {"conn_id": "okta_warehouse", "conn_type": "postgres", "conn_host": warehouse["host"],
                 "conn_port": warehouse["port"], "conn_login": warehouse["login"], "conn_schema": warehouse["schema"]},
            ],
            "variables": [
                {"variable_name": "okta_sync_output_uri", "variable_value": OUTPUT_URI},
                {"variable_name": "okta_sync_feed_roots", "variable_value": f'["{FEED_ROOT}"]'},
            ],
        }}

    def start(self) -> LocalCeleryCluster:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer().start()
        self.postgres.create_database(METADATA_DATABASE)
        self.postgres.create_database(WAREHOUSE_DATABASE)
        self.redis = RedisServer().start()
        self.s3 = MotoS3Server().start()
        self.s3.create_bucket(OUTPUT_BUCKET)
        self.s3.create_bucket(FEEDS_BUCKET)
        self.timings["services"] = time.monotonic() - started
        cluster_settings = self.home / "cluster_settings.yaml"
        cluster_settings.write_text("# Written by scripts/airflow_cluster.py at each start.\n"
                                    + yaml.safe_dump(self.settings(), sort_keys=False))
        apply = [sys.executable, ROOT / "scripts" / "apply_airflow_settings.py", "--project-dir", ROOT]
        database = f"postgresql+psycopg2://postgres@127.0.0.1:{self.postgres.port}/{METADATA_DATABASE}"
        self.stack = CeleryStack(
            home=self.home, database_url=database, broker_url=self.redis.url,
            result_backend=f"db+postgresql+psycopg2://postgres@127.0.0.1:{self.postgres.port}/{METADATA_DATABASE}",
            isolate=self.isolate, after_migrate=[[*apply, path] for path in (*self.settings_files, cluster_settings)],
            **self._stack_args,
        )
        self.stack.start()
        self.timings["airflow"] = time.monotonic() - started - self.timings["services"]
        self.timings["start"] = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Airflow first (tasks may still be writing), then moto, Redis and PostgreSQL; each by its PID."""
        started = time.monotonic()
        for part in (self.stack, self.s3, self.redis, self.postgres):
            if part is not None:
                part.stop()
        self.timings["stop"] = time.monotonic() - started

    def processes(self) -> list[psutil.Process]:
        """Every live process the cluster started (Airflow's, and the three servers with their children)."""
        found = list(self.stack.processes()) if self.stack else []
        for pid in (getattr(self.redis, "pid", None), getattr(self.s3, "pid", None),
                    getattr(self.postgres, "pid", None)):
            if pid is None:
                continue
            try:
                top = psutil.Process(pid)
                found += [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return found
