"""Which users a sync run looks at, as an Okta `search` expression.

Incremental runs ask for `lastUpdated gt "<watermark minus overlap>"`; the first run and full refreshes list users
of every status (the plain listing would omit DEPROVISIONED users); a run restricted to user ids asks for exactly
those. `search` (not `filter`) because it includes DEPROVISIONED users and supports `or`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from okta_sync.timestamps import okta_timestamp, parse_okta_timestamp

USER_STATUSES = ("STAGED", "PROVISIONED", "ACTIVE", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT", "SUSPENDED",
                 "DEPROVISIONED")
ALL_USERS_SEARCH = " or ".join(f'status eq "{status}"' for status in USER_STATUSES)
_USER_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


def users_search(*, watermark: str | None = None, overlap: timedelta = timedelta(minutes=10),
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
