"""The error tree: every Okta answer maps to the class that says what it means, and every class is in the tree."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest

import okta_sync
from okta_sync import errors
from okta_sync.http.api_errors import api_error, token_error
from okta_sync.errors import (
    AuthenticationError,
    ChangesFeedError,
    ConfigurationError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    LocationError,
    MissingAdminRoleError,
    MissingScopeError,
    NotFoundError,
    OktaApiError,
    OktaConnectionError,
    OktaSyncError,
    OutcomeUnknownError,
    PermissionDeniedError,
    PlanFileError,
    PreconditionFailedError,
    RateLimitError,
    ServerError,
    TLSVerificationError,
    TokenRequestError,
)

AIRFLOW_LAYER = "okta_sync.airflow"


def okta_answer(status: int, code: str | None = None, *, method: str = "GET", path: str = "/api/v1/users/00u1",
                www_authenticate: str | None = None) -> OktaApiError:
    body = json.dumps({"errorCode": code, "errorSummary": "summary", "errorId": "oae1",
                       "errorCauses": []}).encode() if code else b""
    headers = {"Content-Type": "application/json", "X-Okta-Request-Id": "req-1"}
    if www_authenticate:
        headers["WWW-Authenticate"] = www_authenticate
    return api_error(status=status, method=method, path=path, headers=headers, content=body)


@pytest.mark.parametrize("status, code, www_authenticate, expected, retryable", [
    (400, "E0000001", None, InvalidRequestError, False),
    (400, "E0000003", None, InvalidRequestError, False),
    (401, "E0000011", 'Bearer error="invalid_token"', AuthenticationError, False),
    (403, None, 'Bearer error="insufficient_scope", scope="okta.users.manage"', MissingScopeError, False),
    (403, "E0000006", None, MissingAdminRoleError, False),
    (403, "E0000005", None, PermissionDeniedError, False),
    (404, "E0000007", None, NotFoundError, False),
    (412, "E0000000", None, PreconditionFailedError, False),
    (429, "E0000047", None, RateLimitError, True),
    (500, "E0000009", None, ServerError, True),
    (503, None, None, ServerError, True),
    (409, "E0000001", None, OktaApiError, False),
], ids=["400-validation", "400-body", "401", "403-scope", "403-admin-role", "403-other", "404", "412", "429", "500",
        "503-gateway", "409-unmapped"])
def test_each_api_answer_maps_to_its_class(status, code, www_authenticate, expected, retryable):
    error = okta_answer(status, code, www_authenticate=www_authenticate)
    assert type(error) is expected
    assert error.retryable is retryable
    assert (error.status, error.error_code, error.request_id) == (status, code, "req-1")


def test_a_missing_scope_names_the_scope_okta_asked_for_or_the_one_the_call_needs():
    asked = okta_answer(403, www_authenticate='Bearer error="insufficient_scope", scope="okta.users.manage"')
    assert asked.scope == "okta.users.manage" and "okta.users.manage" in asked.hint
    unnamed = okta_answer(403, method="POST", www_authenticate='Bearer error="insufficient_scope"')
    assert unnamed.scope == "okta.users.manage"
    read = okta_answer(403, method="GET", www_authenticate='Bearer error="insufficient_scope"')
    assert read.scope == "okta.users.read"
    assert isinstance(read, PermissionDeniedError) and not isinstance(read, MissingAdminRoleError)


def test_a_scope_missing_from_the_connection_is_a_missing_scope_and_a_setting_to_fix():
    error = errors.ScopeNotConfiguredError(operation="update_profile", scope="okta.users.manage",
                                           configured=("okta.users.read",))
    assert isinstance(error, MissingScopeError) and isinstance(error, PermissionDeniedError)
    assert isinstance(error, ConfigurationError) and isinstance(error, ValueError)
    assert (error.scope, error.field, error.operation, error.status) == (
        "okta.users.manage", "scopes", "update_profile", None)  # raised before any request: Okta was not asked
    assert error.retryable is False
    assert str(error).startswith("scopes: update_profile needs the scope okta.users.manage")
    assert "Okta API Scopes" in error.hint


def test_a_missing_admin_role_is_told_apart_from_a_missing_scope():
    error = okta_answer(403, "E0000006")
    assert isinstance(error, PermissionDeniedError) and not isinstance(error, MissingScopeError)
    assert "admin role" in error.hint


@pytest.mark.parametrize("status, oauth_error, expected, meaning, retryable", [
    (401, "invalid_client", InvalidClientError, AuthenticationError, False),
    (400, "invalid_scope", InvalidScopeError, MissingScopeError, False),
    (400, "invalid_grant", TokenRequestError, TokenRequestError, False),
    (429, "too_many_requests", TokenRequestError, TokenRequestError, True),
    (503, "http_error", TokenRequestError, TokenRequestError, True),
], ids=["invalid_client", "invalid_scope", "invalid_grant", "429", "503"])
def test_each_token_endpoint_refusal_maps_to_its_class(status, oauth_error, expected, meaning, retryable):
    error = token_error(status=status, error=oauth_error, error_description="described",
                        token_url="https://dev-1.okta.com/oauth2/v1/token")
    assert type(error) is expected and isinstance(error, meaning) and isinstance(error, OktaApiError)
    assert error.retryable is retryable
    assert (error.status, error.error, error.error_code, error.error_description) == (
        status, oauth_error, oauth_error, "described")
    assert str(error).startswith(f"token request to https://dev-1.okta.com/oauth2/v1/token failed, HTTP {status}")


@pytest.mark.parametrize("error, retryable", [
    (ConfigurationError("page_size", "bad"), False),
    (ChangesFeedError("bad"), False),
    (PlanFileError("bad"), False),
    (LocationError("bad"), False),
    (OktaConnectionError("unreachable"), True),
    (OutcomeUnknownError("lost"), True),
    (TLSVerificationError("bad certificate"), False),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_retryable_says_whether_running_again_can_help(error, retryable):
    assert error.retryable is retryable


def test_files_and_settings_stay_value_errors_for_callers_that_catch_them():
    for kind in (ConfigurationError, ChangesFeedError, PlanFileError, LocationError, errors.NormalizerConfigError,
                 errors.WarehouseLoadError, errors.InputTooLargeError):
        assert issubclass(kind, ValueError) and issubclass(kind, OktaSyncError)


def core_modules() -> list:
    """Every module of the package, subpackages included, except the Airflow layer's (okta_sync.airflow)."""
    names = [info.name for info in pkgutil.walk_packages(okta_sync.__path__, prefix="okta_sync.")]
    assert "okta_sync.errors" in names and len(names) > 20
    return [importlib.import_module(name) for name in names
            if name != AIRFLOW_LAYER and not name.startswith(AIRFLOW_LAYER + ".")]


def test_every_exception_class_defined_in_the_package_derives_from_oktasyncerror():
    """Walks every core module (the Airflow layer's are checked in tests/airflow); private control-flow signals
    (`_RetryableFailure`, push's `_Fatal`) never leave their module and are left out."""
    found = []
    for module in core_modules():
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__ \
                    and not name.startswith("_"):
                found.append(value)
    assert {cls.__name__ for cls in found} >= {"OktaSyncError", "ChangesFeedError", "SealedTokenError",
                                               "PartitionTooLargeError", "WarehouseLoadError", "LocationError"}
    outside = [f"{cls.__module__}.{cls.__name__}" for cls in found if not issubclass(cls, OktaSyncError)]
    assert outside == []


def test_the_whole_tree_is_exported_from_the_package():
    tree = [value for value in vars(errors).values()
            if inspect.isclass(value) and issubclass(value, OktaSyncError) and not value.__name__.startswith("_")]
    missing = [cls.__name__ for cls in tree if getattr(okta_sync, cls.__name__, None) is not cls]
    assert missing == [] and all(cls.__name__ in okta_sync.__all__ for cls in tree)


def test_an_error_never_echoes_a_header_or_a_body_it_did_not_understand():
    content = b"<html>Bearer eyJhbGciOi.secret.token</html>"
    error = api_error(status=502, method="GET", path="/api/v1/users", content=content,
                      headers={"Content-Type": "text/html", "Authorization": "Bearer eyJhbGciOi.secret.token"})
    assert isinstance(error, ServerError)
    assert "secret" not in str(error) and "secret" not in repr(error)
