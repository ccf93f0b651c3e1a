"""okta_sync: sync Okta users from Apache Airflow.

The core (everything re-exported here except the Airflow layer) is plain Python and imports no Airflow:

    from okta_sync import OktaClient, OktaConfig
    with OktaClient(OktaConfig(org_url="https://dev-123.okta.com", client_id="0oa...",
                               private_key_path="key.pem", key_id="my-kid")) as okta:
        for user in okta.list_users():  # a UserListing: `.pages()` for pages
            print(user["profile"]["login"])

The Airflow layer (`OktaHook` and the operators) is re-exported lazily: `from okta_sync import OktaHook` imports
Airflow, `import okta_sync` alone does not.
"""

from typing import Any

from okta_sync.client import OktaClient
from okta_sync.clock import SYSTEM_CLOCK, Clock
from okta_sync.config import DEFAULT_SCOPES, MANAGE_SCOPE, READ_SCOPE, OktaConfig
from okta_sync.auth.keys import SigningKey, load_signing_key
from okta_sync.auth.tokens import AccessToken, TokenProvider
from okta_sync.http.transport import RetryPolicy
from okta_sync.metrics import Metrics
from okta_sync.groups.members import MemberPage
from okta_sync.users.api import UserListing, UserVersion
from okta_sync.users.pages import UserPage
from okta_sync.users.partitions import PartitionedUserListing
from okta_sync.errors import (
    AuthenticationError,
    ChangesFeedError,
    CircuitOpenError,
    ConfigurationError,
    GroupExportError,
    InputFileError,
    InputTooLargeError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    LinkHeaderError,
    LocationError,
    ManifestError,
    MissingAdminRoleError,
    MissingScopeError,
    NormalizerConfigError,
    NotFoundError,
    OktaApiError,
    OktaConnectionError,
    OktaSyncError,
    OutcomeUnknownError,
    PartitionTooLargeError,
    PermissionDeniedError,
    PlanFileError,
    PreconditionFailedError,
    PrivateKeyError,
    PushFailedError,
    RateLimitError,
    RateLimitWaitError,
    RequestDeadlineError,
    ResponseLimitError,
    ScopeNotConfiguredError,
    SealedTokenError,
    ServerError,
    TLSVerificationError,
    TokenRequestError,
    UnsafeUrlError,
    UnsortedListingError,
    UntrustedValueError,
    WarehouseLoadError,
)
from okta_sync.sync.change_plan import NoChange, Skipped, plan_changes_feed, plan_hygiene
from okta_sync.sync.changes_feed import read_changes_feed
from okta_sync.sync.export import read_users_jsonl, write_users_jsonl
from okta_sync.sync.plan_file import read_plan, write_plan
from okta_sync.sync.profile_diff import ProfileChange, diff_profile
from okta_sync.sync.profile_rules import Normalizer
from okta_sync.sync.push import PushOptions, push_changes
from okta_sync.sync.reports import ReportRow, ReportStatus, report_writer
from okta_sync.version import __version__

_AIRFLOW_LAYER = {
    "OktaHook": "okta_sync.airflow.hooks",
    "OktaTokenOperator": "okta_sync.airflow.operators",
    "OktaExportUsersOperator": "okta_sync.airflow.operators",
    "OktaPlanProfileChangesOperator": "okta_sync.airflow.operators",
    "OktaPushProfileChangesOperator": "okta_sync.airflow.operators",
    "OktaExportGroupsOperator": "okta_sync.airflow.group_operators",
    "OktaPlanMembershipChangesOperator": "okta_sync.airflow.group_operators",
    "OktaPushMembershipChangesOperator": "okta_sync.airflow.group_operators",
}


def __getattr__(name: str) -> Any:
    if name in _AIRFLOW_LAYER:
        import importlib

        return getattr(importlib.import_module(_AIRFLOW_LAYER[name]), name)
    raise AttributeError(f"module 'okta_sync' has no attribute {name!r}")


__all__ = [
    *_AIRFLOW_LAYER,
    "AccessToken",
    "AuthenticationError",
    "ChangesFeedError",
    "CircuitOpenError",
    "Clock",
    "ConfigurationError",
    "GroupExportError",
    "DEFAULT_SCOPES",
    "InputFileError",
    "InputTooLargeError",
    "InvalidClientError",
    "InvalidRequestError",
    "InvalidScopeError",
    "LinkHeaderError",
    "LocationError",
    "MANAGE_SCOPE",
    "ManifestError",
    "Metrics",
    "MemberPage",
    "MissingAdminRoleError",
    "MissingScopeError",
    "NoChange",
    "Normalizer",
    "NormalizerConfigError",
    "NotFoundError",
    "OktaApiError",
    "OktaClient",
    "OktaConfig",
    "OktaConnectionError",
    "OktaSyncError",
    "OutcomeUnknownError",
    "PartitionTooLargeError",
    "PartitionedUserListing",
    "PermissionDeniedError",
    "PlanFileError",
    "PreconditionFailedError",
    "PrivateKeyError",
    "ProfileChange",
    "PushFailedError",
    "PushOptions",
    "READ_SCOPE",
    "RateLimitError",
    "RateLimitWaitError",
    "ReportRow",
    "ReportStatus",
    "RequestDeadlineError",
    "ResponseLimitError",
    "RetryPolicy",
    "SYSTEM_CLOCK",
    "ScopeNotConfiguredError",
    "SealedTokenError",
    "ServerError",
    "SigningKey",
    "Skipped",
    "TLSVerificationError",
    "TokenProvider",
    "TokenRequestError",
    "UnsafeUrlError",
    "UnsortedListingError",
    "UntrustedValueError",
    "UserListing",
    "UserPage",
    "UserVersion",
    "WarehouseLoadError",
    "__version__",
    "diff_profile",
    "load_signing_key",
    "plan_changes_feed",
    "plan_hygiene",
    "push_changes",
    "read_changes_feed",
    "read_plan",
    "read_users_jsonl",
    "report_writer",
    "write_plan",
    "write_users_jsonl",
]
