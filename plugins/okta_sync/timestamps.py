"""Okta's timestamp format (ISO-8601, UTC, milliseconds, `Z`: 2024-05-01T00:00:00.000Z), written and read in one place."""

from __future__ import annotations

from datetime import datetime, timezone


def okta_timestamp(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_okta_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def okta_time(epoch_ms: int) -> str:
    """Epoch milliseconds -> Okta's form."""
    seconds, millis = divmod(epoch_ms, 1000)
    return okta_timestamp(datetime.fromtimestamp(seconds, tz=timezone.utc)).replace(".000Z", f".{millis:03d}Z")


def parse_okta_time(text: str) -> int:
    """Okta's form -> epoch milliseconds."""
    return int(parse_okta_timestamp(text).timestamp() * 1000)
