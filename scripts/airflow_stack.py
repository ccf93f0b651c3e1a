"""A real Airflow 3.3 deployment: api-server + scheduler (LocalExecutor) + dag-processor (+ triggerer).

Used by the tests (tests/airflow_stack.py re-exports it) and by `scripts/dev.py airflow` (the UI with the dev org).

Tasks run the way they do in production: the scheduler's LocalExecutor workers start a supervisor per task,
which forks the task process and talks to the api-server's execution API. Everything lives in a temporary
AIRFLOW_HOME with its own SQLite metadata DB (Airflow 3.3 accepts SQLite with the LocalExecutor; SQLite's single
writer is enough for a handful of tasks).

    with AirflowStack(dags_folder, plugins_folder, env={"AIRFLOW_CONN_OKTA_DEFAULT": ...}) as stack:
        result = stack.run_dag("okta_user_sync", conf={"dry_run": True}, timeout=180)
    assert result.state == "success", result.describe()
    result.task_states   # {"extract": "success", "push[0]": "success", ...}
    result.logs          # {"extract": "<the task's log file text, all attempts>", ...}
    result.xcom          # {"extract": {"return_value": ...}, ...}

Every process the stack starts carries a unique marker in its environment; `stop()` ends exactly those
processes (including task processes that moved to their own process group), so a failing test leaves nothing
behind. Each component writes its output to <home>/<component>.out, quoted in errors.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import psutil

AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
COMPONENTS = ("api-server", "dag-processor", "scheduler")
ALL_COMPONENTS = (*COMPONENTS, "triggerer")
FINISHED_RUN_STATES = {"success", "failed"}
MARKER_VARIABLE = "OKTA_SYNC_AIRFLOW_STACK"
KEEP_HOME_VARIABLE = "AIRFLOW_STACK_KEEP_HOME"  # set to 1 to keep a temporary AIRFLOW_HOME for a post-mortem
_migrated_db_template: Path | None = None  # a dir with airflow.db + airflow.cfg: one migrate per test process


class AirflowStackError(RuntimeError):
    """The stack did not start, a DAG did not appear, or a run did not finish in time; carries the evidence."""


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    logs: dict[str, str]
    xcom: dict[str, dict[str, Any]]
    task_instances: list[dict[str, Any]] = field(repr=False, default_factory=list)
    seconds: float = 0.0

    def log_events(self, key: str) -> list[str]:
        """The `event` (message) of every line of a task's log, e.g. "the secret is ***"."""
        events = []
        for line in self.logs.get(key, "").splitlines():
            try:
                events.append(str(json.loads(line).get("event", "")))
            except ValueError:
                events.append(line)
        return events

    def describe(self) -> str:
        """A failure message: states, then the log tail of every task that did not succeed."""
        lines = [f"{self.dag_id} {self.run_id}: {self.state} in {self.seconds:.1f}s", f"tasks: {self.task_states}"]
        for key, state in self.task_states.items():
            if state != "success":
                lines.append(f"--- log of {key} ({state}) ---\n{self.logs.get(key, '')[-4000:]}")
        return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ti_key(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


class AirflowStack:
    """Start, drive and stop one Airflow deployment. Use as a context manager."""

    def __init__(
        self,
        dags_folder: str | os.PathLike,
        plugins_folder: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        home: str | os.PathLike | None = None,
        parallelism: int = 4,
        startup_timeout: float = 90.0,
        use_job_schedule: bool = False,
        python_path: Sequence[str | os.PathLike] = (),
        port: int | None = None,
        components: Sequence[str] = COMPONENTS,
        after_migrate: Sequence[Sequence[str]] = (),
    ):
        """`env` is added to every component and task (e.g. AIRFLOW_CONN_OKTA_DEFAULT, AIRFLOW__SECTION__KEY
        overrides); AIRFLOW* variables of the calling process are not inherited. `home` defaults to a temporary
        directory removed on stop (unless AIRFLOW_STACK_KEEP_HOME=1). `use_job_schedule=False` means only the runs
        you trigger exist: unpausing an hourly DAG does not also start a scheduled run. `python_path` entries go on
        PYTHONPATH after the plugins folder (e.g. the repository root, for `include.okta_dev_org`). `port` defaults
        to a free one. `after_migrate`: commands run with the stack's environment once the metadata DB exists and
        before any component starts (e.g. the airflow_settings.yaml loader)."""
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve() if plugins_folder else None
        self.extra_env = dict(env or {})
        self._own_home = home is None
        self.home = Path(home or tempfile.mkdtemp(prefix="airflow-stack-")).resolve()
        self.parallelism = parallelism
        self.startup_timeout = startup_timeout
        self.use_job_schedule = use_job_schedule
        self.port = port or _free_port()
        self.components = tuple(components)
        self.after_migrate = [[str(part) for part in command] for command in after_migrate]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.marker = secrets.token_hex(8)
        self.python_path = [str(Path(entry).resolve()) for entry in python_path]
        self._jwt_secret = secrets.token_urlsafe(32)
        self._fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        self._processes: dict[str, subprocess.Popen] = {}
        self._expected_exits: set[str] = set()  # components stopped on purpose (a killed worker): not a failure
        self._token: str | None = None
        self.timings: dict[str, float] = {}
        self._finalizer = weakref.finalize(self, _kill_marked_processes, self.marker, self.home)

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> AirflowStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def log_folder(self) -> Path:
        return self.home / "logs"

    def exited_component(self) -> tuple[str, int] | None:
        """(name, exit code) of a component that is no longer running, if any."""
        for name, popen in self._processes.items():
            if popen.poll() is not None and name not in self._expected_exits:
                return name, popen.returncode
        return None

    def processes(self) -> list[psutil.Process]:
        """Every live process of this stack: components, executor workers, task supervisors and tasks."""
        return marked_processes(self.marker, self.home)

    def environment(self) -> dict[str, str]:
        """The environment every component (and every task) gets."""
        # Nothing Airflow-specific leaks in from the test process: only what `env` names explicitly.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                MARKER_VARIABLE: self.marker,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder or self.home / "plugins"),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # Scheduler (signs task tokens) and api-server (checks them) must share the secret.
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                # Connections/Variables stored in the DB are encrypted with this; same for every component.
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_folder),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "50",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.use_job_schedule),
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            }
        )
        path = [str(self.plugins_folder)] if self.plugins_folder else []
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*path, *self.python_path, env.get("PYTHONPATH")]))
        env.update(self.extra_env)
        return env

    def start(self) -> AirflowStack:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self._env = self.environment()
        self._create_metadata_db()
        self.timings["migrate"] = time.monotonic() - started
        for command in self.after_migrate:
            self._run_setup(command)
        for component in self.components:
            self._spawn(component)
        self._wait_until(self._api_ready, self.startup_timeout, "api-server to answer /api/v2/monitor/health")
        self._wait_until(self._jobs_running, self.startup_timeout, "scheduler and dag-processor heartbeats")
        self.timings["start"] = time.monotonic() - started
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Terminate every process of this stack at once (SIGTERM, then SIGKILL after `grace`); safe to call twice.

        Running tasks get SIGTERM together with the scheduler: stopping the scheduler first would make it wait
        for them. A second sweep catches anything started while the first one was ending.
        """
        started = time.monotonic()
        for popen in self._processes.values():  # each component leads its own process group
            if popen.poll() is None:
                try:
                    os.killpg(popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _ in range(2):
            victims = {proc.pid: proc for proc in self.processes()}
            for popen in self._processes.values():
                if popen.poll() is None and popen.pid not in victims:
                    try:
                        victims[popen.pid] = psutil.Process(popen.pid)
                    except psutil.NoSuchProcess:
                        pass
            _terminate(list(victims.values()), grace)
        for popen in self._processes.values():
            popen.wait(timeout=5)
        for handle in getattr(self, "_outputs", {}).values():
            handle.close()
        self._processes.clear()
        self._finalizer.detach()
        self.timings["stop"] = time.monotonic() - started
        if self._own_home and not os.environ.get(KEEP_HOME_VARIABLE):
            shutil.rmtree(self.home, ignore_errors=True)

    def _create_metadata_db(self) -> None:
        global _migrated_db_template
        db = self.home / "airflow.db"
        if db.exists():
            self._airflow("db", "migrate", timeout=120)
            return
        if _migrated_db_template is None or not _migrated_db_template.exists():
            self._airflow("db", "migrate", timeout=120)
            template = Path(tempfile.mkdtemp(prefix="airflow-stack-db-"))
            atexit.register(shutil.rmtree, template, True)
            shutil.copyfile(db, template / "airflow.db")
            shutil.copyfile(self.home / "airflow.cfg", template / "airflow.cfg")
            _migrated_db_template = template
        else:
            shutil.copyfile(_migrated_db_template / "airflow.db", db)
        # Written once here, so the three components never race to create it.
        if not (self.home / "airflow.cfg").exists():
            shutil.copyfile(_migrated_db_template / "airflow.cfg", self.home / "airflow.cfg")

    def _run_setup(self, command: list[str], timeout: float = 120) -> None:
        done = subprocess.run(command, env=self._env, cwd=self.home, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise AirflowStackError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        self.setup_output = getattr(self, "setup_output", "") + done.stdout

    def component_command(self, component: str) -> list[str]:
        """The command line of one component (a subclass adds its own kinds, e.g. Celery workers)."""
        args = [str(AIRFLOW_BIN), component]
        if component == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        return args

    def _spawn(self, component: str) -> None:
        self._outputs = getattr(self, "_outputs", {})
        if component in self._outputs:
            self._outputs[component].close()
        out = self._outputs[component] = open(self.home / f"{component}.out", "ab")
        self._processes[component] = subprocess.Popen(
            self.component_command(component), env=self._env, cwd=self.home, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _airflow(self, *args: str, timeout: float) -> str:
        done = subprocess.run(
            [str(AIRFLOW_BIN), *args], env=self._env, cwd=self.home, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise AirflowStackError(f"airflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def component_output(self, component: str, tail: int = 3000) -> str:
        path = self.home / f"{component}.out"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def _wait_until(self, ready, timeout: float, what: str, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._processes.items():
                if proc.poll() is not None and name not in self._expected_exits:
                    raise AirflowStackError(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n{self.component_output(name)}"
                    )
            value = ready()
            if value:
                return value
            time.sleep(interval)
        outputs = "\n".join(f"--- {name} ---\n{self.component_output(name, 1500)}" for name in self._processes)
        raise AirflowStackError(f"timed out after {timeout:.0f}s waiting for {what}\n{outputs}")

    def _api_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _jobs_running(self) -> bool:
        health = self.api("GET", "/api/v2/monitor/health")
        wanted = [name.replace("-", "_") for name in self.components if name in ALL_COMPONENTS and name != "api-server"]
        return all((health.get(name) or {}).get("status") == "healthy" for name in wanted)

    # ---- REST API --------------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, params: dict | None = None, timeout: float = 30) -> Any:
        """Call the public REST API as an admin (simple auth manager, all-admins mode); returns parsed JSON."""
        if self._token is None and not path.startswith("/auth/"):
            self._token = self.api("GET", "/auth/token")["access_token"]
        url = self.base_url + path + (f"?{urllib.parse.urlencode(params, doseq=True)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise AirflowStackError(f"{method} {path} -> {error.code}: {detail}") from None
        return json.loads(raw) if raw else None

    def import_errors(self) -> list[dict]:
        return self.api("GET", "/api/v2/importErrors")["import_errors"]

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict:
        """Wait until the dag-processor has parsed `dag_id`; import errors are quoted if it never appears."""

        def parsed():
            try:
                return self.api("GET", f"/api/v2/dags/{_quote(dag_id)}")
            except AirflowStackError as error:
                if "-> 404" in str(error):
                    return None
                raise

        try:
            return self._wait_until(parsed, timeout, f"DAG {dag_id!r} to be parsed")
        except AirflowStackError as error:
            raise AirflowStackError(f"{error}\nimport errors: {self.import_errors()}") from None

    def trigger(
        self, dag_id: str, conf: dict | None = None, run_id: str | None = None, logical_date: datetime | None = None
    ) -> str:
        """Unpause (if needed) and trigger `dag_id`; returns the run id. A bad conf is refused here (400)."""
        dag = self.wait_for_dag(dag_id)
        if dag.get("is_paused"):
            self.api("PATCH", f"/api/v2/dags/{_quote(dag_id)}", {"is_paused": False})
        logical_date = logical_date or datetime.now(timezone.utc)
        body = {"logical_date": logical_date.isoformat(), "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.api("POST", f"/api/v2/dags/{_quote(dag_id)}/dagRuns", body)["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120.0) -> str:
        def finished():
            state = self.api("GET", f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}")["state"]
            return state if state in FINISHED_RUN_STATES else None

        return self._wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish")

    def run_dag(
        self,
        dag_id: str,
        conf: dict | None = None,
        timeout: float = 120.0,
        run_id: str | None = None,
        logical_date: datetime | None = None,
    ) -> DagRunResult:
        """Trigger, wait (bounded) and collect states, logs and XComs of one DAG run."""
        started = time.monotonic()
        run_id = self.trigger(dag_id, conf, run_id=run_id, logical_date=logical_date)
        try:
            state = self.wait_for_run(dag_id, run_id, timeout)
        except AirflowStackError as error:
            partial = self.collect(dag_id, run_id, "timeout", time.monotonic() - started)
            raise AirflowStackError(f"{error}\n{partial.describe()}") from None
        return self.collect(dag_id, run_id, state, time.monotonic() - started)

    # ---- results ---------------------------------------------------------------------------------------------

    def collect(self, dag_id: str, run_id: str, state: str, seconds: float = 0.0) -> DagRunResult:
        tis = self.task_instances(dag_id, run_id)
        return DagRunResult(
            dag_id=dag_id,
            run_id=run_id,
            state=state,
            task_states={_ti_key(ti["task_id"], ti["map_index"]): ti["state"] for ti in tis},
            logs={_ti_key(ti["task_id"], ti["map_index"]): self.task_log(dag_id, run_id, ti) for ti in tis},
            xcom=self.xcoms(dag_id, run_id),
            task_instances=tis,
            seconds=seconds,
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances"
        return self.api("GET", path, params={"limit": 1000})["task_instances"]

    def task_log(self, dag_id: str, run_id: str, ti: dict) -> str:
        """The task's own log files as the task supervisor wrote them (JSON lines), all attempts in order."""
        folder = self.log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
        if ti["map_index"] >= 0:
            folder = folder / f"map_index={ti['map_index']}"
        if not folder.is_dir():
            return ""
        attempts = sorted(folder.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1]))
        return "".join(path.read_text(errors="replace") for path in attempts)

    def xcoms(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """{"task" or "task[i]": {key: value}}, values as the task pushed them (JSON-decoded)."""
        base = f"/api/v2/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances"
        entries = self.api("GET", f"{base}/~/xcomEntries", params={"limit": 1000})["xcom_entries"]
        values: dict[str, dict[str, Any]] = {}
        for entry in entries:
            item = self.api(
                "GET",
                f"{base}/{_quote(entry['task_id'])}/xcomEntries/{_quote(entry['key'])}",
                params={"map_index": entry["map_index"]},
            )
            values.setdefault(_ti_key(entry["task_id"], entry["map_index"]), {})[entry["key"]] = _decoded(item["value"])
        return values


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def marked_processes(marker: str, home: Path | None = None) -> list[psutil.Process]:
    """Live processes of the stack: those whose environment carries its marker or whose working directory is its
    AIRFLOW_HOME. Both, because setproctitle (api-server, executor workers, task supervisors) overwrites the memory
    /proc/<pid>/environ reads, while the working directory, inherited from the component, survives it."""
    home_text = str(home) if home else None
    ours = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    marked = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in ours:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if (home_text and proc.cwd() == home_text) or proc.environ().get(MARKER_VARIABLE) == marker:
                marked.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return marked


def _terminate(procs: list[psutil.Process], grace: float) -> None:
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def _kill_marked_processes(marker: str, home: Path | None = None, grace: float = 5.0) -> None:
    """The finalizer's last resort: end every process of a stack that was never stopped."""
    _terminate(marked_processes(marker, home), grace)
