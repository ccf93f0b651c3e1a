"""Okta's base user profile: attribute names, the ones we clean by default, and values Okta refuses.

Pure data and one check; no Airflow, no network.
"""

from __future__ import annotations

import re
from typing import Any

# Okta's base user profile (Universal Directory default schema).
OKTA_BASE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "firstName", "lastName", "middleName", "honorificPrefix", "honorificSuffix",
        "email", "secondEmail", "login", "title", "displayName", "nickName", "profileUrl",
        "primaryPhone", "mobilePhone", "streetAddress", "city", "state", "zipCode",
        "postalAddress", "countryCode", "preferredLanguage", "locale", "timezone",
        "userType", "employeeNumber", "costCenter", "organization", "division",
        "department", "managerId", "manager",
    }
)

# Human-readable names and labels. Identifiers that other systems join on (login, email, secondEmail,
# employeeNumber, managerId), codes Okta validates (countryCode, locale, preferredLanguage, timezone), phone
# numbers, URLs, zip codes and the multi-line postalAddress are left alone unless a rule opts them in: a cleaned
# identifier is a changed identifier, and collapsing whitespace would flatten an address's line breaks.
DEFAULT_NORMALIZED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "firstName", "lastName", "middleName", "honorificPrefix", "honorificSuffix",
        "displayName", "nickName", "title", "department", "division", "organization",
        "costCenter", "city", "state", "streetAddress", "userType", "manager",
    }
)

# Okta's documented limits for base attributes: (min length, max length, required).
_LENGTH_LIMITS: dict[str, tuple[int, int, bool]] = {
    "firstName": (1, 50, True),
    "lastName": (1, 50, True),
    "login": (5, 100, True),
    "email": (5, 100, True),
    "secondEmail": (5, 100, False),
}
_EMAIL_ATTRIBUTES = frozenset({"email", "secondEmail"})
_EMAIL_SHAPE = re.compile(r"^[^\s@]+@[^\s@]+$")
_COUNTRY_CODE_SHAPE = re.compile(r"^[A-Z]{2}$")


def refusal_reason(attribute: str, value: Any) -> str | None:
    """Why Okta would refuse `value` for a base-profile `attribute`, or None if it would accept it.

    Only Okta's documented rules for the base profile are checked; custom attributes pass (their schema is the
    org's, not ours). `None` means clearing the attribute.
    """
    if attribute not in OKTA_BASE_ATTRIBUTES:
        return None
    if value is None:
        limits = _LENGTH_LIMITS.get(attribute)
        if limits and limits[2]:
            return f"{attribute} is required and cannot be cleared"
        return None
    if not isinstance(value, str):
        return f"{attribute} must be a string, got {type(value).__name__}"
    return _length_reason(attribute, value) or _shape_reason(attribute, value)


def _length_reason(attribute: str, value: str) -> str | None:
    limits = _LENGTH_LIMITS.get(attribute)
    if limits is None:
        return None
    low, high, _required = limits
    if len(value) > high:
        return f"{attribute} is {len(value)} characters; Okta allows at most {high}"
    if len(value) < low:
        return f"{attribute} is {len(value)} characters; Okta needs at least {low}"
    return None


def _shape_reason(attribute: str, value: str) -> str | None:
    if attribute in _EMAIL_ATTRIBUTES and not _EMAIL_SHAPE.match(value):
        return f"{attribute} is not an email address"
    if attribute == "countryCode" and not _COUNTRY_CODE_SHAPE.match(value):
        return "countryCode must be an ISO 3166-1 alpha-2 code such as 'US'"
    return None
