"""The diff between Okta's current profile and a desired one, and the change it produces."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

HYGIENE = "hygiene"
CHANGES_FEED = "changes_feed"


def diff_profile(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(attribute, old, new) for each desired attribute whose value differs from Okta's current one.

    `desired` may be partial: attributes it does not mention are not compared. Okta omits attributes that are
    null, so a missing attribute counts as None.
    """
    for name, new in desired.items():
        old = current.get(name)
        if not _same(old, new):
            yield name, old, new


def _same(old: Any, new: Any) -> bool:
    # 1 == True and 1 == 1.0 in Python; Okta's JSON keeps them apart.
    return type(old) is type(new) and old == new


@dataclass(frozen=True)
class ProfileChange:
    """The attributes of one user to update: attribute -> (old, new), old as read from Okta."""

    user_id: str
    login: str | None
    status: str | None
    changes: Mapping[str, tuple[Any, Any]]
    source: str = HYGIENE
    line: int | None = None  # the changes-feed line it came from, when it came from a feed

    def update_body(self) -> dict[str, dict[str, Any]]:
        """The partial-update body for POST /api/v1/users/{id}: only the changed attributes."""
        return {"profile": {name: new for name, (_old, new) in self.changes.items()}}


def change_from_diff(
    user: Mapping[str, Any], desired: Mapping[str, Any], *, source: str = HYGIENE, line: int | None = None
) -> ProfileChange | None:
    """The change that brings an Okta user dict to `desired`, or None when nothing differs."""
    profile = user.get("profile") or {}
    changes = {name: (old, new) for name, old, new in diff_profile(profile, desired)}
    if not changes:
        return None
    return ProfileChange(
        user_id=user["id"],
        login=profile.get("login"),
        status=user.get("status"),
        changes=changes,
        source=source,
        line=line,
    )
