"""Rules parsing, fakes and the detector's classifiers: pure functions, no database."""

from __future__ import annotations

import pytest

from branchdb.daemon.sanitize import fakes
from branchdb.daemon.sanitize.detect import classify_name, classify_values, luhn
from branchdb.daemon.sanitize.rules import RulesError, parse_rules


def test_both_column_forms_and_table_options() -> None:
    r = parse_rules(
        """
        salt_env = "SALT"
        [tables.users]
        where = "id > 10"
        columns.email = "email"
        columns.ssn = { strategy = "hash", salt_key = "people" }
        [tables."audit.log"]
        truncate = true
        [tables.orders.columns]
        total = { strategy = "noise", range = 0.1 }
        """,
        env={"SALT": "s3"},
    )
    assert r.salt == "s3" and r.tables["users"].where == "id > 10"
    assert r.column("users", "ssn") is not None
    assert r.salt_for(r.tables["users"].columns["ssn"]) != r.salt
    assert r.reviewed("audit.log", "anything") and not r.reviewed("users", "phone")
    assert r.tables["orders"].columns["total"].range == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tables.t.columns]\nc = "email"', "a salt is required"),
        ('salt_env = "NOPE"', "environment variable NOPE is not set"),
        ('salt = "s"\n[tables.users.columns]\nemail = "emial"', "users.email: unknown strategy 'emial' (did you mean 'email'?)"),
        ('salt = "s"\n[tables.users.columns]\nage = { strategy = "noise", rnage = 1 }', "users.age: unknown key 'rnage' (did you mean 'range'?)"),
        ('salt = "s"\n[tables.users.columns]\nage = { strategy = "noise" }', "users.age: noise needs exactly one of"),
        ('salt = "s"\n[tables.users.columns]\nn = { strategy = "name", part = "middle" }', "users.n: part must be one of full, first, last"),
        ('salt = "s"\n[tables.users.columns]\nx = "fixed"', "users.x: strategy 'fixed' needs a value"),
        ('salt = "s"\n[tables.users.columns]\nx = { strategy = "sql" }', "users.x: strategy 'sql' needs expr"),
        ('salt = "s"\n[tables.users]\ntruncate = true\nwhere = "1=1"', "truncate and where exclude each other"),
        ('salt = "s"\nsalts = 1', "unknown key 'salts' (did you mean 'salt'?)"),
    ],
)  # fmt: skip
def test_mistakes_name_the_column(text: str, message: str) -> None:
    with pytest.raises(RulesError) as e:
        parse_rules(text, source="sanitize.toml", env={})
    assert str(e.value).startswith("sanitize.toml: ")
    assert message in str(e.value)


def test_fakes_are_deterministic_sized_and_shaped() -> None:
    h = fakes.digest("salt", "alice@example.org")
    assert h is not None and h == fakes.digest("salt", "alice@example.org")
    assert h != fakes.digest("pepper", "alice@example.org")
    assert fakes.digest("s", None) is None
    assert fakes.email(h, None) == f"{h[:16]}@example.com"
    assert fakes.email(h, 30) == f"{h[:16]}@example.com"
    assert fakes.email(h, 25) == f"{h[:13]}@example.com"
    assert fakes.email(h, 19) == h[:19]  # too short to decorate: plain hex
    assert fakes.email(h, 20) == f"{h[:8]}@example.com"
    for strategy, part in (("name", "full"), ("name", "first"), ("phone", "full"),
                           ("address", "full"), ("address", "street"), ("address", "zip")):  # fmt: skip
        shape = fakes.shape(strategy, part)
        assert shape is not None
        import re

        assert re.fullmatch(shape, fakes.fake(strategy, h, part, None))
        assert len(fakes.fake(strategy, h, part, 5)) <= 5


def test_name_classifier() -> None:
    cases = {
        ("users", "email"): "email", ("users", "contactEmail"): "email",
        ("users", "password_hash"): "secret", ("keys", "api_key"): "secret",
        ("users", "first_name"): "first", ("users", "surname"): "last",
        ("customers", "name"): "name", ("products", "name"): None,
        ("users", "zip_code"): "zip", ("users", "date_of_birth"): "birth",
        ("users", "last_ip"): "ip", ("users", "ssn"): "id", ("pay", "iban"): "financial",
        ("orders", "total"): None, ("orders", "shipping_address"): "street",
    }  # fmt: skip
    for (table, column), want in cases.items():
        assert classify_name(table, column) == want, (table, column)


def test_value_classifier() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    samples = {
        "email": ["a@b.co", "x.y@corp.example.org"],
        "secret": ["$2b$12$" + "a" * 53, "$argon2id$v=19$m=65536,t=3,p=4$abc$def"],
        "financial": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
        "ip": ["203.0.113.5", "2001:db8::1"],
        "phone": ["+44 20 7946 0001", "(415) 555-0100"],
    }
    for category, values in samples.items():
        got = classify_values(values)
        assert got is not None and got[0] == category, values
    free = classify_values(["call me", "mail bob@example.com tomorrow", "ok"])
    assert free is not None and free[0] == "text"
    assert classify_values(["SKU-1234", "SKU-9876", "12345678"]) is None
    assert classify_values(["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"]) == (
        "secret",
        "values: 100% look like JWT-like tokens",
    )
