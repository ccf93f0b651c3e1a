"""`request_deadline` held while the status line and headers arrive, not only the body.

`read_timeout` bounds each socket read, so a server trickling its status line and headers a byte at a time never
trips it, and http.client reads them before `response_body.read_body` (which checks the deadline between reads)
gets a chance. Here a watchdog shuts the socket down when the deadline passes during that phase: the blocked read
returns at once, the connection is discarded by urllib3, and `Transport.send` raises `RequestDeadlineError`.

How it is wired: `Transport.send` opens `watching_headers(deadline)` around the request; the session's adapter
(`DeadlineAdapter`) makes connections whose `getresponse` registers their socket with the watchdog for as long as
it runs. One daemon thread serves every request of the process; it sleeps until the earliest deadline and ends
after `_LINGER` seconds with nothing to watch, so an idle worker holds no thread. Registering is a heap push under
a lock (no thread per request): the normal path costs microseconds.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_LINGER = 2.0  # seconds the watchdog thread waits for more work before it ends


@dataclass
class HeadersDeadline:
    """One request's deadline on the `time.monotonic()` clock; `passed` once the watchdog shut its socket."""

    at: float
    passed: bool = False

    @classmethod
    def after(cls, seconds: float) -> "HeadersDeadline":
        return cls(time.monotonic() + seconds)


@dataclass(order=True)
class _Watch:
    at: float
    order: int
    sock: Any = field(compare=False)
    deadline: HeadersDeadline = field(compare=False)
    done: bool = field(default=False, compare=False)


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[_Watch] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: Any, deadline: HeadersDeadline) -> _Watch:
        entry = _Watch(deadline.at, next(self._order), sock, deadline)
        with self._lock:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="okta-sync-request-deadline", daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._lock.notify()
        return entry

    def release(self, entry: _Watch) -> None:
        with self._lock:  # after this, the watchdog never touches the socket: it is the pool's again
            entry.done = True

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait(_LINGER)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                wait = self._heap[0].at - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                _shut(heapq.heappop(self._heap))


def _shut(entry: _Watch) -> None:
    entry.done = entry.deadline.passed = True
    with contextlib.suppress(OSError):
        entry.sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()
_current = threading.local()


def _reset_in_child() -> None:
    """A forked child (Celery's prefork pool, a forking task runner) has no watchdog thread, and the lock may have
    been held by it at the fork: start from a fresh one."""
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


@contextlib.contextmanager
def watching_headers(deadline: HeadersDeadline) -> Iterator[HeadersDeadline]:
    """The requests this thread makes inside the block must have their status line and headers by `deadline`;
    `deadline.passed` tells afterwards whether the watchdog had to cut one short."""
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        yield deadline
    finally:
        _current.deadline = previous


class _Watched:
    """Mixin for urllib3 connections: `getresponse` (status line and headers) runs under the thread's deadline."""

    sock: Any

    def getresponse(self) -> Any:
        deadline = getattr(_current, "deadline", None)
        if deadline is None or self.sock is None:
            return super().getresponse()  # type: ignore[misc]
        entry = _WATCHDOG.watch(self.sock, deadline)
        try:
            return super().getresponse()  # type: ignore[misc]
        finally:
            _WATCHDOG.release(entry)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections (direct or through an http(s) proxy) honour `headers_deadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS managers build their own pools
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager
