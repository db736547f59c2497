"""CHECK constraints of a SQLite table, read from its ``CREATE TABLE`` text.

SQLite has no pragma for CHECK constraints: they live only in the statement it
keeps in ``sqlite_schema.sql``. This reads them from that text with SQLite's own
lexical rules for what is not code — string literals (``'…'``), quoted
identifiers (``"…"``, `````…`````, ``[…]``) and comments (``--``, ``/* */``) —
so a comma or parenthesis inside one never splits a definition. Each top-level
definition of the table is a column (its CHECKs belong to that column) or a
table constraint; a ``CONSTRAINT name`` before a CHECK names it.
"""

from __future__ import annotations

import re

_CHECK = re.compile(r"\bCHECK\s*\(", re.IGNORECASE)
#: A name in the masked text: a quoted one is its quotes around blanks.
_NAME = r"(\"[^\"]*\"|`[^`]*`|\[[^\]]*\]|[^\s(,]+)"
_NAMED = re.compile(r"\bCONSTRAINT\s+" + _NAME + r"\s*$", re.IGNORECASE)
_LEAD = re.compile(r"\s*" + _NAME)
_TABLE_CONSTRAINT = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


def _masked(text: str) -> str:
    """*text* with the insides of literals, quoted names and comments blanked
    (same length: positions in it are positions in *text*)."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`[":
            close, j = ("]" if c == "[" else c), i + 1
            while j < n:
                if text[j] == close:
                    if close != "]" and text[j + 1 : j + 2] == close:
                        j += 2  # a doubled quote is one quote character
                        continue
                    break
                j += 1
            start, end = i + 1, min(j, n)
            i = j + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            start, end = i, n if end < 0 else end
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            start, end = i, n if end < 0 else end + 2
            i = end
        else:
            i += 1
            continue
        out[start:end] = " " * (end - start)
    return "".join(out)


def _close(masked: str, open_at: int) -> int:
    """The index of the parenthesis closing the one at *open_at* (or the end)."""
    depth = 0
    for i in range(open_at, len(masked)):
        if masked[i] == "(":
            depth += 1
        elif masked[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(masked)


def _definitions(masked: str, body: tuple[int, int]) -> list[tuple[int, int]]:
    """Spans of the comma-separated top-level definitions in the span *body*."""
    spans, depth, start = [], 0, body[0]
    for i in range(body[0], body[1]):
        c = masked[i]
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            spans.append((start, i))
            start = i + 1
    spans.append((start, body[1]))
    return spans


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _unquote(name: str) -> str:
    if name[:1] in '"`[' and len(name) >= 2:
        return (
            name[1:-1].replace(name[0] * 2, name[0]) if name[0] != "[" else name[1:-1]
        )
    return name


def checks(table_sql: str) -> dict[str, str]:
    """The CHECK constraints of *table_sql*: key -> text.

    The key is ``CONSTRAINT name`` for a named one; else the column it is written
    on (if any) and its expression, so an unnamed check whose expression changes
    shows as one removed and one added. The expression is as written, its white
    space normalised.
    """
    masked = _masked(table_sql)
    first = masked.find("(")
    if first < 0:  # CREATE TABLE … AS SELECT: no definitions to hold a CHECK
        return {}
    out: dict[str, str] = {}
    for start, end in _definitions(masked, (first + 1, _close(masked, first))):
        seg = masked[start:end]
        lead = _LEAD.match(seg)
        if lead is None:
            continue
        word = table_sql[start + lead.start(1) : start + lead.end(1)]
        column = None if word.upper() in _TABLE_CONSTRAINT else _unquote(word)
        for m in _CHECK.finditer(seg):
            open_at = start + m.end() - 1
            expr = _norm(table_sql[open_at + 1 : _close(masked, open_at)])
            named = _NAMED.search(seg[: m.start()])
            if named is not None:
                name = _unquote(
                    table_sql[start + named.start(1) : start + named.end(1)]
                )
                out[f"CONSTRAINT {name}"] = f"CONSTRAINT {name} CHECK ({expr})"
            elif column is not None:
                out[f"{column}: ({expr})"] = f"CHECK ({expr}) on column {column}"
            else:
                out[f"({expr})"] = f"CHECK ({expr})"
    return out
