"""`search` and `filter` expressions for GET /api/v1/groups, compiled to predicates over groups (OpenAPI listGroups).

filter: only `id`, `type`, `lastUpdated` and `lastMembershipUpdated`; `eq` on all four, `gt`/`ge`/`lt`/`le` on the
two timestamps; `and`/`or`, parentheses; values case-sensitive.
search: any profile attribute, the top-level `id`, `created`, `lastMembershipUpdated`, `lastUpdated`, `type`, and
`source.id`; operators `eq`, `sw`, and `co` (only on `profile.name` and `profile.description`), plus range operators
on the timestamps (the spec's own examples use `gt` and `lt` there); string values case-insensitive, as the users
search is (the spec does not say: a guess). Anything else raises QueryError (served as 400 E0000031).
"""
from __future__ import annotations

from .groups import Group
from .query import Compiler, QueryError, parse_time

DATES = {"created": "created", "lastUpdated": "last_updated", "lastMembershipUpdated": "last_membership_updated"}
FILTER_ATTRIBUTES = {"id", "type", "lastUpdated", "lastMembershipUpdated"}
SEARCH_TOP_LEVEL = {"id", "type", "source.id", *DATES}
CONTAINS = {"profile.name", "profile.description"}
RANGE = ("gt", "ge", "lt", "le")


class GroupCompiler(Compiler):
    """The users' expression parser with the Groups API's attributes and operators; predicates take a `Group`."""

    def __init__(self, mode: str):
        super().__init__(None, mode)

    def check(self, attribute: str, op: str) -> None:
        dated = attribute in DATES
        if self.mode == "filter":
            if attribute not in FILTER_ATTRIBUTES or attribute == "created":
                raise QueryError(f"filter does not support {attribute}")
            if op != "eq" and not (dated and op in RANGE):
                raise QueryError(f"filter does not support {op} on {attribute}")
            return
        if attribute not in SEARCH_TOP_LEVEL and not (attribute.startswith("profile.") and len(attribute) > 8):
            raise QueryError(f"unknown attribute {attribute}")
        if op in RANGE and dated:
            return
        if op not in ("eq", "sw", "co") or (op == "co" and attribute not in CONTAINS) or (dated and op != "eq"):
            raise QueryError(f"{op} is not supported on {attribute}")

    def getter(self, attribute: str):
        if attribute == "id":
            return lambda g: g.id
        if attribute == "type":
            return lambda g: g.type
        if attribute == "source.id":
            return lambda g: g.source_id
        if attribute in DATES:
            name = DATES[attribute]
            return lambda g: getattr(g, name)
        name = attribute[8:]
        return lambda g: g.profile.get(name)

    def comparison(self, attribute: str, op: str, literal: str):
        getter = self.getter(attribute)
        if attribute in DATES:
            bound = round(parse_time(literal) * 1000)
            compare = {"eq": bound.__eq__, "gt": bound.__lt__, "ge": bound.__le__, "lt": bound.__gt__,
                       "le": bound.__ge__}[op]
            return lambda g: compare(getter(g))
        fold = self.mode == "search"
        wanted = literal.casefold() if fold else literal

        def value(g: Group):
            v = getter(g)
            if v is None:
                return None
            v = str(v)
            return v.casefold() if fold else v

        if op == "eq":
            return lambda g: value(g) == wanted
        if op == "sw":
            return lambda g: (v := value(g)) is not None and v.startswith(wanted)
        return lambda g: (v := value(g)) is not None and wanted in v


def compile_group_query(text: str, mode: str):
    return GroupCompiler(mode).compile(text)


def sort_key(attribute: str):
    """The key `sortBy` orders by (ties by id, as the spec says); QueryError for a property that cannot be."""
    if attribute in DATES or attribute in ("id", "type") or (attribute.startswith("profile.") and len(attribute) > 8):
        getter = GroupCompiler("search").getter(attribute)

        def key(g: Group):
            v = getter(g)
            return (v is None, str(v).casefold() if isinstance(v, str) else v if v is not None else 0, g.id)

        return key
    raise QueryError(f"cannot sort by {attribute}")
