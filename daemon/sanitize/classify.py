"""Does a column name, or a list of sampled texts, look personal or secret?

Pure functions over names and strings; :mod:`detect` and :mod:`structured` apply
them to columns, JSON paths and array elements.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# Column-name patterns, matched against "_<snake_case name>_" (first match wins).
_NAMES: list[tuple[str, str]] = [
    ("email", r"_e_?mails?_"),
    ("secret", r"_(pass(word)?|passwd|pwd|pw)(_hash|_digest)?_|_password"),
    ("secret", r"_(token|secret|api_?key|private_?key|credentials?|otp|salt)s?_"),
    ("id", r"_(ssn|social_security\w*|national_id|tax_id|passport\w*|license_no)_"),
    ("financial", r"_(iban|bic|card(_?(no|num|number))?|credit_?card\w*|cc_?num\w*)_"),
    ("financial", r"_(account_?(no|num|number)|bank_?account|routing\w*)_"),
    ("phone", r"_(phone|mobile|cell|fax|tel|telephone)(_?(no|num|number))?_"),
    ("first", r"_(first|given|fore)_?name_"),
    ("last", r"_(last|family|sur)_?name_"),
    ("name", r"_(full_?name|display_?name|middle_?name|contact_?name|user_?name)_"),
    ("street", r"_(street\w*|address\w*|addr\w*)_"),
    ("city", r"_(city|town)_"),
    ("zip", r"_(zip(_?code)?|postal(_?code)?|postcode)_"),
    ("ip", r"_(ip|ip_?addr\w*|remote_addr|client_ip|last_ip|ipv[46])_"),
    ("birth", r"_(dob|birth\w*|date_of_birth|birthday)_"),
]
# A bare "name" column is personal only in a table about people.
_PEOPLE = re.compile(
    r"user|customer|person|people|member|employee|contact|patient|client|author|"
    r"staff|account|profile|subscriber|student|driver"
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_EMAIL_IN = re.compile(r"[^@\s<>(),;:\"']+@[^@\s<>(),;:\"']+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,22}$")
_JWT = re.compile(r"^eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*$")
_PWHASH = re.compile(r"^\$(2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}|argon2(id|i|d)\$.+)$")
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _is_ip(v: str) -> bool:
    if not (("." in v or ":" in v) and len(v) <= 45):
        return False
    try:
        ipaddress.ip_address(v.split("/")[0])
    except ValueError:
        return False
    return True


def _is_phone(v: str) -> bool:
    digits = re.sub(r"\D", "", v)
    return bool(_PHONE.match(v)) and 7 <= len(digits) <= 15 and v.strip() != digits


def _is_card(v: str) -> bool:
    digits = re.sub(r"[\s-]", "", v)
    return digits.isdigit() and 13 <= len(digits) <= 19 and luhn(digits)


_VALUES: list[tuple[str, str, Any]] = [
    ("email", "emails", _EMAIL.match),
    ("secret", "password hashes", _PWHASH.match),
    ("secret", "JWT-like tokens", _JWT.match),
    ("financial", "card numbers (Luhn)", _is_card),
    ("financial", "IBANs", _IBAN.match),
    ("ip", "IP addresses", _is_ip),
    ("phone", "phone numbers", _is_phone),
]


def classify_values(values: list[str]) -> tuple[str, str] | None:
    """(category, reason) when sampled values look personal, else None."""
    if not values:
        return None
    for category, label, test in _VALUES:
        hits = sum(1 for v in values if test(v))
        if hits * 2 >= len(values):
            return category, f"values: {100 * hits // len(values)}% look like {label}"
    with_email = sum(1 for v in values if _EMAIL_IN.search(v))
    if with_email:
        return "text", f"values: {with_email} of {len(values)} contain an email"
    return None


def classify_name(table: str, column: str) -> str | None:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column).lower()
    probe = f"_{re.sub(r'[^a-z0-9]+', '_', snake)}_"
    for category, pattern in _NAMES:
        if re.search(pattern, probe):
            return category
    if probe == "_name_" and _PEOPLE.search(table.lower()):
        return "name"
    return None
