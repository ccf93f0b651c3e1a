"""The seeded population: ids, statuses, timestamps and profiles derived from (seed, index), never stored.

Everything here is a pure function of the seed and the user's index, so a million users cost a few arrays
instead of a million dicts, and the same seed always yields the same org.
"""
from __future__ import annotations

import unicodedata

MASK64 = (1 << 64) - 1
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order: fixed width sorts like numbers
ANCHOR = 1_767_225_600  # 2026-01-01T00:00:00Z: seeded timestamps are at or before it, so runs repeat
YEAR = 365 * 86400

STATUSES = ("ACTIVE", "STAGED", "PROVISIONED", "SUSPENDED", "LOCKED_OUT", "PASSWORD_EXPIRED", "RECOVERY",
            "DEPROVISIONED")
STATUS_CODE = {name: code for code, name in enumerate(STATUSES)}
DEPROVISIONED = STATUS_CODE["DEPROVISIONED"]

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth", "William",
    "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Daniel", "Nancy",
    "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Margaret", "Donald", "Sandra", "Steven", "Ashley", "Paul",
    "Kimberly", "Andrew", "Emily", "Joshua", "Donna", "Kenneth", "Michelle", "Wei", "Mei", "Hiroshi", "Yuki",
    "Aarav", "Priya", "Mohammed", "Fatima", "Olusegun", "Amara", "Carlos", "Lucía", "José", "María", "Zoë",
    "Chloé", "Renée", "André", "François", "Søren", "Björn", "Jürgen", "Łukasz", "Siobhán", "Seán", "Inés",
    "Noémie", "Ana", "Miguel", "Sofía", "Ingrid", "Lars", "Anika", "Mateo", "Élodie", "Raphaël", "Dagný",
    "Kofi", "Nia", "Tomás",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Chen", "Wang", "Tanaka", "Sato",
    "Patel", "Sharma", "Okafor", "Adeyemi", "Müller", "Schröder", "Núñez", "Peña", "Ibáñez", "Gómez", "Sørensen",
    "Lefèvre", "Dubois", "Kowalczyk", "Wójcik", "O'Brien", "Ó Súilleabháin", "Van der Berg", "De la Cruz",
    "Björklund", "Håkansson", "Çelik", "Yılmaz", "Novák", "Dvořák", "Mendes",
)
DEPARTMENTS = {
    "Engineering": ("Software Engineer", "Senior Software Engineer", "Staff Engineer", "Engineering Manager",
                    "Site Reliability Engineer", "QA Engineer"),
    "Sales": ("Account Executive", "Sales Development Representative", "Regional Sales Director"),
    "Marketing": ("Marketing Manager", "Content Strategist", "Product Marketing Manager"),
    "Finance": ("Financial Analyst", "Controller", "Accounts Payable Specialist"),
    "Human Resources": ("HR Business Partner", "Recruiter", "People Operations Manager"),
    "Customer Success": ("Customer Success Manager", "Support Engineer", "Technical Account Manager"),
    "Legal": ("Corporate Counsel", "Paralegal", "Compliance Officer"),
    "Operations": ("Operations Analyst", "Facilities Coordinator", "Program Manager"),
    "Product": ("Product Manager", "Senior Product Manager", "Product Designer", "UX Researcher"),
    "IT": ("IT Support Specialist", "Systems Administrator", "Identity Engineer"),
}
DEPARTMENT_NAMES = tuple(DEPARTMENTS)
MESSY_FIELDS = ("firstName", "lastName", "displayName", "title", "department")
_ASCII_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "ı": "i", "đ": "d", "æ": "ae",
                             "'": "", " ": ""})


def mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def b62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def b62_decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


def random62(h: int, width: int) -> str:
    """`width` base62 characters spread over the whole range (not left-padded with zeros)."""
    return b62((mix(h) << 64 | mix(h ^ 0xA5A5)) % 62 ** width, width)


def ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


_FOLDED = {name: ascii_fold(name) for name in FIRST_NAMES + LAST_NAMES}


class Population:
    """Pure functions from index to a seeded user's attributes."""

    def __init__(self, seed: int, messy_fraction: float, deprovisioned_fraction: float, other_status_fraction: float,
                 created_distribution: str = "uniform"):
        self.seed = seed
        self.created_distribution = created_distribution
        self.messy_fraction = messy_fraction
        self.deprovisioned_fraction = deprovisioned_fraction
        self.other_status_fraction = other_status_fraction
        org = mix(seed ^ 0x5EED)
        self.id_base = org % (62 ** 11 // 4)
        self.id_suffix = b62(org >> 20, 3)  # Okta ids end in a per-cell tag, e.g. "4x6", "5d7"
        self.type_id = "oty" + random62(org ^ 1, 14) + self.id_suffix
        self.schema_id = "osc" + random62(org ^ 2, 14) + self.id_suffix

    def h(self, index: int, salt: int = 0) -> int:
        return mix((self.seed * 0x100000001B3) ^ (index * 0x9E3779B97F4A7C15) ^ (salt * 0xD6E8FEB86659FD93))

    # ids: "00u" + 11 monotonic base62 chars + 3 random + 3 org chars = 20 chars; sorted order == index order.
    def user_id(self, index: int) -> str:
        value = self.id_base + (index << 20) + (self.h(index, 1) & 0xFFFFF)
        return "00u" + b62(value, 11) + b62(self.h(index, 2), 3) + self.id_suffix

    def index_of_id(self, user_id: str) -> int | None:
        if len(user_id) != 20 or not user_id.startswith("00u") or not user_id.endswith(self.id_suffix):
            return None
        try:
            value = b62_decode(user_id[3:14])
        except ValueError:
            return None
        if value < self.id_base:
            return None
        index = (value - self.id_base) >> 20
        return index if self.user_id(index) == user_id else None

    def status(self, index: int) -> int:
        roll = (self.h(index, 3) >> 11) / float(1 << 53)
        if roll < self.deprovisioned_fraction:
            return DEPROVISIONED
        roll -= self.deprovisioned_fraction
        if roll < self.other_status_fraction:
            return 1 + int(roll / self.other_status_fraction * 6) % 6
        return 0

    def created(self, index: int) -> int:
        h = self.h(index, 4)
        share = (h >> 11) / float(1 << 53)  # uniform in [0, 1), independent of the offset below
        if self.created_distribution == "skewed":  # growth: most sign-ups recent
            return ANCHOR - 30 * 86400 - int(share ** 3 * 6 * YEAR)
        if self.created_distribution == "import_day" and share < 0.6:  # one bulk import holds 60% of the org
            return ANCHOR - 2 * YEAR + h % 86400
        if self.created_distribution == "stopped":  # sign-ups ended four years ago
            return ANCHOR - 4 * YEAR - h % (2 * YEAR)
        return ANCHOR - 30 * 86400 - h % (6 * YEAR)

    def last_updated(self, index: int, created: int) -> int:
        return created + self.h(index, 5) % (ANCHOR - created)

    def is_messy(self, index: int) -> bool:
        return (self.h(index, 6) >> 11) / float(1 << 53) < self.messy_fraction

    def clean_profile(self, index: int) -> dict:
        h = self.h(index, 7)
        first = FIRST_NAMES[h % len(FIRST_NAMES)]
        last = LAST_NAMES[(h >> 8) % len(LAST_NAMES)]
        department = DEPARTMENT_NAMES[(h >> 16) % len(DEPARTMENT_NAMES)]
        titles = DEPARTMENTS[department]
        title = titles[(h >> 24) % len(titles)]
        login = f"{_FOLDED[first]}.{_FOLDED[last]}{index}@example.com"
        return {
            "firstName": first,
            "lastName": last,
            "mobilePhone": f"+1 555 01{(h >> 32) % 100:02d} {(h >> 40) % 10000:04d}" if (h >> 48) % 3 else None,
            "secondEmail": None,
            "login": login,
            "email": login,
            "displayName": f"{first} {last}",
            "title": title,
            "department": department,
            "employeeNumber": str(100000 + index),
            "locale": "en_US",
        }

    def profile(self, index: int) -> tuple[dict, dict]:
        """(profile as served, {field: clean value} for the fields seeded messy)."""
        profile = self.clean_profile(index)
        if not self.is_messy(index):
            return profile, {}
        h = self.h(index, 8)
        fields = [MESSY_FIELDS[h % 5]]
        if (h >> 8) % 3 == 0:
            second = MESSY_FIELDS[(h >> 16) % 5]
            if second != fields[0]:
                fields.append(second)
        clean = {}
        for number, name in enumerate(fields):
            value = profile[name]
            profile[name] = mess_up(value, self.h(index, 9 + number))
            clean[name] = value
        return profile, clean


# Each mangling is undone by a conservative normaliser: NFC, drop zero-width and control characters,
# strip, collapse runs of spaces.
def mess_up(value: str, h: int) -> str:
    kind = h % 6
    if kind == 1 and unicodedata.normalize("NFD", value) == value:
        kind = 2  # NFD would not change a value without composed characters
    if kind == 0:
        messy = f"  {value} " if h & 64 else f" {value}"
    elif kind == 1:
        messy = unicodedata.normalize("NFD", value)
    elif kind == 2:
        cut = 1 + (h >> 8) % max(1, len(value) - 1)
        messy = value[:cut] + ("\u200b" if h & 128 else "\ufeff") + value[cut:]
    elif kind == 3 and " " in value:
        messy = value.replace(" ", "  ", 1)
    elif kind == 4:
        messy = value + ("\t" if h & 256 else "\u0007")
    else:
        messy = value + " "
    return messy
