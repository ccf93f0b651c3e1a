"""The servers a local CeleryExecutor cluster needs beside PostgreSQL (scripts/postgres_server.py), each a child
process on a free loopback port, stopped by its PID:

    with RedisServer() as redis, MotoS3Server() as s3:
        redis.url        # redis://127.0.0.1:<port>/0, the Celery broker (Debian's redis-server)
        s3.endpoint_url  # http://127.0.0.1:<port>, moto's server standing in for S3 (no real S3 runs here)
        s3.create_bucket("okta-runs")

Neither keeps anything on disk: Redis with persistence off, moto in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# moto's S3 takes any keys; these are the placeholders its documentation uses, not credentials.
MOTO_ACCESS_KEY_ID = "testing"
MOTO_SECRET_ACCESS_KEY = "testing"
MOTO_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceError(RuntimeError):
    """A server did not start in time; carries the end of its output."""


class _ChildServer:
    """One server process in its own process group, its output in a temporary folder; `stop()` ends it by PID."""

    name = "server"
    startup_timeout = 30.0

    def __init__(self) -> None:
        self.port = free_port()
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def output(self, tail: int = 2000) -> str:
        path = self.root / "server.out" if self.root else None
        return path.read_text(errors="replace")[-tail:] if path and path.exists() else ""

    def start(self):
        self.root = Path(tempfile.mkdtemp(prefix=f"okta-sync-{self.name}-"))
        with open(self.root / "server.out", "wb") as out:
            # Loopback only: a proxy from the environment must not sit between the server and its clients.
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            self.process = subprocess.Popen(self.command(), cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                detail = self.output()
                self.stop()
                raise ServiceError(f"{self.name} exited with {code} on start:\n{detail}")
            if self.ready():
                return self
            time.sleep(0.1)
        detail = self.output()
        self.stop()
        raise ServiceError(f"{self.name} did not answer within {self.startup_timeout:.0f}s:\n{detail}")

    def stop(self, grace: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=grace)
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None)


class RedisServer(_ChildServer):
    """Debian's redis-server on 127.0.0.1, no persistence (the broker's queue lives as long as the cluster)."""

    name = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.binary = redis_server_binary()
        if self.binary is None:
            raise FileNotFoundError("redis-server not found (apt-get install redis-server)")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--protected-mode", "yes", "--dir", str(self.root), "--daemonize", "no"]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class MotoS3Server(_ChildServer):
    """moto's server (`moto[server]`) on 127.0.0.1: an in-memory stand-in for S3, reached through `endpoint_url`."""

    name = "moto"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=MOTO_REGION,
                            aws_access_key_id=MOTO_ACCESS_KEY_ID, aws_secret_access_key=MOTO_SECRET_ACCESS_KEY)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])]

    @property
    def connection(self) -> dict:
        """An Airflow `aws` connection that reaches this server (what `aws_default` holds in the cluster)."""
        return {"conn_type": "aws", "login": MOTO_ACCESS_KEY_ID, "password": MOTO_SECRET_ACCESS_KEY,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": MOTO_REGION}}

    @property
    def connection_env(self) -> str:
        """`connection` as the JSON value of `AIRFLOW_CONN_AWS_DEFAULT`."""
        return json.dumps(self.connection)
