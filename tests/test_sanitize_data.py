"""A realistic personal-data set for the sanitize tests, and an independent leak search.

Imported by test_sanitize_pg.py and test_sanitize_sqlite.py. Names, cities and
postcodes are deliberately outside the fake word lists, so any hit of an original in
the sanitized database is a real leak, not a coincidence.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

FIRST = [
    "Marguerite",
    "Thaddeus",
    "Philippa",
    "Ignatius",
    "Rosalind",
    "Bartholomew",
    "Evangeline",
    "Cornelius",
    "Octavia",
    "Leopold",
]
LAST = [
    "Zwicky",
    "Okonkwo",
    "Lindqvist",
    "Halvorsen",
    "Brannigan",
    "Delacroix",
    "Nakamura",
    "Oyelaran",
    "Przybylski",
    "Featherstone",
]
CITIES = [
    "Aberystwyth",
    "Kalamazoo",
    "Tromso",
    "Ouagadougou",
    "Llandudno",
    "Timbuktu",
    "Reykjavik",
    "Valparaiso",
]
DOMAINS = ["gmail.com", "proton.me", "corp.example.org", "mail.co.uk"]
N_USERS = 120

SCHEMA = """
CREATE TABLE users (
    id integer PRIMARY KEY,
    email varchar(60) NOT NULL UNIQUE,
    full_name text NOT NULL,
    first_name text,
    last_name text,
    phone varchar(20),
    street text,
    city text,
    zip varchar(10),
    last_ip {ip},
    birth_date date,
    password_hash text NOT NULL,
    created_at timestamp NOT NULL,
    balance numeric(10,2),
    status text NOT NULL
);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users (id),
    customer_email varchar(60) NOT NULL,
    total numeric(10,2) NOT NULL,
    notes text
);
CREATE TABLE order_items (
    id integer PRIMARY KEY,
    order_id integer NOT NULL REFERENCES orders (id),
    sku text NOT NULL,
    qty integer NOT NULL
);
CREATE TABLE newsletter (email text PRIMARY KEY, subscribed_on date NOT NULL);
CREATE TABLE audit_log (id integer PRIMARY KEY, actor_ip text, payload text);
"""

RULES = """
salt = "{salt}"

[tables.users]
where = "created_at >= '2024-01-01'"

[tables.users.columns]
email = "email"
full_name = "name"
first_name = {{ strategy = "name", part = "first" }}
last_name = {{ strategy = "name", part = "last" }}
phone = "phone"
street = {{ strategy = "address", part = "street" }}
city = {{ strategy = "address", part = "city" }}
zip = {{ strategy = "address", part = "zip" }}
last_ip = "hash"
birth_date = {{ strategy = "noise", days = 30 }}
password_hash = {{ strategy = "fixed", value = "!disabled" }}
balance = {{ strategy = "noise", range = 0.1 }}
status = "shuffle"

[tables.orders.columns]
customer_email = "email"
notes = {notes}

[tables.newsletter.columns]
email = "email"

[tables.audit_log]
truncate = true
"""
# Redacts emails only: the customers' names stay in the notes (see the leak tests).
PG_NOTES_EMAILS_ONLY = (
    '{ strategy = "sql", expr = "regexp_replace(notes, '
    "'[^[:space:]@]+@[^[:space:]@]+', 'redacted@example.com', 'g')\" }"
)
PG_NOTES = (
    '{ strategy = "sql", expr = "CASE WHEN notes IS NOT NULL THEN \'(redacted)\' END" }'
)
SQLITE_NOTES = '"null"'


def rules_text(dialect: str, salt: str = "pepper-1", drop: str = "") -> str:
    text = RULES.format(
        salt=salt, notes=PG_NOTES if dialect == "postgres" else SQLITE_NOTES
    )
    return "\n".join(
        ln for ln in text.splitlines() if not drop or not ln.startswith(drop)
    )


def dataset(seed: int = 7) -> dict[str, list[tuple[Any, ...]]]:
    rnd = random.Random(seed)
    users, orders, items, news, audit = [], [], [], [], []
    for i in range(1, N_USERS + 1):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
        email = f"{first}.{last}{i}@{DOMAINS[i % len(DOMAINS)]}".lower()
        ip = f"203.0.113.{i}" if i % 5 else f"2001:db8::{i:x}"
        created = f"{2023 + i % 2}-{1 + i % 12:02d}-{1 + i % 27:02d} 10:00:00"
        users.append((
            i, email, f"{first} {last}", first, last,
            f"+44 20 7946 {i:04d}", f"{i + 10} {LAST[i % len(LAST)]} Crescent",
            CITIES[i % len(CITIES)], f"SW{i % 9}A {i % 10}BB", ip,
            f"{1960 + i % 40}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "$2b$12$" + "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzABCDEF./0123456789") for _ in range(53)),
            created, round(rnd.uniform(0, 5000), 2), ["active", "paused", "closed"][i % 3],
        ))  # fmt: skip
        for k in range(2):
            oid = i * 10 + k
            note = (
                f"Customer {first} {last} asked to be reached at {email} after 5pm."
                if k == 0
                else "Leave at the door"
            )
            orders.append((oid, i, email, round(rnd.uniform(5, 500), 2), note))
            items.append(
                (oid * 10, oid, f"SKU-{rnd.randint(1000, 9999)}", rnd.randint(1, 4))
            )
        if i % 3 == 0:
            news.append((email, "2024-05-01"))
        audit.append((i, ip, f"login by {email}"))
    return {
        "users": users,
        "orders": orders,
        "order_items": items,
        "newsletter": news,
        "audit_log": audit,
    }


PERSONAL = {  # column index in users → label; every original must vanish
    1: "email", 2: "full_name", 3: "first_name", 4: "last_name", 5: "phone",
    6: "street", 7: "city", 8: "zip", 9: "last_ip", 11: "password_hash",
}  # fmt: skip


def originals(data: dict[str, list[tuple[Any, ...]]]) -> set[str]:
    return {str(row[i]) for row in data["users"] for i in PERSONAL}


def leaks(original: set[str], cells: Iterable[object]) -> list[str]:
    """Independent search: every cell of the sanitized database, whole and substring."""
    found = []
    for cell in cells:
        if cell is None:
            continue
        text = str(cell)
        if text in original:
            found.append(text)
        elif "@" in text or " " in text:
            found += [o for o in original if len(o) > 6 and o in text]
    return found


def test_dataset_is_deterministic_and_personal() -> None:
    a, b = dataset(), dataset()
    assert a == b
    assert len(originals(a)) > 5 * N_USERS
    assert not leaks(originals(a), ["nothing personal here", 42, None])
    assert leaks(originals(a), [f"mail {a['users'][0][1]} now"])
