"""`search` and `filter` expressions for GET /api/v1/users, compiled to predicates over user indexes.

filter (Okta docs): status, lastUpdated, id, profile.login/email/firstName/lastName; only `eq`, plus gt/ge/lt/le for
lastUpdated; `and`/`or`, parentheses; case-sensitive values. search: top-level id, status, created, activated,
statusChanged, lastUpdated, type.id and any profile attribute; eq, sw, gt, ge, lt, le, pr, and co on
profile.firstName/lastName/email/login; `ne` and `not` unsupported; string values case-insensitive.
Anything else raises QueryError (served as 400 E0000031).
"""
from __future__ import annotations

import calendar
import re


from .population import STATUSES
from .users import PROFILE_ATTRIBUTES, UserStore

TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([A-Za-z_][A-Za-z0-9_.]*)|(\S+))')
DATE_ATTRIBUTES = {"created", "lastUpdated", "activated", "statusChanged"}
ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(Z|[+-]\d{2}:\d{2})$")
CONTAINS_ATTRIBUTES = {"profile.firstName", "profile.lastName", "profile.email", "profile.login"}
FILTER_EQ = {"status", "lastUpdated", "id", "profile.login", "profile.email", "profile.firstName", "profile.lastName"}


class QueryError(Exception):
    pass


def parse_time(text: str) -> float:
    match = ISO.match(text)
    if not match:
        raise QueryError(f"invalid date {text!r}")
    year, month, day, hour, minute, second, millis, zone = match.groups()
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds + (int(millis.ljust(3, "0")) / 1000 if millis else 0.0)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match:
            break
        position = match.end()
        lparen, rparen, string, word, other = match.groups()
        if lparen:
            tokens.append(("(", "("))
        elif rparen:
            tokens.append((")", ")"))
        elif string is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", string)))
        elif word is not None:
            tokens.append(("word", word))
        else:
            tokens.append(("other", other))
    return tokens


class Compiler:
    def __init__(self, store: UserStore, mode: str):
        self.store, self.mode = store, mode
        self.tokens: list[tuple[str, str]] = []
        self.position = 0

    def compile(self, text: str):
        self.tokens = tokenize(text)
        if not self.tokens:
            raise QueryError("empty expression")
        predicate = self.expression()
        if self.position != len(self.tokens):
            raise QueryError("trailing tokens")
        return predicate

    def peek(self):
        return self.tokens[self.position] if self.position < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        if token[0] is None:
            raise QueryError("unexpected end")
        self.position += 1
        return token

    def expression(self):
        terms = [self.term()]
        while self.peek()[0] == "word" and self.peek()[1].lower() == "or":
            self.take()
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        predicate = lambda i: any(t(i) for t in terms)  # noqa: E731
        ranges = [getattr(t, "created_range", None) for t in terms]
        if all(ranges):  # the hull: an index answers a created-sorted search without scanning every user
            predicate.created_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
        return predicate

    def term(self):
        factors = [self.factor()]
        while self.peek()[0] == "word" and self.peek()[1].lower() == "and":
            self.take()
            factors.append(self.factor())
        if len(factors) == 1:
            return factors[0]
        predicate = lambda i: all(f(i) for f in factors)  # noqa: E731
        ranges = [r for f in factors if (r := getattr(f, "created_range", None))]
        if ranges:
            predicate.created_range = (max(r[0] for r in ranges), min(r[1] for r in ranges))
        return predicate

    def factor(self):
        kind, value = self.take()
        if kind == "(":
            inner = self.expression()
            if self.take()[0] != ")":
                raise QueryError("missing )")
            return inner
        if kind != "word" or value.lower() in ("and", "or", "not"):
            raise QueryError(f"unexpected {value!r}")
        attribute = value
        op_kind, op = self.take()
        if op_kind != "word":
            raise QueryError("operator expected")
        op = op.lower()
        if op == "pr" and self.mode == "search":
            self.check(attribute, op)
            getter = self.getter(attribute)
            return lambda i: getter(i) not in (None, "")
        value_kind, literal = self.take()
        if value_kind != "str":
            raise QueryError("string literal expected")
        self.check(attribute, op)
        return self.comparison(attribute, op, literal)

    def check(self, attribute: str, op: str) -> None:
        if self.mode == "filter":
            if attribute not in FILTER_EQ:
                raise QueryError(f"filter does not support {attribute}")
            if op != "eq" and not (attribute == "lastUpdated" and op in ("gt", "ge", "lt", "le")):
                raise QueryError(f"filter does not support {op} on {attribute}")
            return
        if op not in ("eq", "sw", "co", "gt", "ge", "lt", "le", "pr"):
            raise QueryError(f"unsupported operator {op}")
        if op == "co" and attribute not in CONTAINS_ATTRIBUTES:
            raise QueryError(f"co is not supported on {attribute}")
        known = attribute in ("id", "status", "type.id") or attribute in DATE_ATTRIBUTES or (
            attribute.startswith("profile.") and attribute[8:] in PROFILE_ATTRIBUTES)
        if not known:
            raise QueryError(f"unknown attribute {attribute}")
        if attribute in DATE_ATTRIBUTES and op in ("sw", "co"):
            raise QueryError(f"{op} is not supported on {attribute}")

    def getter(self, attribute: str):
        store = self.store
        if attribute == "id":
            return store.user_id
        if attribute == "status":
            return lambda i: STATUSES[store.status[i]]
        if attribute == "type.id":
            return lambda i: store.pop.type_id
        if attribute == "created":
            return lambda i: store.created[i]
        if attribute == "lastUpdated":
            return lambda i: store.last_updated[i]
        if attribute in ("activated", "statusChanged"):
            return lambda i: store.created[i]  # close enough for range queries; exact values are not indexed
        name = attribute[8:]
        return lambda i: store.profile(i).get(name)

    def comparison(self, attribute: str, op: str, literal: str):
        getter = self.getter(attribute)
        if attribute in DATE_ATTRIBUTES:
            bound = parse_time(literal)
            compare = {"eq": lambda v: v == bound, "gt": lambda v: v > bound, "ge": lambda v: v >= bound,
                       "lt": lambda v: v < bound, "le": lambda v: v <= bound}[op]
            predicate = lambda i: compare(getter(i))  # noqa: E731
            if attribute == "created":  # [low, high] holding every match, for the created-sorted index
                predicate.created_range = (bound if op in ("eq", "gt", "ge") else float("-inf"),
                                           bound if op in ("eq", "lt", "le") else float("inf"))
            return predicate
        fold = self.mode == "search"  # search values are case-insensitive, filter values are not
        wanted = literal.casefold() if fold else literal

        def value(i):
            v = getter(i)
            if v is None:
                return None
            v = str(v)
            return v.casefold() if fold else v

        if op == "eq":
            predicate = lambda i: value(i) == wanted  # noqa: E731
            if attribute in ("id", "profile.login"):
                # Okta answers these from an index; so does the dev org, or a million-user org would crawl.
                found = self.store.index_of(literal) if attribute == "id" else self.store.index_of_login(literal)
                predicate.candidates = [found] if found is not None and predicate(found) else []
            return predicate
        if op == "sw":
            return lambda i: (v := value(i)) is not None and v.startswith(wanted)
        if op == "co":
            return lambda i: (v := value(i)) is not None and wanted in v
        compare = {"gt": lambda v: v > wanted, "ge": lambda v: v >= wanted, "lt": lambda v: v < wanted,
                   "le": lambda v: v <= wanted}[op]
        return lambda i: (v := value(i)) is not None and compare(v)


def compile_query(store: UserStore, text: str, mode: str):
    return Compiler(store, mode).compile(text)


