"""Texts inside structured values: JSON paths, leaves, decoded bytes, hstore, XML.

Pure Python, shared by the detector (which reads sampled values), the rules (which
validate ``paths``) and the SQLite masking and verifier (registered functions).

A JSON path is the subset of SQL/JSON path both dialects can follow: ``$`` then
``.key``, ``."any key"``, ``[*]`` (every element) or ``[3]`` (one element), e.g.
``$.contacts[*].email``. :func:`jsonpath` renders it for PostgreSQL's
``jsonb_path_query``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

#: A parsed path segment: a key (str), an index (int), or STAR.
STAR = "*"
Segment = str | int

_SEGMENT = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\."((?:[^"\\]|\\.)*)"|\[(\*|\d+)\]')
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PathError(ValueError):
    """A JSON path outside the supported subset."""


def parse_path(path: str) -> tuple[Segment, ...]:
    """The segments of *path*; PathError if it is not ``$`` followed by segments.

    A key is a str, an index an int, ``[*]`` is :data:`STAR` (``("*",)`` never
    means a key named ``*``: such a key is written ``."*"`` and kept as ``'"*"'``).
    """
    if not path.startswith("$"):
        raise PathError(f"a JSON path starts with $: {path!r}")
    out: list[Segment] = []
    at = 1
    while at < len(path):
        m = _SEGMENT.match(path, at)
        if not m:
            raise PathError(
                f'cannot read {path!r} at {path[at:]!r}: use .key, ."key", [*] or [N]'
            )
        bare, quoted, index = m.groups()
        if bare is not None:
            out.append(bare)
        elif quoted is not None:
            key = re.sub(r"\\(.)", r"\1", quoted)
            out.append(f'"{key}"' if key == STAR else key)
        else:
            out.append(STAR if index == STAR else int(index))
        at = m.end()
    return tuple(out)


def _key(seg: str) -> str:
    return STAR if seg == f'"{STAR}"' else seg


def render(segments: tuple[Segment, ...] | list[Segment]) -> str:
    """The path of *segments*, written as :func:`parse_path` reads it."""
    out = "$"
    for s in segments:
        if s == STAR:
            out += "[*]"
        elif isinstance(s, int):
            out += f"[{s}]"
        elif _BARE.fullmatch(s):
            out += f".{s}"
        else:
            out += '."' + _key(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


def jsonpath(segments: tuple[Segment, ...]) -> str:
    """*segments* as a PostgreSQL jsonpath (every key quoted)."""
    out = "$"
    for s in segments:
        if s == STAR:
            out += "[*]"
        elif isinstance(s, int):
            out += f"[{s}]"
        else:
            out += '."' + _key(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


def leaves(
    doc: Any, at: tuple[Segment, ...] = (), strings: bool = False
) -> Iterator[tuple[str, str, str]]:
    """(path, kind, text) of every key ("key", with the path of its value) and
    scalar ("value") in *doc*. Array elements share the path ``…[*]``; JSON null
    is skipped, and with *strings* every scalar but strings."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            key = str(k)
            under = (*at, f'"{STAR}"' if key == STAR else key)
            yield render(under), "key", key
            yield from leaves(v, under, strings)
    elif isinstance(doc, list):
        for v in doc:
            yield from leaves(v, (*at, STAR), strings)
    elif doc is not None and (isinstance(doc, str) or not strings):
        yield render(at), "value", text_of(doc)


def text_of(v: Any) -> str:
    """A JSON scalar as PostgreSQL's ``#>> '{}'`` shows it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    return json.dumps(v)


def decode(b: bytes) -> str | None:
    """*b* as UTF-8 text (a cut last character forgiven), or None."""
    for cut in range(4):
        try:
            return (b[: len(b) - cut] if cut else b).decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def as_json(text: str) -> Any:
    """*text* parsed when it is a JSON object or array, else None."""
    t = text.lstrip()
    if not t.startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*=>\s*(?:"((?:[^"\\]|\\.)*)"|NULL)')


def hstore(text: str) -> dict[str, str | None]:
    """An hstore's text form (``"k"=>"v", …``) as a dict."""

    def unq(s: str) -> str:
        return re.sub(r"\\(.)", r"\1", s)

    # (finditer, not findall: an unquoted NULL leaves the second group None)
    return {
        unq(m.group(1)): None if m.group(2) is None else unq(m.group(2))
        for m in _HSTORE.finditer(text)
    }


def xml_texts(text: str) -> list[str]:
    """The text nodes and attribute values of an XML value, unescaped."""
    out = [html.unescape(m) for m in re.findall(r'=\s*"([^"]*)"', text)]
    out += [html.unescape(m) for m in re.findall(r"='([^']*)'", text)]
    out += [html.unescape(t).strip() for t in re.split(r"<[^>]*>", text)]
    return [t for t in out if t]


#: fake(strategy, part, text, value) → the JSON value that replaces a leaf.
Faker = Callable[[str, str, str, Any], Any]


def mask_json(
    doc: Any, paths: list[tuple[tuple[Segment, ...], str, str, Any]], fake: Faker
) -> Any:
    """*doc* with the value at each path replaced by ``fake(strategy, part, text,
    value)`` (a JSON null stays null); every other key and element untouched."""
    for segments, strategy, part, value in paths:
        doc = _mask(doc, segments, strategy, part, value, fake)
    return doc


def _mask(
    doc: Any,
    segs: tuple[Segment, ...],
    strategy: str,
    part: str,
    value: Any,
    fake: Faker,
) -> Any:
    if not segs:
        if doc is None or strategy == "keep":
            return doc
        nested = isinstance(doc, dict | list)
        text = json.dumps(doc, separators=(", ", ": ")) if nested else text_of(doc)
        return fake(strategy, part, text, value)
    head, rest = segs[0], segs[1:]
    if isinstance(head, int) or head == STAR:
        if not isinstance(doc, list):
            return doc
        return [
            _mask(v, rest, strategy, part, value, fake) if head in (STAR, i) else v
            for i, v in enumerate(doc)
        ]
    key = _key(head)
    if not isinstance(doc, dict) or key not in doc:
        return doc
    return {
        k: _mask(v, rest, strategy, part, value, fake) if k == key else v
        for k, v in doc.items()
    }


def at_paths(doc: Any, paths: list[tuple[Segment, ...]]) -> list[str]:
    """The texts of every scalar at or under each path of *doc* (the originals a
    JSON rule replaces)."""
    out: list[str] = []
    for segs in paths:
        for node in _follow(doc, segs):
            out += [t for _p, kind, t in leaves(node, strings=True) if kind == "value"]
    return out


def _follow(doc: Any, segs: tuple[Segment, ...]) -> Iterator[Any]:
    if not segs:
        yield doc
        return
    head, rest = segs[0], segs[1:]
    if isinstance(doc, list) and (head == STAR or isinstance(head, int)):
        for i, v in enumerate(doc):
            if head in (STAR, i):
                yield from _follow(v, rest)
    elif isinstance(doc, dict) and isinstance(head, str) and _key(head) in doc:
        yield from _follow(doc[_key(head)], rest)
