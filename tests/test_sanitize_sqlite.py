"""The sanitize pipeline on real SQLite files (the libsql backend's sources)."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_sanitize_data import N_USERS, SCHEMA, dataset, leaks, originals, rules_text

from branchdb.daemon.sanitize.check import check_sqlite
from branchdb.daemon.sanitize.detect import UnreviewedColumns
from branchdb.daemon.sanitize.leaks import LeakFound, VerifyReport
from branchdb.daemon.sanitize.rules import RulesError, parse_rules
from branchdb.daemon.sanitize.sqlite import masking, verify
from branchdb.daemon.sanitize.sqlite.introspect import sqlite_schema
from branchdb.daemon.sanitize.sqlite.pipeline import sanitize_sqlite


def make_source(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    data = dataset()
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.format(ip="text"))
    for table, rows in data.items():
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    db.commit()
    db.close()
    return data


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, list[tuple[Any, ...]]]]:
    path = tmp_path / "prod.db"
    return path, make_source(path)


def staging(src: Path, name: str) -> Path:
    dst = src.with_name(name)
    shutil.copyfile(src, dst)
    return dst


def cells(path: Path) -> list[object]:
    db = sqlite3.connect(path)
    out: list[object] = []
    for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in db.execute(f'SELECT * FROM "{t}"'):
            out += row
    db.close()
    return out


def raw_bytes_contain(path: Path, needles: set[str]) -> list[str]:
    blob = path.read_bytes()
    return [n for n in needles if len(n) > 6 and n.encode() in blob]


def test_sanitized_file_has_no_original_and_keeps_joins(source: Any) -> None:
    src, data = source
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    stg = staging(src, "stage.db")
    events: list[tuple[str, str, int]] = []
    report = sanitize_sqlite(
        stg, parse_rules(rules_text("sqlite")), progress=lambda *e: events.append(e)
    )
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before  # source untouched
    original = originals(data)
    assert leaks(original, cells(stg)) == []
    # Not even in free pages or the journal: the file was rebuilt.
    assert raw_bytes_contain(stg, original) == []
    db = sqlite3.connect(stg)
    one = lambda q: db.execute(q).fetchone()  # noqa: E731
    kept = one("SELECT count(*) FROM users")[0]
    assert 0 < kept < N_USERS
    # joins on masked keys: users.email ↔ orders.customer_email ↔ newsletter.email
    assert (
        one("SELECT count(*) FROM orders o JOIN users u ON u.email = o.customer_email")[
            0
        ]
        == 2 * kept
    )
    assert one("SELECT count(*) FROM newsletter n JOIN users u USING (email)")[0] > 0
    # no dangling rows after `where`, across two levels of foreign keys
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert one("SELECT count(*) FROM order_items")[0] == 2 * kept
    assert report.applied.tables["order_items"]["orphans deleted"] > 0
    # constraints: unique, not null, lengths
    assert one(
        "SELECT count(DISTINCT email) = count(*), max(length(email)) <= 60 FROM users"
    ) == (1, 1)
    assert (
        one(
            "SELECT count(*) FROM users WHERE full_name IS NULL OR password_hash IS NULL"
        )[0]
        == 0
    )
    assert one("SELECT max(length(phone)) FROM users")[0] <= 20
    assert one("SELECT count(*) FROM audit_log")[0] == 0
    # noise stays within its range; shuffle keeps the multiset of its kept rows
    assert (
        one(
            "SELECT count(*) FROM users WHERE length(email) = 28 "
            "AND substr(email, 1, 16) NOT GLOB '*[^0-9a-f]*' "
            "AND substr(email, 17) = '@example.com'"
        )[0]
        == kept
    )
    statuses = sorted(r[0] for r in db.execute("SELECT status FROM users"))
    assert set(statuses) <= {"active", "paused", "closed"}
    db.close()
    assert report.verified.originals > 0 and report.rows > 0
    assert ("users", "masked", kept) in events
    assert "users.phone" in report.info()["flagged"]


def test_birth_dates_move_within_the_noise_range(source: Any) -> None:
    src, data = source
    stg = staging(src, "stage.db")
    sanitize_sqlite(stg, parse_rules(rules_text("sqlite")))
    db = sqlite3.connect(stg)
    before = {r[0]: r[10] for r in data["users"]}
    moved = 0
    for uid, born in db.execute("SELECT id, birth_date FROM users"):
        delta = db.execute(
            "SELECT julianday(?) - julianday(?)", (born, before[uid])
        ).fetchone()[0]
        assert abs(delta) <= 30
        moved += delta != 0
    assert moved > 0


def test_missing_rule_blocks_with_column_and_suggestion(source: Any) -> None:
    src, _ = source
    stg = staging(src, "stage.db")
    before = hashlib.sha256(stg.read_bytes()).hexdigest()
    with pytest.raises(UnreviewedColumns) as e:
        sanitize_sqlite(stg, parse_rules(rules_text("sqlite", drop="phone =")))
    assert "users.phone" in str(e.value) and 'columns.phone = "phone"' in str(e.value)
    assert hashlib.sha256(stg.read_bytes()).hexdigest() == before
    report = sanitize_sqlite(
        stg, parse_rules(rules_text("sqlite", drop="phone =")), allow_unreviewed=True
    )
    assert report.info()["allowed_unreviewed"] == ["users.phone"]


def test_check_reports_and_starter_rules_parse(source: Any) -> None:
    from branchdb.daemon.sanitize.detect import starter_rules

    src, _ = source
    findings, _, _ = check_sqlite(src)
    flagged = {f.where for f in findings}
    assert {"users.email", "users.full_name", "users.phone", "users.city", "users.zip",
            "users.last_ip", "users.birth_date", "users.password_hash",
            "orders.customer_email", "orders.notes", "newsletter.email"} <= flagged  # fmt: skip
    assert not flagged & {
        "users.balance",
        "users.status",
        "order_items.sku",
        "orders.total",
    }
    starter = parse_rules(starter_rules(findings), env={"BRANCHDB_SANITIZE_SALT": "x"})
    # the starter file is itself a complete, applicable rules file
    report = sanitize_sqlite(staging(src, "stage.db"), starter)
    assert report.unreviewed == []
    assert leaks(originals(dataset()), cells(src.with_name("stage.db"))) == []


def test_verifier_catches_a_planted_leak_and_free_text(source: Any) -> None:
    src, data = source
    stg = staging(src, "stage.db")
    rules = parse_rules(rules_text("sqlite"))
    db = sqlite3.connect(stg, isolation_level=None)
    schema = sqlite_schema(db)
    originals_ = verify.capture_sqlite(db, schema, rules)
    masking.apply(db, schema, rules)
    verify.verify_sqlite(db, schema, VerifyReport(originals_.originals))
    db.execute(
        "UPDATE order_items SET sku = ? WHERE id = (SELECT min(id) FROM order_items)",
        (data["users"][-1][5],),
    )  # a phone number copied into another table
    with pytest.raises(LeakFound) as e:
        verify.verify_sqlite(db, schema, VerifyReport())
    assert "users.phone found in order_items.sku" in str(e.value)
    db.close()
    # A free-text column left as it is still carries users' emails.
    keep_notes = rules_text("sqlite").replace('notes = "null"', 'notes = "keep"')
    with pytest.raises(
        LeakFound, match=r"users.email found in orders.notes \(email in text\)"
    ):
        sanitize_sqlite(staging(src, "stage2.db"), parse_rules(keep_notes))


def test_deterministic_per_salt(source: Any) -> None:
    src, _ = source
    outs = []
    for i, salt in enumerate(("a", "a", "b")):
        stg = staging(src, f"s{i}.db")
        sanitize_sqlite(stg, parse_rules(rules_text("sqlite", salt=salt)))
        db = sqlite3.connect(stg)
        outs.append(db.execute("SELECT * FROM users ORDER BY id").fetchall())
        db.close()
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_rules_that_cannot_hold_change_nothing(source: Any) -> None:
    src, _ = source
    stg = staging(src, "stage.db")
    before = hashlib.sha256(stg.read_bytes()).hexdigest()
    for old, bad, msg in (
        (
            "full_name",
            'full_name = "null"',
            "users.full_name (TEXT): strategy 'null' on a NOT NULL",
        ),
        (
            "email",
            'email = "name"',
            "users.email (varchar(60)): strategy 'name' would break the column's uniqueness",
        ),
        ("full_name", 'nickname = "hash"', "users.nickname: no such column"),
        (
            "balance",
            'balance = "email"',
            "strategy 'email' writes text; this column is numeric",
        ),
    ):
        text = re.sub(rf"^{old} = .*$", bad, rules_text("sqlite"), count=1, flags=re.M)
        assert bad in text
        with pytest.raises(
            RulesError, match=msg.replace("(", r"\(").replace(")", r"\)")
        ):
            sanitize_sqlite(stg, parse_rules(text), allow_unreviewed=True)
    # a FK masked on one side only fails the foreign key check, rolled back
    text = rules_text("sqlite") + '\n[tables.order_items.columns]\norder_id = "hash"\n'
    with pytest.raises(RulesError, match="foreign keys no longer hold"):
        sanitize_sqlite(stg, parse_rules(text))
    assert hashlib.sha256(stg.read_bytes()).hexdigest() == before
