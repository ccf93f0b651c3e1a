"""One token per DAG run and scope set: the token provider the hook hands to `OktaClient` at construction.

The token task mints each token and publishes it sealed (`token_handoff`) in its XCom; the other tasks of the run
open it instead of minting their own. The core only sees a `TokenProvider`: it never calls into this layer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from okta_sync.airflow.token_handoff import SealedTokenError, open_sealed_token, seal_token
from okta_sync.auth.keys import SigningKey
from okta_sync.auth.tokens import AccessToken, scope_key
from okta_sync.config import OktaConfig
from okta_sync.metrics import Metrics, NoMetrics

log = logging.getLogger(__name__)


def token_xcom_key(scopes: Iterable[str]) -> str:
    """XCom key of the sealed token for one scope set (no secret in it)."""
    return "okta_token_" + hashlib.sha256(" ".join(scope_key(scopes)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunIdentity:
    """The task instance of one DAG run, and which task of the run mints and publishes the tokens."""

    ti: Any
    run_id: str
    dag_id: str
    task_id: str
    token_task_id: str | None

    @property
    def is_token_task(self) -> bool:
        return self.task_id == self.token_task_id


class RunTokenProvider:
    """A `TokenProvider`: the run's sealed token when there is a fresh one, else a new token (published sealed when
    this task is the token task). Without a run (`run is None`) or a key to seal with, it always mints."""

    def __init__(self, config: OktaConfig, signing_key: SigningKey | None, *, metrics: Metrics | None = None):
        self.config = config
        self.signing_key = signing_key
        self.metrics = metrics or NoMetrics()
        self.run: RunIdentity | None = None

    def __call__(self, scopes: tuple[str, ...], mint: Callable[[tuple[str, ...]], AccessToken]) -> AccessToken:
        run = self.run
        if run is None or not run.token_task_id or self.signing_key is None:
            return mint(scopes)  # no key (client_secret_basic): nothing to seal a shared token with
        if not run.is_token_task:
            sealed = run.ti.xcom_pull(task_ids=run.token_task_id, key=token_xcom_key(scopes))
            token = self._open(sealed, scopes) if sealed else None
            if token is not None and not token.is_expired(self.config.token_refresh_margin):
                self.metrics.incr("token.adopted")
                return token
        token = mint(scopes)
        if run.is_token_task:
            run.ti.xcom_push(key=token_xcom_key(scopes), value=seal_token(token, self.signing_key, self.seal_context(scopes)))
        return token

    def seal_context(self, scopes: Iterable[str]) -> str:
        """What a sealed token is bound to: the run, the app, the token URL and the scopes."""
        config, run = self.config, self.run
        return "|".join([run.dag_id if run else "", run.run_id if run else "", config.org_url, config.client_id,
                         config.resolved_token_url, " ".join(scope_key(scopes))])

    def _open(self, sealed: str, scopes: tuple[str, ...]) -> AccessToken | None:
        try:
            return open_sealed_token(sealed, self.signing_key, self.seal_context(scopes))
        except SealedTokenError as exc:
            log.warning("Not using the run's shared token (%s); minting a new one", exc)
            return None
