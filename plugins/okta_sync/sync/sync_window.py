"""Which users a sync run looks at, as an Okta `search` expression.

Incremental runs ask for `lastUpdated gt "<watermark minus overlap>"`; the first run and full refreshes list users
of every status (the plain listing would omit DEPROVISIONED users); a run restricted to user ids asks for exactly
those. `search` (not `filter`) because it includes DEPROVISIONED users and supports `or`.

The watermark is kept in the export Asset's state, which people can write too (the REST API): it is checked when
read back (`stored_watermark`) and the value committed comes from the export's manifest, never from an XCom
(`next_watermark`). A watermark later than now (plus `WATERMARK_SKEW`, less than the search's 10-minute overlap, so
a watermark that far ahead still loses no change) would make every later run select nobody.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from okta_sync.errors import UntrustedValueError
from okta_sync.timestamps import okta_timestamp, parse_okta_timestamp

if TYPE_CHECKING:
    from okta_sync.sync.manifest import Manifest

USER_STATUSES = ("STAGED", "PROVISIONED", "ACTIVE", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT", "SUSPENDED",
                 "DEPROVISIONED")
ALL_USERS_SEARCH = " or ".join(f'status eq "{status}"' for status in USER_STATUSES)
_USER_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_OKTA_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
OVERLAP = timedelta(minutes=10)  # incremental runs look this far behind the watermark (search is eventually consistent)
WATERMARK_SKEW = timedelta(minutes=5)  # clocks (Okta's lastUpdated, the worker's now) may differ this much
QUIET_AFTER = timedelta(hours=24)  # an incremental run selecting nobody this long after the watermark is worth a look
WATERMARK_STATE = "asset state okta_users_export.watermark"


def users_search(*, watermark: str | None = None, overlap: timedelta = OVERLAP,
                 user_ids: Sequence[str] | None = None) -> str:
    if user_ids:
        bad = [u for u in user_ids if not _USER_ID.match(u)]
        if bad:
            raise ValueError(f"user_ids: {bad[:3]} are not Okta user ids (letters and digits, like 00u1abcd...)")
        return " or ".join(f'id eq "{user_id}"' for user_id in dict.fromkeys(user_ids))
    if watermark:
        since = parse_okta_timestamp(watermark) - overlap
        return f'lastUpdated gt "{okta_timestamp(since)}"'
    return ALL_USERS_SEARCH


def stored_watermark(value: Any, *, now: datetime, skew: timedelta = WATERMARK_SKEW,
                     field: str = WATERMARK_STATE) -> str | None:
    """The watermark read back from where it is kept, when it can be used (None: there is none). Anything else, an
    Okta timestamp later than now plus `skew` included, is UntrustedValueError naming `field`: the caller falls back
    to a full listing, which is always safe."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40 or not _OKTA_TIMESTAMP.match(value):
        raise UntrustedValueError(field, "is not an Okta timestamp (like 2026-01-01T00:00:00.000Z)")
    try:
        moment = parse_okta_timestamp(value)
    except ValueError:
        raise UntrustedValueError(field, "is not a date that exists") from None
    if moment > now + skew:
        raise UntrustedValueError(field, f"is later than now (more than {skew} ahead): no user would ever be "
                                         "selected again")
    return value


def next_watermark(manifest: Manifest, *, stored: str | None, now: datetime,
                   skew: timedelta = WATERMARK_SKEW) -> tuple[str | None, str]:
    """(the watermark to commit or None to keep `stored`, why), from the export's manifest (not an XCom): only when
    the export covered every change since `stored` (a full listing, or the incremental search of `stored` itself),
    and never later than now or the export's own end (plus `skew`): UntrustedValueError naming the field then."""
    if manifest.kind == "full":
        covered = True
    elif manifest.kind == "incremental":
        covered = stored is not None and manifest.search == users_search(watermark=stored)
    else:
        covered = False
    if not covered:
        return None, f"the export ({manifest.kind}) did not cover every change since the stored watermark"
    new = manifest.watermark
    if new is None:
        return None, "the export holds no user"
    moment = parse_okta_timestamp(new)
    if moment > now + skew:
        raise UntrustedValueError("manifest.watermark", "is later than now: refused (check the worker's clock, "
                                                        "NTP, if Okta's lastUpdated really are ahead of it)")
    if moment > parse_okta_timestamp(manifest.finished_at) + skew:
        raise UntrustedValueError("manifest.watermark", "is later than the export's own end (finished_at): refused")
    if stored is not None and new <= stored:
        return None, "no user newer than the stored watermark"
    return new, "a complete export"


def quiet_warning(manifest: Manifest, *, stored: str | None, now: datetime,
                  quiet_after: timedelta = QUIET_AFTER) -> str | None:
    """A warning when an incremental run selected nobody although the watermark is `quiet_after` old: an org whose
    people join, leave and change jobs rarely goes that long without a change, and a watermark that is wrong (or a
    search index that lags) looks exactly like this. None otherwise. Cheap: the export's own count, no request."""
    if manifest.kind != "incremental" or manifest.counts.get("users") != 0 or stored is None:
        return None
    quiet = now - parse_okta_timestamp(stored)
    if quiet < quiet_after:
        return None
    return (f"no user changed in Okta since the watermark {stored} ({quiet.total_seconds() / 3600:.0f} hours) by "
            f"its search: if users did change, the watermark ({WATERMARK_STATE}) is wrong or Okta's search lags; "
            "run okta_user_sync with full_refresh")
