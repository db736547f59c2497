"""Deterministic fake values, shared by both dialects.

Every fake is a pure function of ``sha256(salt || value)`` (hex): PostgreSQL computes
it with ``encode(sha256(convert_to(salt || value, 'UTF8')), 'hex')`` and SQLite calls
the Python functions below, so the *same* text gives the *same* fake in every table,
every run and on both databases (tests/test_sanitize_rules.py pins this).

Index arithmetic is kept to what both sides can do exactly: a 7-hex-digit slice of the
digest (28 bits, always positive in PostgreSQL's ``bit(28)::int``) modulo a list length.
"""

from __future__ import annotations

import hashlib

FIRST_NAMES = [
    "Avery",
    "Blake",
    "Casey",
    "Dana",
    "Ellis",
    "Finley",
    "Gray",
    "Harper",
    "Indigo",
    "Jordan",
    "Kai",
    "Logan",
    "Morgan",
    "Noel",
    "Oakley",
    "Parker",
    "Quinn",
    "Reese",
    "Rowan",
    "Sage",
    "Tatum",
    "Umber",
    "Vale",
    "Wren",
    "Yael",
    "Zion",
    "Arden",
    "Briar",
    "Cove",
    "Dell",
]
LAST_NAMES = [
    "Ashford",
    "Bellamy",
    "Carrow",
    "Dunmore",
    "Everly",
    "Fairbank",
    "Galloway",
    "Hartwell",
    "Ingram",
    "Jessop",
    "Kingsley",
    "Lockhart",
    "Merriweather",
    "Northcott",
    "Ormsby",
    "Pemberton",
    "Quayle",
    "Radcliffe",
    "Sterling",
    "Thornbury",
    "Upton",
    "Vance",
    "Whitlock",
    "Yardley",
    "Ashby",
    "Brightwater",
    "Coldwell",
    "Denholm",
    "Easton",
    "Foxley",
]
STREETS = [
    "Maple",
    "Cedar",
    "Willow",
    "Juniper",
    "Aspen",
    "Hawthorn",
    "Linden",
    "Sycamore",
    "Chestnut",
    "Magnolia",
    "Alder",
    "Birch",
    "Cypress",
    "Elm",
    "Hazel",
    "Laurel",
    "Poplar",
    "Rowan",
    "Spruce",
    "Yew",
]
SUFFIXES = [
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Way",
    "Court",
    "Place",
    "Drive",
    "Terrace",
    "Row",
]
CITIES = [
    "Brookfield",
    "Clearwater",
    "Fairview",
    "Glenwood",
    "Highland",
    "Lakeside",
    "Millbrook",
    "Northgate",
    "Oakridge",
    "Pinecrest",
    "Riverton",
    "Springdale",
    "Westbury",
    "Ashgrove",
    "Bayview",
    "Cedarhurst",
]

PHONE_PREFIX = "+1-555-"
#: A masked email is hex digits of the digest then this reserved domain. The digits
#: come first: a fixed prefix would make every comparison of two masked emails (the
#: sort of a unique index build, a merge join) compare that prefix first.
EMAIL_DOMAIN = "@example.com"
#: Hex digits of the digest kept by ``email``/``hash`` when the column allows it.
EMAIL_HEX = 16
HASH_HEX = 32


def shape(strategy: str, part: str = "full") -> str | None:
    """Regex (anchored) of every value *strategy* can generate, or None.

    The verifier does not count an original value that matches its own strategy's
    output shape as a leak (a real "Avery Ashford" may also be a generated one);
    those values are reported as ambiguous instead.
    """
    w = "|".join
    street = rf"\d{{1,4}} ({w(STREETS)}) ({w(SUFFIXES)})"
    shapes = {
        ("email", "full"): r"([0-9a-f]{8,16}@example\.com|[0-9a-f]+)",
        ("phone", "full"): r"\+1-555-\d{3}-\d{4}",
        ("name", "first"): f"({w(FIRST_NAMES)})",
        ("name", "last"): f"({w(LAST_NAMES)})",
        ("name", "full"): f"({w(FIRST_NAMES)}) ({w(LAST_NAMES)})",
        ("address", "street"): street,
        ("address", "city"): f"({w(CITIES)})",
        ("address", "zip"): r"\d{5}",
        ("address", "full"): rf"{street}, ({w(CITIES)}) \d{{5}}",
    }
    got = shapes.get((strategy, part))
    return None if got is None else f"^({got})$"


def digest(salt: str, value: object) -> str | None:
    """Hex sha256 of ``salt || text(value)``; None for NULL."""
    if value is None:
        return None
    text = value if isinstance(value, str) else _text(value)
    return hashlib.sha256((salt + text).encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pick(h: str, at: int, n: int) -> int:
    """Index in ``range(n)`` from the 7 hex digits of *h* at offset *at*."""
    return int(h[at : at + 7], 16) % n


def email_hex(max_len: int | None) -> int:
    """Hex digits of a masked email in a column of *max_len* characters (under 8:
    the column is too short for the domain, the value is plain hex)."""
    return EMAIL_HEX if max_len is None else min(EMAIL_HEX, max_len - len(EMAIL_DOMAIN))


def email(h: str, max_len: int | None) -> str:
    k = email_hex(max_len)
    if k < 8:  # too short for the decorated form: plain hex keeps it unique
        return h[: max_len or HASH_HEX]
    return f"{h[:k]}{EMAIL_DOMAIN}"


def name(h: str, part: str) -> str:
    first = FIRST_NAMES[pick(h, 0, len(FIRST_NAMES))]
    last = LAST_NAMES[pick(h, 7, len(LAST_NAMES))]
    return {"first": first, "last": last}.get(part, f"{first} {last}")


def phone(h: str) -> str:
    d = f"{int(h[:7], 16) % 10_000_000:07d}"
    return f"{PHONE_PREFIX}{d[:3]}-{d[3:]}"


def address(h: str, part: str) -> str:
    street = (
        f"{1 + int(h[:7], 16) % 9999} {STREETS[pick(h, 7, len(STREETS))]} "
        f"{SUFFIXES[pick(h, 14, len(SUFFIXES))]}"
    )
    city = CITIES[pick(h, 21, len(CITIES))]
    zipcode = f"{int(h[28:35], 16) % 100_000:05d}"
    return {"street": street, "city": city, "zip": zipcode}.get(
        part, f"{street}, {city} {zipcode}"
    )


def fake(strategy: str, h: str, part: str, max_len: int | None) -> str:
    """The fake text for *strategy* from digest *h*, cut to *max_len*."""
    if strategy == "email":
        return email(h, max_len)
    if strategy == "hash":
        out = h[:HASH_HEX]
    elif strategy == "name":
        out = name(h, part)
    elif strategy == "phone":
        out = phone(h)
    else:
        out = address(h, part)
    return out if max_len is None else out[:max_len]
