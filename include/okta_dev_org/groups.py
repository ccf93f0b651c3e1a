"""The group directory: seeded groups (BUILT_IN Everyone, OKTA_GROUP, APP_GROUP) and their members, changes, paging.

Timestamps are kept in milliseconds, as Okta sends them (`...T10:11:28.123Z`): `lastMembershipUpdated` moves on
every membership change, strictly (two changes in one millisecond still differ), so a watermark on it never hides a
change. Members are kept sorted by user index, which is id order; Everyone holds every user implicitly.
"""
from __future__ import annotations

import bisect
import json
import random
import time
from array import array
from dataclasses import dataclass, field

from .population import ANCHOR, YEAR, b62, mix
from .users import UserStore

OKTA_GROUP, APP_GROUP, BUILT_IN = "OKTA_GROUP", "APP_GROUP", "BUILT_IN"
GROUP_TYPES = (OKTA_GROUP, APP_GROUP, BUILT_IN)
OBJECT_CLASS = {OKTA_GROUP: "okta:user_group", BUILT_IN: "okta:user_group", APP_GROUP: "okta:windows_security_principal"}
TEAMS = ("Engineering", "Sales", "Marketing", "Finance", "Support", "People", "Legal", "Security", "Design", "Data",
         "Operations", "Product", "IT", "Facilities", "Research", "Procurement")
REGIONS = ("EMEA", "AMER", "APAC", "LATAM")
APP_GROUP_FRACTION = 0.3


def iso_ms(millis: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Group:
    id: str
    type: str
    profile: dict
    created: int  # ms
    last_updated: int  # ms
    last_membership_updated: int  # ms
    source_id: str | None = None  # APP_GROUP: the app that imports it
    members: array = field(default_factory=lambda: array("l"))  # sorted user indexes (unused for Everyone)


class GroupStore:
    """Groups of one org. Callers hold `users.lock` (one lock for users and groups: a member page serialises users)."""

    def __init__(self, users: UserStore, count: int, memberships: int | None, seed: int, org_url: str):
        self.users = users
        self.org_url = org_url
        self.lock = users.lock
        self.groups: list[Group] = []  # in id order (ids grow with creation)
        self.by_id: dict[str, Group] = {}
        self._org = mix(seed ^ 0x6E0)
        self._suffix = users.pop.id_suffix
        self._next = 0
        self._seed(count, memberships, random.Random(seed ^ 0x6E0))

    # ---- seeding --------------------------------------------------------------------------------------------
    def _new_id(self) -> str:
        n = self._next
        self._next += 1
        value = self._org % (62 ** 11 // 4) + (n << 20) + (mix(self._org ^ n) & 0xFFFFF)
        return "00g" + b62(value, 11) + b62(mix(self._org ^ (n * 7919)), 3) + self._suffix

    def _seed(self, count: int, memberships: int | None, rng: random.Random) -> None:
        users = self.users.count
        if count <= 0:
            return
        created = (ANCHOR - 6 * YEAR) * 1000
        self._add(Group(self._new_id(), BUILT_IN, {"name": "Everyone", "description": "All users in your organization"},
                        created, created, ANCHOR * 1000))
        sizes = [max(1, int(users ** rng.random())) if users else 0 for _ in range(count - 1)]
        if memberships is not None and sum(sizes):
            scale = memberships / sum(sizes)
            sizes = [min(users, max(1, round(s * scale))) if users else 0 for s in sizes]
        for n, size in enumerate(sizes, 1):
            kind = APP_GROUP if rng.random() < APP_GROUP_FRACTION else OKTA_GROUP
            team, region = TEAMS[n % len(TEAMS)], REGIONS[(n // len(TEAMS)) % len(REGIONS)]
            name = f"{team} {region}" if n <= len(TEAMS) * len(REGIONS) else f"{team} {region} {n}"
            made = int((ANCHOR - rng.random() * 5 * YEAR) * 1000)
            updated = made + int(rng.random() * (ANCHOR * 1000 - made))
            moved = made + int(rng.random() * (ANCHOR * 1000 - made))
            members = array("l", sorted(rng.sample(range(users), size))) if size else array("l")
            if kind == APP_GROUP:
                group = Group(self._new_id(), kind, _app_profile(name, rng), made, updated, moved,
                              "0oa" + b62(mix(self._org ^ 0xA99) , 14) + self._suffix, members)
            else:
                group = Group(self._new_id(), kind, {"name": name, "description": f"Everyone in {team}, {region}"},
                              made, updated, moved, None, members)
            self._add(group)

    def _add(self, group: Group) -> None:
        self.groups.append(group)
        self.by_id[group.id] = group

    # ---- reading --------------------------------------------------------------------------------------------
    def member_count(self, group: Group) -> int:
        return self.users.count if group.type == BUILT_IN else len(group.members)

    def is_member(self, group: Group, index: int) -> bool:
        if group.type == BUILT_IN:
            return 0 <= index < self.users.count
        position = bisect.bisect_left(group.members, index)
        return position < len(group.members) and group.members[position] == index

    def members_page(self, group: Group, after: str | None, limit: int) -> tuple[list[int], bool]:
        """Up to `limit` members after the user id `after` (ids sort like indexes), and whether more remain."""
        if group.type == BUILT_IN:
            start = self.users.first_index_after(after) if after else 0
            stop = min(self.users.count, start + limit)
            return list(range(start, stop)), stop < self.users.count
        members = group.members
        start = bisect.bisect_right(members, after, key=self.users.user_id) if after else 0
        return list(members[start:start + limit]), start + limit < len(members)

    def groups_of(self, index: int) -> list[Group]:
        return [g for g in self.groups if self.is_member(g, index)]

    def as_dict(self, group: Group, stats: bool = False) -> dict:
        href = f"{self.org_url}/api/v1/groups/{group.id}"
        logo = "active_directory" if group.type == APP_GROUP else "okta"
        links = {"logo": [{"name": size, "href": f"{self.org_url}/img/logos/groups/{logo}-{size}.png",
                           "type": "image/png"} for size in ("medium", "large")]}
        if group.source_id:
            links["source"] = {"href": f"{self.org_url}/api/v1/apps/{group.source_id}"}
        links["users"] = {"href": f"{href}/users"}
        links["apps"] = {"href": f"{href}/apps"}
        body = {"id": group.id, "created": iso_ms(group.created), "lastUpdated": iso_ms(group.last_updated),
                "lastMembershipUpdated": iso_ms(group.last_membership_updated),
                "objectClass": [OBJECT_CLASS[group.type]], "type": group.type, "profile": dict(group.profile),
                "_links": links}
        if stats:
            body["_embedded"] = {"stats": {"usersCount": self.member_count(group), "appsCount": 0,
                                           "groupPushMappingsCount": 0, "hasAdminPrivilege": False,
                                           "_links": {"self": {"href": f"{href}/stats"}}}}
        return body

    def to_json(self, group: Group, stats: bool = False) -> bytes:
        return json.dumps(self.as_dict(group, stats), separators=(",", ":"), ensure_ascii=False).encode()

    # ---- changes --------------------------------------------------------------------------------------------
    def _moved(self, group: Group) -> None:
        group.last_membership_updated = max(now_ms(), group.last_membership_updated + 1)

    def add_member(self, group: Group, index: int) -> bool:
        """Add a member (any group type: the admin path stands in for app imports and rules); False if already."""
        if group.type == BUILT_IN or self.is_member(group, index):
            return False
        bisect.insort(group.members, index)
        self._moved(group)
        return True

    def remove_member(self, group: Group, index: int) -> bool:
        if group.type == BUILT_IN or not self.is_member(group, index):
            return False
        del group.members[bisect.bisect_left(group.members, index)]
        self._moved(group)
        return True

    def user_added(self, index: int) -> None:
        """A new user joins Everyone: its membership moved."""
        for group in self.groups:
            if group.type == BUILT_IN:
                self._moved(group)

    def create(self, profile: dict, kind: str = OKTA_GROUP, source_id: str | None = None) -> Group:
        if kind not in (OKTA_GROUP, APP_GROUP):
            raise ValueError("only OKTA_GROUP and APP_GROUP groups can be created")
        if not isinstance(profile, dict) or not isinstance(profile.get("name"), str) or not profile["name"]:
            raise ValueError("profile.name is required")
        made = now_ms()
        group = Group(self._new_id(), kind, dict(profile), made, made, made,
                      (source_id or "0oa" + b62(mix(self._org ^ 0xA99), 14) + self._suffix) if kind == APP_GROUP
                      else None)
        self._add(group)
        return group

    def update_profile(self, group: Group, profile: dict) -> None:
        group.profile.update(profile)
        group.last_updated = max(now_ms(), group.last_updated + 1)

    def delete(self, group: Group) -> None:
        self.groups.remove(group)
        del self.by_id[group.id]


def _app_profile(name: str, rng: random.Random) -> dict:
    sam = name.replace(" ", "-")
    return {"name": name, "description": f"{name} (imported from Active Directory)", "groupType": "Security",
            "samAccountName": sam, "groupScope": "Global", "objectSid": f"S-1-5-21-{rng.randrange(10**9)}-1177",
            "dn": f"CN={name},OU=Groups,DC=corp,DC=example,DC=com",
            "windowsDomainQualifiedName": f"CORP\\{sam}", "externalId": f"{rng.getrandbits(96):024x}"}
