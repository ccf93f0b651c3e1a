"""DevOrgOptions: every knob of the dev org, shared by the CLI, the in-process server and the launcher."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

# Named like the client's buckets (okta_sync.users.api, okta_sync.groups.api): one per endpoint family.
BUCKETS = ("token", "users_list", "user_read", "user_update", "groups_list", "group_read", "group_members",
           "group_member_update", "user_groups")
DEFAULT_SCOPES = ("okta.users.read", "okta.users.manage", "okta.groups.read", "okta.groups.manage")
FAIL_STATUSES = (500, 502, 503, 504)
# How the seeded users' `created` spreads: evenly over six years, mostly recent, 60% on one import day, or
# sign-ups that stopped years ago (benchmarks and tests of partitioned listing use the skewed shapes).
CREATED_DISTRIBUTIONS = ("uniform", "skewed", "import_day", "stopped")


@dataclass
class DevOrgOptions:
    host: str = "127.0.0.1"
    port: int = 0
    state_dir: str | Path = ".devorg"
    users: int = 1000
    groups: int = 40  # seeded groups, Everyone (BUILT_IN) included; about 30 % of the others are APP_GROUPs
    group_memberships: int | None = None  # total seeded memberships outside Everyone (None: realistic sizes)
    seed: int = 42
    messy_fraction: float = 0.1
    deprovisioned_fraction: float = 0.05
    # Fraction of the non-ACTIVE, non-DEPROVISIONED statuses (spread evenly over the six others).
    other_status_fraction: float = 0.12
    latency_ms: float = 0.0
    # Requests per bucket per one-minute window; 0 = unlimited. Okta paid orgs: 600 for users list/updates.
    rate_limit: int = 600
    rate_limits: dict[str, int] = field(default_factory=dict)  # per-bucket overrides
    concurrency_limit: int = 75  # in-flight requests; 0 = unlimited
    # Okta's windows are one minute; a shorter one (with latency scaled alike) compresses time for benchmarks.
    rate_limit_window: int = 60
    fail_rate: float = 0.0
    fail_statuses: tuple[int, ...] = FAIL_STATUSES
    reset_rate: float = 0.0
    slow_body_rate: float = 0.0
    slow_body_ms: float = 200.0
    truncate_rate: float = 0.0
    invalid_json_rate: float = 0.0
    dpop: str = "off"  # "required" or "off" for the default client
    tls: bool = False
    search_cap: int | None = None
    granted_scopes: tuple[str, ...] = DEFAULT_SCOPES
    client_id: str | None = None  # default: derived from the seed and persisted in the state dir
    key_id: str | None = None  # the kid the default client's public key is registered under (default: its thumbprint)
    json_cache_limit: int = 1_100_000  # cached serialised users; beyond it users are rendered per request
    created_distribution: str = "uniform"

    def __post_init__(self) -> None:
        if self.dpop not in ("required", "off"):
            raise ValueError(f"dpop must be 'required' or 'off', not {self.dpop!r}")
        if self.created_distribution not in CREATED_DISTRIBUTIONS:
            raise ValueError(f"created_distribution must be one of {CREATED_DISTRIBUTIONS}")
        unknown = set(self.rate_limits) - set(BUCKETS)
        if unknown:
            raise ValueError(f"unknown rate-limit buckets: {sorted(unknown)}; known: {BUCKETS}")
        self.granted_scopes = tuple(self.granted_scopes)
        self.fail_statuses = tuple(self.fail_statuses)

    def limit_for(self, bucket: str) -> int:
        return self.rate_limits.get(bucket, self.rate_limit)

    def to_argv(self) -> list[str]:
        """The CLI arguments that reproduce these options (for DevOrgProcess)."""
        argv = [
            "--host", self.host, "--port", str(self.port), "--state-dir", str(Path(self.state_dir).resolve()),
            "--users", str(self.users), "--seed", str(self.seed), "--groups", str(self.groups),
            "--messy-fraction", repr(self.messy_fraction),
            "--deprovisioned-fraction", repr(self.deprovisioned_fraction),
            "--other-status-fraction", repr(self.other_status_fraction),
            "--latency-ms", repr(self.latency_ms), "--rate-limit", str(self.rate_limit),
            "--concurrency-limit", str(self.concurrency_limit), "--rate-limit-window", str(self.rate_limit_window), "--fail-rate", repr(self.fail_rate),
            "--fail-statuses", ",".join(str(s) for s in self.fail_statuses),
            "--reset-rate", repr(self.reset_rate), "--slow-body-rate", repr(self.slow_body_rate),
            "--slow-body-ms", repr(self.slow_body_ms), "--truncate-rate", repr(self.truncate_rate),
            "--invalid-json-rate", repr(self.invalid_json_rate), "--dpop", self.dpop,
            "--granted-scopes", " ".join(self.granted_scopes),
            "--json-cache-limit", str(self.json_cache_limit),
            "--created-distribution", self.created_distribution,
        ]
        for bucket, limit in self.rate_limits.items():
            argv += [f"--rate-limit-{bucket.replace('_', '-')}", str(limit)]
        if self.group_memberships is not None:
            argv += ["--group-memberships", str(self.group_memberships)]
        if self.tls:
            argv.append("--tls")
        if self.search_cap is not None:
            argv += ["--search-cap", str(self.search_cap)]
        if self.client_id:
            argv += ["--client-id", self.client_id]
        if self.key_id:
            argv += ["--key-id", self.key_id]
        return argv

    def replace(self, **changes) -> "DevOrgOptions":
        return dataclasses.replace(self, **changes)
