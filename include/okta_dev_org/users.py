"""The user directory: seeded population + per-user changes, serialised JSON cache, paging, updates."""
from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from array import array
from json.encoder import encode_basestring

from . import population as pop
from .population import DEPROVISIONED, STATUS_CODE, STATUSES, Population

# Base profile attributes (OpenAPI UserProfile) plus the custom ones the sample app's schema defines.
PROFILE_ATTRIBUTES = frozenset({
    "city", "costCenter", "countryCode", "department", "displayName", "division", "email", "employeeNumber",
    "firstName", "honorificPrefix", "honorificSuffix", "lastName", "locale", "login", "manager", "managerId",
    "middleName", "mobilePhone", "nickName", "organization", "postalAddress", "preferredLanguage", "primaryPhone",
    "profileUrl", "secondEmail", "state", "streetAddress", "timezone", "title", "userType", "zipCode",
})
REQUIRED_ON_REPLACE = ("login", "email", "firstName", "lastName")
ALWAYS_PRESENT = ("mobilePhone", "secondEmail")  # Okta returns these as null rather than omitting them
MAX_LENGTH = {"firstName": 50, "lastName": 50, "login": 100, "email": 100, "secondEmail": 100, "mobilePhone": 100,
              "primaryPhone": 100, "city": 128, "state": 128, "countryCode": 2, "streetAddress": 1024,
              "postalAddress": 4096}


def iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def _json_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _emailish(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain and not domain.startswith(".") and not domain.endswith(".")
                and " " not in value and value.count("@") == 1)


class ValidationError(Exception):
    def __init__(self, field_name: str, causes: list[str]):
        super().__init__("; ".join(causes))
        self.field_name, self.causes = field_name, causes


class MalformedBody(Exception):
    pass


class PreconditionFailed(Exception):
    """`If-Match` named a version of the user that is no longer current."""


def shortname(login: str) -> str:
    """Okta's login shortname: the part before the `@` (`isaac.brock` for `isaac.brock@example.com`)."""
    return login.partition("@")[0].casefold()


def if_match_satisfied(header: str, current: str) -> bool:
    """RFC 9110 If-Match against the current entity tag: `*`, or a list of tags compared weakly (Okta's tags are
    weak, `W/"..."`, and Okta's own docs send them back in If-Match, so the `W/` prefix is not significant)."""
    if header.strip() == "*":
        return True
    wanted = current.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


class UserStore:
    def __init__(self, population: Population, count: int, org_url: str, json_cache_limit: int = 300_000):
        self.pop = population
        self.org_url = org_url
        self.lock = threading.RLock()
        self.count = count
        self.seeded_count = count
        self.status = bytearray(count)
        self.created = array("q", bytes(8 * count))
        self.last_updated = array("q", bytes(8 * count))
        self.status_changed: dict[int, int] = {}
        self.messy = bytearray(count)
        self.outside_resource_set: set[int] = set()
        self.profiles: dict[int, dict] = {}  # changed profiles; others are derived from the seed
        self.logins: dict[str, int] = {}  # casefolded login -> index, for changed logins
        self.shortnames: dict[str, set[int]] = {}  # casefolded shortname -> indexes, for changed logins
        self.ids: list[str | None] = [None] * count  # filled on first use
        self.cache: dict[int, bytes] = {}
        self.cache_limit = json_cache_limit
        self.visible_count = 0
        self.warmed = 0
        self._created_order: list[int] | None = None
        for index in range(count):
            status = population.status(index)
            created = population.created(index)
            self.status[index] = status
            self.created[index] = created
            self.last_updated[index] = population.last_updated(index, created)
            if population.is_messy(index):
                self.messy[index] = 1
            if status != DEPROVISIONED:
                self.visible_count += 1

    # ---- identity -------------------------------------------------------------------------------------------
    def user_id(self, index: int) -> str:
        user_id = self.ids[index]
        if user_id is None:
            user_id = self.ids[index] = self.pop.user_id(index)
        return user_id

    def index_of(self, id_or_login: str) -> int | None:
        index = self.pop.index_of_id(id_or_login)
        if index is not None and index < self.count:
            return index
        return self.index_of_login(id_or_login)

    def resolve(self, key: str) -> int | None:
        """What `GET /api/v1/users/{key}` finds, as Okta documents the path parameter: an id, a login, or a login
        shortname "as long as the shortname is unambiguous". Okta does not document its answer to an ambiguous
        shortname; the dev org treats it as unknown (404)."""
        index = self.index_of(key)
        if index is not None or "@" in key:
            return index
        found = self.indexes_of_shortname(key)
        return found[0] if len(found) == 1 else None

    def indexes_of_shortname(self, name: str) -> list[int]:
        key = name.casefold()
        with self.lock:
            found = set(self.shortnames.get(key, ()))
            digits = len(key) - len(key.rstrip("0123456789"))
            if digits:
                index = int(key[-digits:])  # seeded logins end their shortname with the user's index
                if index < self.seeded_count and index not in self.profiles and \
                        shortname(self.pop.profile(index)[0]["login"]) == key:
                    found.add(index)
            return sorted(found)

    def index_of_login(self, login: str) -> int | None:
        key = login.casefold()
        with self.lock:
            if key in self.logins:
                return self.logins[key]
            local = login.partition("@")[0]
            digits = len(local) - len(local.rstrip("0123456789"))
            if not digits:
                return None
            index = int(local[-digits:])
            if index >= self.count or index in self.profiles:
                return None
            return index if self.profile(index)["login"].casefold() == key else None

    def profile(self, index: int) -> dict:
        changed = self.profiles.get(index)
        if changed is not None:
            return changed
        return self.pop.profile(index)[0]

    def messy_fields(self, index: int) -> dict:
        return self.pop.profile(index)[1] if self.messy[index] else {}

    # ---- serialisation --------------------------------------------------------------------------------------
    def list_item(self, index: int) -> bytes:
        """The user as a collection lists it (only a `self` link), cached until the user changes."""
        cached = self.cache.get(index)
        if cached is not None:
            return cached
        item = self._core(index) + b'"_links":{"self":{"href":"' + self._self_href(index) + b'"}}}'
        if len(self.cache) >= self.cache_limit:
            self.cache.pop(next(iter(self.cache)))
        self.cache[index] = item
        return item

    def warm(self, stop) -> None:
        """Serialise users ahead of the first listing (background thread), up to the cache limit."""
        for start in range(0, min(self.count, self.cache_limit), 500):
            if stop.is_set():
                return
            with self.lock:
                for index in range(start, min(start + 500, self.count, self.cache_limit)):
                    self.list_item(index)
            self.warmed = min(start + 500, self.count, self.cache_limit)

    def _core(self, index: int) -> bytes:
        """The user's JSON up to (not including) `_links`."""
        cached = self.cache.get(index)
        if cached is not None:
            return cached.rpartition(b'"_links":')[0]
        user_id = self.user_id(index)
        status = self.status[index]
        created = self.created[index]
        h = self.pop.h(index, 20)
        staged = status == STATUS_CODE["STAGED"]
        activated = None if staged or status == STATUS_CODE["PROVISIONED"] else created + h % 86400
        seeded = index < self.seeded_count
        last_login = None if activated is None or not seeded else \
            created + (h >> 20) % max(1, self.pop.last_updated(index, created) - created)
        status_changed = self.status_changed.get(index, activated if activated is not None else created)
        profile = self.profile(index)
        email = profile.get("email")
        parts = [
            '{"id":"', user_id, '","status":"', STATUSES[status], '","created":"', iso(created),
            '","activated":', _json_value(iso(activated)), ',"statusChanged":', _json_value(iso(status_changed)),
            ',"lastLogin":', _json_value(iso(last_login)), ',"lastUpdated":"', iso(self.last_updated[index]),
            '","passwordChanged":', _json_value(iso(None if staged else created + (h >> 40) % 3600)),
            ',"type":{"id":"', self.pop.type_id, '"},"profile":{',
            ",".join(encode_basestring(k) + ":" + _json_value(v) for k, v in profile.items()),
            '},"credentials":{"password":{},"emails":[{"value":', _json_value(email),
            ',"status":"VERIFIED","type":"PRIMARY"}],"provider":{"type":"OKTA","name":"OKTA"}},',
        ]
        return "".join(parts).encode()

    def _self_href(self, index: int) -> bytes:
        return f"{self.org_url}/api/v1/users/{self.user_id(index)}".encode()

    def full_json(self, index: int) -> bytes:
        org, user_id, status = self.org_url, self.user_id(index), STATUSES[self.status[index]]
        base = f"{org}/api/v1/users/{user_id}"
        links = {"schema": {"href": f"{org}/api/v1/meta/schemas/user/{self.pop.schema_id}"}}
        lifecycle = {
            "STAGED": ("activate",), "PROVISIONED": ("activate", "deactivate"),
            "ACTIVE": ("suspend", "resetPassword", "expirePassword", "deactivate"),
            "SUSPENDED": ("unsuspend", "deactivate"), "LOCKED_OUT": ("unlock", "deactivate"),
            "PASSWORD_EXPIRED": ("resetPassword", "deactivate"), "RECOVERY": ("resetPassword", "deactivate"),
            "DEPROVISIONED": ("activate",),
        }[status]
        for name in lifecycle:
            path = {"resetPassword": "reset_password", "expirePassword": "expire_password"}.get(name, name)
            links[name] = {"href": f"{base}/lifecycle/{path}", "method": "POST"}
        links["self"] = {"href": base}
        links["type"] = {"href": f"{org}/api/v1/meta/types/user/{self.pop.type_id}"}
        return self._core(index) + b'"_links":' + json.dumps(links, separators=(",", ":")).encode() + b"}"

    def etag(self, index: int) -> str:
        return 'W/"' + hashlib.sha1(self.list_item(index)).hexdigest()[:20] + '"'

    def as_dict(self, index: int) -> dict:
        user = json.loads(self.full_json(index))
        user["_dev"] = {
            "index": index,
            "messy": bool(self.messy[index]),
            "messy_fields": self.messy_fields(index),  # {field: the clean value a normaliser should restore}
            "outside_resource_set": index in self.outside_resource_set,
            "changed": index in self.profiles,
        }
        return user

    # ---- listing --------------------------------------------------------------------------------------------
    def first_index_after(self, user_id: str) -> int:
        """Position of the first user whose id sorts after `user_id` (ids sort like indexes): O(log n)."""
        import bisect
        return bisect.bisect_right(range(self.count), user_id, key=self.user_id)

    def created_order(self, descending: bool = False) -> list[int]:
        """Indexes sorted by `created`, ties by id (ids sort like indexes), as Okta sorts `sortBy=created`."""
        if self._created_order is None or len(self._created_order) != self.count:
            created = self.created
            self._created_order = sorted(range(self.count), key=lambda i: (created[i], i))
        return self._created_order[::-1] if descending else self._created_order

    def position_after(self, order: list[int], user_id: str, descending: bool) -> int:
        """Where a `created`-sorted listing resumes after the user `user_id` (O(log n))."""
        import bisect
        index = self.index_of(user_id)
        if index is None:
            return len(order)
        created = self.created
        key = (created[index], index)
        if descending:
            return len(order) - bisect.bisect_left(self.created_order(), key, key=lambda i: (created[i], i))
        return bisect.bisect_right(order, key, key=lambda i: (created[i], i))

    def ordered_page(self, order: list[int], position: int, limit: int, predicate) -> tuple[list[int], bool]:
        """Up to `limit` matches (DEPROVISIONED included, as `search` has them) from `position` in `order`."""
        found: list[int] = []
        low, high = getattr(predicate, "created_range", (float("-inf"), float("inf")))
        created = self.created
        descending = len(order) > 1 and created[order[0]] > created[order[-1]]
        if not descending and low != float("-inf"):  # skip to the range's start (what an index would do)
            import bisect
            position = max(position, bisect.bisect_left(order, low, key=created.__getitem__))
        for index in itertools.islice(order, position, None):
            value = created[index]
            if (value > high) if not descending else (value < low):
                break
            if predicate is None or predicate(index):
                if len(found) == limit:
                    return found, True
                found.append(index)
        return found, False

    def page(self, start: int, limit: int, predicate=None, include_deprovisioned: bool = False,
             stop: int | None = None) -> tuple[list[int], bool]:
        """Up to `limit` matching indexes from `start`, and whether any match remains after them."""
        end = self.count if stop is None else min(stop, self.count)
        candidates = getattr(predicate, "candidates", None)
        if candidates is not None:
            matches = [i for i in candidates if start <= i < end]
            return matches[:limit], len(matches) > limit
        found: list[int] = []
        status = self.status
        index = start
        while index < end:
            if (include_deprovisioned or status[index] != DEPROVISIONED) and (predicate is None or predicate(index)):
                if len(found) == limit:
                    return found, True
                found.append(index)
            index += 1
        return found, False

    # ---- changes --------------------------------------------------------------------------------------------
    def _touch(self, index: int) -> None:
        self.last_updated[index] = max(int(time.time()), self.last_updated[index] + 1)
        self.cache.pop(index, None)

    def update_profile(self, index: int, body, replace: bool, if_match: str | None = None) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("profile"), dict):
            raise MalformedBody()
        incoming = body["profile"]
        with self.lock:  # the precondition and the change are one step: nothing can land in between
            if if_match is not None and not if_match_satisfied(if_match, self.etag(index)):
                raise PreconditionFailed()
            current = self.profile(index)
            if replace:
                merged = {name: None for name in ALWAYS_PRESENT}
                merged.update(incoming)
            else:
                merged = dict(current)
                merged.update(incoming)
            self._validate(index, merged, incoming, replace)
            ordered = {k: merged[k] for k in ("firstName", "lastName", "mobilePhone", "secondEmail", "login", "email")
                       if k in merged}
            ordered.update((k, v) for k, v in merged.items() if k not in ordered)
            old_login = current["login"].casefold()
            new_login = ordered["login"].casefold()
            if old_login != new_login:
                self.logins.pop(old_login, None)
            self.shortnames.get(shortname(old_login), set()).discard(index)
            self.profiles[index] = ordered
            self.logins[new_login] = index
            self.shortnames.setdefault(shortname(new_login), set()).add(index)
            self._touch(index)

    def _validate(self, index: int, merged: dict, incoming: dict, replace: bool) -> None:
        causes: list[str] = []
        for name in incoming:
            if name not in PROFILE_ATTRIBUTES:
                causes.append(f"Property name '{name}' is not defined in profile")
        for name in REQUIRED_ON_REPLACE if replace else ():
            if merged.get(name) in (None, ""):
                causes.append(f"{name}: The field cannot be left blank")
        for name, value in incoming.items():
            if name not in PROFILE_ATTRIBUTES or value is None:
                if value is None and name in REQUIRED_ON_REPLACE:
                    causes.append(f"{name}: The field cannot be left blank")
                continue
            if not isinstance(value, str):
                if name not in ("userType",):
                    causes.append(f"{name}: The field must be a string")
                continue
            if value == "" and name in REQUIRED_ON_REPLACE:
                causes.append(f"{name}: The field cannot be left blank")
                continue
            limit = MAX_LENGTH.get(name)
            if limit is not None and len(value) > limit:
                causes.append(f"{name}: The field cannot exceed {limit} characters")
            if name == "login" and not _emailish(value):
                causes.append("login: Username must be in the form of an email address")
            if name in ("email", "secondEmail") and value and not _emailish(value):
                causes.append(f"{name}: Does not match required pattern")
        login = merged.get("login")
        if isinstance(login, str) and login and "login" in incoming:
            other = self.index_of_login(login)
            if other is not None and other != index:
                causes.append("login: An object with this field already exists in the current organization")
        if causes:
            first = causes[0]
            field_name = first.split(":", 1)[0] if ":" in first and not first.startswith("Property") else "profile"
            raise ValidationError(field_name, causes)

    def set_status(self, index: int, status: str) -> None:
        with self.lock:
            code = STATUS_CODE[status]
            if (self.status[index] == DEPROVISIONED) != (code == DEPROVISIONED):
                self.visible_count += 1 if self.status[index] == DEPROVISIONED else -1
            self.status[index] = code
            self.status_changed[index] = int(time.time())
            self._touch(index)

    def add_user(self, profile: dict, status: str = "ACTIVE") -> int:
        with self.lock:
            index = self.count
            full = {name: None for name in ALWAYS_PRESENT}
            full.update(profile)
            self._validate(index, full, full, replace=True)
            self.count += 1
            self.ids.append(None)
            self.status.append(STATUS_CODE[status])
            now = int(time.time())
            self.created.append(now)
            self.last_updated.append(now)
            self.messy.append(0)
            if status != "DEPROVISIONED":
                self.visible_count += 1
            self.profiles[index] = full
            self.logins[full["login"].casefold()] = index
            self.shortnames.setdefault(shortname(full["login"]), set()).add(index)
            return index
