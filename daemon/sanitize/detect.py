"""Find columns that look personal or secret, by name, type and sampled values.

Fail closed: a snapshot whose staging database has a flagged column without a rule is
refused (:func:`refuse_unreviewed`), listing each column with a suggested rule, and
:func:`starter_rules` writes those suggestions as a rules file to review. The detector
judges names, types and values it is given (the dialects' ``sample_pg`` and
``sample_sqlite`` read them: a few ``SELECT … LIMIT n``); it never decides that a
column is *safe*.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import Refused
from branchdb.daemon.sanitize.rules import Rules
from branchdb.daemon.sanitize.schema import Column, Schema, Table, q

if TYPE_CHECKING:
    pass

SAMPLE = 200


@dataclass(frozen=True)
class Finding:
    table: str
    column: str
    category: str  # email, phone, name, address, ip, birth, id, secret, financial, …
    reason: str  # "name", "type inet", "values: 96% look like emails"
    suggestion: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.table}.{self.column}"

    def toml(self) -> str:
        """The suggested rule as one line of a ``[tables.T]`` section."""
        s = self.suggestion
        if set(s) == {"strategy"}:
            return f'columns.{_bare(self.column)} = "{s["strategy"]}"'
        inner = ", ".join(f"{k} = {_lit(v)}" for k, v in s.items())
        return f"columns.{_bare(self.column)} = {{ {inner} }}"


def _lit(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v).lower() if isinstance(v, bool) else str(v)


def _bare(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _lit(name)


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


def suggest(category: str, col: Column, dialect: str) -> dict[str, Any]:
    """A rule that masks *category* while keeping *col*'s type and constraints."""
    textual = col.kind == "text"
    if category == "birth" and col.kind in ("date", "timestamp"):
        return {"strategy": "noise", "days": 180}
    if category == "text":
        if dialect == "postgres":
            expr = (
                f"regexp_replace({_ident(col.name)}, '[^[:space:]@]+@[^[:space:]@]+', "
                "'redacted@example.com', 'g')"
            )
            return {"strategy": "sql", "expr": expr}
        return (
            {"strategy": "fixed", "value": ""} if col.not_null else {"strategy": "null"}
        )
    if not textual or (col.unique and category in ("first", "last", "name", "phone")):
        return {"strategy": "hash"}
    simple = {"email": "email", "phone": "phone", "name": "name"}
    if category in simple:
        return {"strategy": simple[category]}
    if category in ("first", "last"):
        return {"strategy": "name", "part": category}
    if category in ("street", "city", "zip"):
        return {"strategy": "address", "part": category}
    return {"strategy": "hash"}  # ip, id, secret, financial, birth as text


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else q(name)


def detect(
    schema: Schema, samples: dict[str, dict[str, list[str]]], dialect: str
) -> list[Finding]:
    """Findings for every column of *schema*; *samples*: table → column → values
    (from ``sample_pg`` or ``sample_sqlite`` of the dialect's introspect module)."""
    out: list[Finding] = []
    for t in schema.tables.values():
        for c in t.columns.values():
            category, reason = classify_name(t.name, c.name), "column name"
            if category is None and c.kind == "inet":
                category, reason = "ip", f"type {c.type}"
            if category is None:
                got = classify_values(samples.get(t.key, {}).get(c.name, []))
                if got:
                    category, reason = got
            if category:
                out.append(
                    Finding(
                        t.key, c.name, category, reason, suggest(category, c, dialect)
                    )
                )
    return out


def sampled_columns(t: Table) -> list[Column]:
    """The columns of *t* whose values are sampled (text and JSON)."""
    return [c for c in t.columns.values() if c.kind in ("text", "json")]


def by_column(
    cols: list[Column], rows: Iterable[tuple[Any, ...]]
) -> dict[str, list[str]]:
    """Sampled *rows* (one value per column of *cols*) as column → non-blank texts."""
    got: dict[str, list[str]] = {c.name: [] for c in cols}
    for row in rows:
        for c, v in zip(cols, row, strict=True):
            if v is not None and str(v).strip():
                got[c.name].append(str(v))
    return got


class UnreviewedColumns(Refused):
    """Flagged columns have no rule: the snapshot is refused (fail closed)."""

    def __init__(self, findings: list[Finding], rules_source: str) -> None:
        self.findings = findings
        lines = "\n".join(
            f"  {f.where} ({f.category}; {f.reason}) → [tables.{f.table}] {f.toml()}"
            for f in findings
        )
        super().__init__(
            f"refusing to snapshot: {len(findings)} column(s) look personal or secret "
            f"and have no rule in {rules_source}:\n{lines}\nAdd the rules (use "
            '"keep" for a column that is safe), or pass --allow-unreviewed to record '
            "the override on the snapshot"
        )


def unreviewed(findings: list[Finding], rules: Rules) -> list[Finding]:
    """Flagged columns with no rule (a truncated table needs none)."""
    return [f for f in findings if not rules.reviewed(f.table, f.column)]


def refuse_unreviewed(
    findings: list[Finding], rules: Rules, allow_unreviewed: bool
) -> list[Finding]:
    """The flagged columns without a rule; UnreviewedColumns if there are any,
    unless *allow_unreviewed* (then the caller records them on the snapshot)."""
    missing = unreviewed(findings, rules)
    if missing and not allow_unreviewed:
        raise UnreviewedColumns(missing, rules.source)
    return missing


def starter_rules(
    findings: list[Finding], salt_env: str = "BRANCHDB_SANITIZE_SALT"
) -> str:
    """A rules file with one suggested rule per finding, to review and commit."""
    lines = [
        "# branchdb sanitize rules: generated from the detector's findings.",
        '# Review every line: "keep" marks a column as safe to copy as it is.',
        f'salt_env = "{salt_env}"',
    ]
    tables: dict[str, list[Finding]] = {}
    for f in findings:
        tables.setdefault(f.table, []).append(f)
    for table, items in tables.items():
        lines += ["", f"[tables.{_bare(table) if '.' not in table else _lit(table)}]"]
        lines += [f"{f.toml()}  # {f.category}: {f.reason}" for f in items]
    return "\n".join(lines) + "\n"
