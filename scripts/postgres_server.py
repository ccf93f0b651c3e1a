"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests, benchmarks and the local Celery cluster's metadata DB
(Debian's postgresql package).

    with PostgresServer() as server:
        server.connection  # {"conn_type": "postgres", "host": "127.0.0.1", "port": ..., ...}

`initdb` and the server run as the `postgres` user when started as root (PostgreSQL refuses to run as root), in a
temporary directory, on a free loopback port, trust authentication for loopback only. `stop()` ends the server by
the PID it wrote and removes the directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_bin_dir() -> Path | None:
    """The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None, startup_timeout: float = 30.0):
        self.bin_dir = bin_dir or find_bin_dir()
        if self.bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.startup_timeout = startup_timeout
        self.port = _free_port()
        self.pid: int | None = None
        self.root: Path | None = None

    @property
    def connection(self) -> dict:
        return {"conn_type": "postgres", "host": "127.0.0.1", "port": self.port, "login": "postgres",
                "schema": "postgres"}

    def _as_owner(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start(self) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="okta-sync-pg-"))
        data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        run = dict(check=True, capture_output=True, timeout=120)
        try:
            subprocess.run(self._as_owner(str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                          "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"), **run)
            options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            subprocess.run(self._as_owner(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                                          "-l", str(self.root / "server.log"), "-w",
                                          "-t", str(int(self.startup_timeout)), "start"), **run)
        except subprocess.CalledProcessError as error:
            log = self.root / "server.log"
            detail = log.read_text()[-2000:] if log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {error.stderr.decode(errors='replace')[-2000:]}\n"
                               f"{detail}") from None
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return self

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (letters, digits and `_` only); returns it."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError("a database name here is letters, digits and _ only")
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return name

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # "fast" shutdown: roll back sessions, exit
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and _alive(self.pid):
                    time.sleep(0.1)
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie (exited, not yet reaped) is as good as gone
            return stat.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False
