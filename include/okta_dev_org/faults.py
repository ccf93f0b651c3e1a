"""Seeded fault injection: the same seed and the same request order give the same faults."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

PRE_FAULTS = ("reset", "error")  # decided before the request is handled: it has no effect
POST_FAULTS = ("slow_body", "truncate", "invalid_json")  # the request took effect, the response is damaged


@dataclass
class FaultSettings:
    fail_rate: float = 0.0
    fail_statuses: tuple[int, ...] = (500, 502, 503, 504)
    reset_rate: float = 0.0
    slow_body_rate: float = 0.0
    slow_body_ms: float = 200.0
    truncate_rate: float = 0.0
    invalid_json_rate: float = 0.0
    latency_ms: float = 0.0
    # Which routes faults apply to: "api" (/api/v1), "token" (token endpoint) or "all".
    scope: str = "all"
    extra: dict = field(default_factory=dict)


@dataclass
class Fault:
    kind: str  # "reset", "error", "slow_body", "truncate", "invalid_json"
    status: int = 0


class FaultInjector:
    def __init__(self, settings: FaultSettings, seed: int):
        self.settings = settings
        self.random = random.Random(seed)
        self.lock = threading.Lock()

    def configure(self, seed: int | None = None, **changes) -> None:
        with self.lock:
            for name, value in changes.items():
                if not hasattr(self.settings, name):
                    raise ValueError(f"unknown fault setting {name!r}")
                if name == "fail_statuses":
                    value = tuple(int(v) for v in value)
                setattr(self.settings, name, value)
            if seed is not None:
                self.random = random.Random(seed)

    def applies(self, route_kind: str) -> bool:
        scope = self.settings.scope
        return scope == "all" or scope == route_kind

    def decide(self) -> tuple[Fault | None, Fault | None]:
        """(pre-handling fault, post-handling fault) for one request: one draw per kind, in a fixed order."""
        s = self.settings
        with self.lock:
            draws = [self.random.random() for _ in range(5)]
            status = self.random.choice(s.fail_statuses) if s.fail_statuses else 500
        if draws[0] < s.reset_rate:
            return Fault("reset"), None
        if draws[1] < s.fail_rate:
            return Fault("error", status), None
        if draws[2] < s.truncate_rate:
            return None, Fault("truncate")
        if draws[3] < s.invalid_json_rate:
            return None, Fault("invalid_json")
        if draws[4] < s.slow_body_rate:
            return None, Fault("slow_body")
        return None, None

    def latency(self) -> None:
        if self.settings.latency_ms > 0:
            time.sleep(self.settings.latency_ms / 1000)
