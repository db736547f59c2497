"""What the detector finds in a column's sampled values, and the rule it suggests.

Values arrive as the dialects sample them (:mod:`pg.introspect`,
:mod:`sqlite.introspect`): text, bytes (decoded here when they are UTF-8), parsed JSON
(json/jsonb, arrays and composites through ``to_jsonb``), hstore and XML text. Every
text inside is judged: JSON keys and the scalars at each path (``$.a[*].b``), array
elements, decoded bytes, XML text and attributes. A suggestion is always a rule the
column's type accepts (tests/test_sanitize_types.py pastes and runs each one): inside
JSON a ``json`` rule by path, an array element by element, otherwise a hash, or NULL /
an empty value of the type when nothing narrower keeps it valid.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from typing import Any

from branchdb.daemon.sanitize import people, values
from branchdb.daemon.sanitize.classify import classify_name, classify_values
from branchdb.daemon.sanitize.schema import Column, q

#: A JSON column flagged at more paths than this is suggested whole (null/empty).
MAX_PATHS = 24
#: An empty value of each kind, for a NOT NULL column masked whole.
_EMPTY = {"text": "", "json": "{}", "array": "{}", "hstore": "", "xml": "",
          "bytes": ""}  # fmt: skip
_HASHABLE = {"text", "int", "numeric", "uuid", "inet", "bytes"}
_LEAF = {"email": "email", "phone": "phone", "name": "name"}
_PART = {"first": ("name", "first"), "last": ("name", "last"),
         "street": ("address", "street"), "city": ("address", "city"),
         "zip": ("address", "zip")}  # fmt: skip


@dataclass(frozen=True)
class Flag:
    category: str
    reason: str
    suggestion: dict[str, Any]


def many(hits: int, n: int) -> bool:
    """Enough sampled values name people: at least one, and a fifth of them."""
    return hits >= 1 and hits * 5 >= n


def element(col: Column) -> Column:
    """An array column's element, as a column of its own."""
    return replace(col, kind=col.elem, type=col.elem_type, unique=False, elem="")


def _split(col: Column, raw: list[Any]) -> tuple[list[str], list[Any]]:
    """(texts, JSON documents) inside the sampled values *raw* of *col* (JSON,
    arrays and composites arrive as JSON text, bytes as bytes)."""
    texts: list[str] = []
    docs: list[Any] = []
    kind = col.elem if col.kind == "array" else col.kind
    items: list[Any] = []
    for v in raw:
        if isinstance(v, str) and (
            col.kind in ("array", "composite") or kind == "json"
        ):
            try:
                v = json.loads(v)
            except ValueError:  # cut, or not JSON after all: judged as text
                texts.append(v)
                continue
        if col.kind == "array" and isinstance(v, list):
            items += v
        elif v is not None:
            items.append(v)
    for v in items:
        t: str | None = None
        if isinstance(v, bytes | bytearray | memoryview):
            t = values.decode(bytes(v))
        elif kind == "bytes" and isinstance(v, str) and v.startswith("\\x"):
            with contextlib.suppress(ValueError):  # bytea[] through to_jsonb: hex
                t = values.decode(bytes.fromhex(v[2:]))
        elif kind in ("json", "composite") or isinstance(v, dict | list):
            docs.append(v)
        elif kind == "hstore" and isinstance(v, str):
            docs.append(values.hstore(v))
        elif kind == "xml" and isinstance(v, str):
            texts += values.xml_texts(v)
        elif isinstance(v, str):
            doc = values.as_json(v)
            if doc is not None:
                docs.append(doc)
            else:
                t = v
        if t is not None and t.strip():
            texts.append(t)
    return texts, docs


def judge(texts: list[str], known: frozenset[str]) -> tuple[str, str] | None:
    """(category, reason) for a list of texts: a shape most of them have, emails
    inside them, or people's names inside them."""
    got = classify_values(texts)
    if got and got[0] != "text":
        return got
    hits = people.count(texts, known)
    if many(hits, len(texts)):
        return "person", f"values: {hits} of {len(texts)} name people"
    return got


def analyse(
    table: str, col: Column, raw: list[Any], known: frozenset[str], dialect: str
) -> Flag | None:
    """The flag for *col* from its sampled values *raw* (None: nothing personal)."""
    texts, docs = _split(col, raw)
    found = judge(texts, known) if texts else None
    paths: dict[str, str] = {}
    reasons: list[str] = []
    keyed = None
    if docs:
        by_path: dict[str, list[str]] = {}
        keys: list[str] = []
        named: dict[str, str] = {}
        for d in docs:
            for path, kind, t in values.leaves(d):
                if kind == "key":
                    keys.append(t)
                    if cat := classify_name(table, t):
                        named.setdefault(path, cat)
                else:
                    by_path.setdefault(path, []).append(t)
        for path, texts_at in by_path.items():
            # a key named like a category (phone_verified) holding only booleans
            # is not that category
            flags = path in named and not set(texts_at) <= {"true", "false"}
            got = (named[path], "key name") if flags else judge(texts_at, known)
            if got:
                paths[path] = got[0]
                reasons.append(f"{path}: {got[1]}")
        keyed = judge(keys, frozenset()) if keys else None
    if not (found or paths or keyed):
        return None
    category = (found or keyed or (next(iter(paths.values())), ""))[0]
    reason = "; ".join(
        ([f"{found[1]}"] if found else [])
        + ([f"JSON keys: {keyed[1]}"] if keyed else [])
        + reasons[:3]
        + ([f"… ({len(reasons)} paths)"] if len(reasons) > 3 else [])
    )
    whole_json = docs and not texts and not keyed and len(paths) <= MAX_PATHS
    kind = col.elem if col.kind == "array" else col.kind
    if whole_json and (kind == "json" or (dialect == "sqlite" and kind == "text")):
        return Flag(category, reason, {"strategy": "json", "paths": {
            p: leaf(c) for p, c in sorted(paths.items())
        }})  # fmt: skip
    if docs and kind == "text":  # JSON in a text column (PostgreSQL): whole values
        return Flag(category, reason, blank(col))
    return Flag(category, reason, suggest(category, col, dialect))


def leaf(category: str) -> str | dict[str, str]:
    """The strategy a ``json`` rule applies at a path whose values are *category*."""
    if category in _LEAF:
        return _LEAF[category]
    if category in _PART:
        strategy, part = _PART[category]
        return {"strategy": strategy, "part": part}
    return "hash"


def blank(col: Column) -> dict[str, Any]:
    """Mask a whole value: NULL, or an empty value of a NOT NULL column's type."""
    if not col.not_null:
        return {"strategy": "null"}
    if col.unique and col.kind in _HASHABLE:
        return {"strategy": "hash"}
    if col.kind == "composite":
        return {"strategy": "fixed", "value": "(" + "," * max(col.fields - 1, 0) + ")"}
    return {"strategy": "fixed", "value": _EMPTY.get(col.kind, "")}


def suggest(category: str, col: Column, dialect: str) -> dict[str, Any]:
    """A rule that masks *category* while keeping *col*'s type and constraints."""
    if col.kind == "array" and col.elem in ("text", "bytes", "json"):
        if col.elem == "json":
            return blank(col)
        inner = suggest(category, element(col), dialect)
        # an element cannot be NULLed or emptied on its own: hash it instead
        kept = ("email", "name", "phone", "address", "hash")
        return inner if inner["strategy"] in kept else {"strategy": "hash"}
    if col.kind in ("bytes",):
        return {"strategy": "hash"}
    if col.kind in ("date", "timestamp"):
        return {"strategy": "noise", "days": 180}
    if col.kind != "text":
        return {"strategy": "hash"} if col.kind in _HASHABLE else blank(col)
    if category == "text":
        if dialect == "postgres":
            expr = (
                f"regexp_replace({_ident(col.name)}, '[^[:space:]@]+@[^[:space:]@]+', "
                "'redacted@example.com', 'g')"
            )
            if col.max_len:  # the replacement may be longer than the address
                expr = f"left({expr}, {col.max_len})"
            return {"strategy": "sql", "expr": expr}
        return blank(col)
    if category == "person":
        return blank(col)
    if col.unique and category in ("first", "last", "name", "phone"):
        return {"strategy": "hash"}
    if category in _LEAF:
        return {"strategy": _LEAF[category]}
    if category in _PART:
        strategy, part = _PART[category]
        return {"strategy": strategy, "part": part}
    return {"strategy": "hash"}  # ip, id, secret, financial, birth as text


def _ident(name: str) -> str:
    import re

    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else q(name)
