"""OktaHook: an Airflow connection in, a configured core `OktaClient` out. Thin on purpose.

Nothing touches the network or even reads the key when the hook is created (DAG parsing stays cheap): the client
is built on first use. Tokens are shared across the tasks of one DAG run: `join_run(context)` makes the hook take
the run's token from the token task's XCom (sealed, see `token_handoff`) instead of minting another one.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from datetime import timedelta
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any, TypeVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret
from airflow.sdk.observability.stats import Stats

from okta_sync.airflow.run_tokens import RunIdentity, RunTokenProvider, token_xcom_key  # noqa: F401 (re-exported)
from okta_sync.client import OktaClient, scopes_within, signing_key_for
from okta_sync.airflow.connection_fields import SENSITIVE_EXTRAS, config_from_connection
from okta_sync.config import CLIENT_SECRET_BASIC, MANAGE_SCOPE, OktaConfig, READ_SCOPE
from okta_sync.errors import OktaSyncError
from okta_sync.groups.api import GROUPS_MANAGE_SCOPE, GROUPS_READ_SCOPE
from okta_sync.metrics import PREFIX, Instruments, NoMetrics
from okta_sync.auth.tokens import AccessToken
from okta_sync.users.api import UserListing

DEFAULT_TOKEN_TASK_ID = "okta_token"

_Callable = TypeVar("_Callable", bound=Callable[..., Any])
_FAIL_NOW_CLASSES: dict[type, type] = {}


def fail_now(error: OktaSyncError) -> OktaSyncError:
    """`error` as an exception that is also an `AirflowFailException`: Airflow fails the task without its retries,
    and code that catches the okta_sync class (`except NotFoundError`) still catches it. Same message and fields."""
    if isinstance(error, AirflowFailException):
        return error
    kind = type(error)
    if kind not in _FAIL_NOW_CLASSES:
        _FAIL_NOW_CLASSES[kind] = type(kind.__name__, (kind, AirflowFailException), {"__doc__": kind.__doc__})
    failed = BaseException.__new__(_FAIL_NOW_CLASSES[kind], *error.args)
    failed.__dict__.update(error.__dict__)
    return failed


@contextlib.contextmanager
def failing_fast() -> Iterator[None]:
    """Re-raise an okta_sync error that a retry cannot fix (`retryable` False: a refused feed, a bad setting, a
    missing scope or admin role) as `fail_now(error)`, so the task ends at once instead of waiting out retries."""
    try:
        yield
    except OktaSyncError as error:
        if error.retryable or isinstance(error, AirflowFailException):
            raise
        raise fail_now(error).with_traceback(error.__traceback__) from None


def fail_fast(function: _Callable) -> _Callable:
    """`failing_fast` around a function (a generator function: around its iteration). Used on every operator's
    `execute` and the hook's entry points, the one place the Airflow layer turns errors into task outcomes."""
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def iterate(*args: Any, **kwargs: Any) -> Any:
            with failing_fast():
                return (yield from function(*args, **kwargs))
        return iterate  # type: ignore[return-value]

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with failing_fast():
            return function(*args, **kwargs)
    return call  # type: ignore[return-value]


class OktaHook(BaseHook):
    """Interact with Okta's Users API as a service app (OAuth 2.0 client credentials with `private_key_jwt`).

    :param okta_conn_id: the `okta` connection: host = org URL, login = client ID, password = private key (or
        extra `private_key_path`), extra = key_id, scopes and the other settings listed in the README.
    :param overrides: non-secret settings that win over the connection's extras (e.g. `page_size=100`,
        `max_concurrency=4`, `scopes="okta.users.read"`). Secrets come only from the connection.
    """

    conn_name_attr = "okta_conn_id"
    default_conn_name = "okta_default"
    conn_type = "okta"
    hook_name = "Okta"

    def __init__(self, okta_conn_id: str = default_conn_name, **overrides: Any) -> None:
        super().__init__()
        self.okta_conn_id = okta_conn_id
        self.overrides = overrides
        self._run: RunIdentity | None = None

    # -- configuration and client ----------------------------------------------------------------------------
    @cached_property
    @fail_fast
    def config(self) -> OktaConfig:
        conn = self.get_connection(self.okta_conn_id)
        if conn.password:
            mask_secret(conn.password)
        extra = conn.extra_dejson or {}
        for name in SENSITIVE_EXTRAS.intersection(extra):
            if extra[name]:
                mask_secret(str(extra[name]))
        return config_from_connection(
            host=conn.host, login=conn.login, password=conn.password, schema=conn.schema, port=conn.port,
            extra=extra, overrides=self.overrides,
        )

    @cached_property
    def token_provider(self) -> RunTokenProvider:
        """The client's token provider: the DAG run's sealed token once `join_run` names the run."""
        provider = RunTokenProvider(self.config, signing_key_for(self.config), metrics=self.metrics)
        provider.run = self._run
        return provider

    @cached_property
    @fail_fast
    def client(self) -> OktaClient:
        provider = self.token_provider
        return OktaClient(self.config, on_new_token=_mask_token, metrics=self.metrics,
                          signing_key=provider.signing_key, token_provider=provider)

    @cached_property
    def metrics(self) -> Instruments:
        """The client's instrumentation channel, sent to Airflow's Stats."""
        return Instruments(AirflowStatsMetrics())

    def get_conn(self) -> OktaClient:
        return self.client

    # -- one token per DAG run -----------------------------------------------------------------------------------
    def join_run(self, context: Mapping[str, Any], *, token_task_id: str | None = DEFAULT_TOKEN_TASK_ID) -> "OktaHook":
        """Share tokens with the other tasks of this DAG run (through the token task's sealed XCom)."""
        ti = context["ti"]
        self._run = RunIdentity(ti=ti, run_id=context["run_id"], dag_id=ti.dag_id, task_id=ti.task_id,
                                token_task_id=token_task_id)
        if "token_provider" in self.__dict__:  # already built: it follows the run from now on
            self.token_provider.run = self._run
        return self

    @property
    def tokens_adopted(self) -> int:
        """Tokens this hook took from the run's token task instead of minting."""
        return int(self.metrics.count("token.adopted"))

    @fail_fast
    def mint_run_tokens(self, scope_sets: Iterable[Iterable[str]]) -> list[dict[str, Any]]:
        """For the token task: mint (or reuse) one token per scope set and publish it sealed. Returns metadata only.
        Every set is checked against the connection's `scopes` (a ceiling) before any token is minted."""
        wanted = [scopes_within(scopes, self.client.config.scopes, "the run's tokens (OktaTokenOperator)")
                  for scopes in scope_sets]
        published = []
        for scopes in wanted:
            token = self.client.get_token(scopes)
            published.append({"scopes": list(token.scopes), "token_type": token.token_type,
                              "expires_at": round(token.expires_at)})
        return published

    # -- the core API, for data-team @task code ------------------------------------------------------------------
    def list_users(self, *, search: str | None = None, filter: str | None = None, q: str | None = None,
                   limit: int | None = None, fields: str | None = None) -> UserListing:
        """The users matching the query, as a value: iterate it for users, `.pages()` for pages. Nothing is
        requested until iterated (an operator's `execute` turns errors a retry cannot fix into a failed task)."""
        return self.client.list_users(search=search, filter=filter, q=q, limit=limit, fields=fields)

    # Errors a retry cannot fix end the task at once (`fail_fast`); they stay catchable as their okta_sync class.
    @fail_fast
    def iter_users(self, *, search: str | None = None, filter: str | None = None,
                   limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Shorthand for iterating `list_users(search=..., filter=..., limit=...)`."""
        yield from self.client.iter_users(search=search, filter=filter, limit=limit)

    @fail_fast
    def get_user(self, id_or_login: str) -> dict[str, Any]:
        return self.client.get_user(id_or_login)

    @fail_fast
    def update_profile(self, user_id: str, profile: Mapping[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        return self.client.update_profile(user_id, profile, if_match=if_match)

    @fail_fast
    def get_token(self, scopes: Iterable[str] | None = None) -> AccessToken:
        """A token for `scopes` (default: the connection's). With `client_auth: client_secret_basic` and an
        `authorization_server_id`, a custom authorization server's own scopes, e.g. for an internal API."""
        return self.client.get_token(scopes)

    def test_connection(self) -> tuple[bool, str]:
        """Mint a read token and read one user; then say whether the manage scope can be minted, whether groups can
        be read (one group page) and memberships written, and whether the app requires DPoP. Reading users failing
        is a failed test; the rest is reported, not failed (a read-only or users-only deployment grants less)."""
        try:
            if self.config.client_auth == CLIENT_SECRET_BASIC:  # a custom server's own scopes: no Users API
                token = self.client.get_token()
                return True, (f"Token issued by authorization server {self.config.authorization_server_id or '(token_url)'}"
                              f" with scopes: {' '.join(token.scopes)}; {self._dpop_status(token)}.")
            token = self.client.get_token((READ_SCOPE,))
            first_page = next(self.client.iter_user_pages(limit=1), [])
        except OktaSyncError as exc:
            return False, str(exc)
        users = "read one user" if first_page else "the org has no users to read"
        return True, "; ".join([f"Token issued with scopes: {' '.join(token.scopes)}, {users}",
                                self._manage_scope_status(), *self._groups_scope_status(),
                                self._dpop_status(token)]) + "."

    def _manage_scope_status(self) -> str:
        if MANAGE_SCOPE not in self.config.scopes:
            return f"{MANAGE_SCOPE} is not in this connection's scopes (read-only: pushes cannot write)"
        try:
            self.client.get_token((MANAGE_SCOPE,))
        except OktaSyncError as exc:
            return f"{MANAGE_SCOPE} cannot be minted, pushes will fail ({exc})"
        return f"{MANAGE_SCOPE} can be minted (pushes can write)"

    def _groups_scope_status(self) -> list[str]:
        """Whether the groups DAGs can read (a token, one group page) and membership changes can write."""
        scopes = self.config.scopes
        if GROUPS_READ_SCOPE not in scopes and GROUPS_MANAGE_SCOPE not in scopes:
            return [f"neither {GROUPS_READ_SCOPE} nor {GROUPS_MANAGE_SCOPE} is in this connection's scopes (the groups "
                    "DAGs cannot run)"]
        try:
            groups = next(iter(self.client.list_groups(limit=1).pages()), [])
        except OktaSyncError as exc:
            read = f"groups cannot be read, the groups DAGs will fail ({exc})"
        else:
            read = "read one group" if groups else "the org has no groups to read"
        if GROUPS_MANAGE_SCOPE not in scopes:
            return [read, f"{GROUPS_MANAGE_SCOPE} is not in this connection's scopes (membership changes cannot write)"]
        try:
            self.client.get_token((GROUPS_MANAGE_SCOPE,))
        except OktaSyncError as exc:
            return [read, f"{GROUPS_MANAGE_SCOPE} cannot be minted, membership changes will fail ({exc})"]
        return [read, f"{GROUPS_MANAGE_SCOPE} can be minted (membership changes can write)"]

    def _dpop_status(self, token: AccessToken) -> str:
        if not token.is_dpop:
            return "the app does not require DPoP"
        if self.config.dpop == "auto":
            return "the app requires DPoP (dpop=auto turned it on)"
        return "DPoP-bound token (dpop=on)"


def _mask_token(token: AccessToken) -> None:
    mask_secret(token.value)


class AirflowStatsMetrics(NoMetrics):
    """The core's metrics through Airflow's own `Stats` (StatsD, Datadog or OpenTelemetry, as configured)."""

    def incr(self, name: str, count: int = 1) -> None:
        Stats.incr(f"{PREFIX}.{name}", count)

    def timing(self, name: str, seconds: float) -> None:
        Stats.timing(f"{PREFIX}.{name}", timedelta(seconds=seconds))
