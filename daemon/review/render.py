"""A review (:data:`~branchdb.daemon.wire.SchemaReview`) as text, as a pull-request
comment (Markdown) and as a GitHub check run's output with annotations.

Everything here works on the JSON shape, so the CLI prints the same text in
embedded and remote mode. Nothing in a review is data or a credential: schema
definitions, file names, line numbers and the linter's messages only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from branchdb.daemon import wire

_SIGN = {"added": "+", "removed": "-", "changed": "~"}
#: GitHub's limits: a comment body 65,536 characters, a check run's summary and
#: text 65,535, 50 annotations per request.
MAX_COMMENT = 60_000
MAX_ANNOTATIONS = 50


def change_line(c: wire.SchemaChange) -> str:
    if c["change"] == "changed":
        what = f"{c['before']} -> {c['after']}"
    else:
        what = str(c["after"] if c["change"] == "added" else c["before"])
    return f"{_SIGN.get(c['change'], '?')} {c['kind']} {c['name']}: {what}"


def diff_text(d: wire.SchemaDiff) -> str:
    head = f"schema diff {d['base']} -> {d['head']} ({d['dialect']})"
    if not d["changes"]:
        return f"{head}: no differences\n"
    n = len(d["changes"])
    lines = [f"{head}: {n} change{'s' if n != 1 else ''}"]
    lines += [change_line(c) for c in d["changes"]]
    lines += [f"  (not compared: {why})" for why in d["ignored"]]
    return "\n".join(lines) + "\n"


def finding_line(f: wire.LintFinding) -> str:
    return f"{f['path']}:{f['line']}: {f['rule']}: {f['message']}"


def lint_text(r: wire.SchemaLint | None) -> str:
    if r is None:
        return ""
    if r["skipped"]:
        return f"lint: skipped: {r['skipped']}\n"
    if not r["linted"]:
        return f"lint: no migrations beyond {r['base']}\n"
    n = len(r["findings"])
    head = (
        f"lint ({r['linter']}) of {len(r['linted'])} migration"
        f"{'s' if len(r['linted']) != 1 else ''} beyond {r['base']}: "
        f"{n} finding{'s' if n != 1 else ''}"
    )
    return "\n".join([head, *(finding_line(f) for f in r["findings"])]) + "\n"


def text(r: wire.SchemaReview) -> str:
    """The review as ``branchdb diff`` prints it."""
    out = diff_text(r["diff"])
    lint = lint_text(r["lint"])
    return out + ("\n" + lint if lint else "")


def rules(r: wire.SchemaReview) -> list[str]:
    """The lint rules that fired, in order of first appearance."""
    seen: dict[str, None] = {}
    for f in r["lint"]["findings"] if r["lint"] else []:
        seen.setdefault(f["rule"], None)
    return list(seen)


def markdown(r: wire.SchemaReview, *, link: str | None, title: str) -> str:
    """A pull-request comment: the changes, the SQL and the findings; when that
    is too long, a summary and *link* (the daemon's diff route) for the rest."""
    d, lint = r["diff"], r["lint"]
    n = len(d["changes"])
    lines = [change_line(c) for c in d["changes"]]
    # A fence longer than any backtick run inside: schema text (a default, a
    # function body) can never close it and turn into Markdown.
    fence = _fence("\n".join([*lines, d["sql"] or ""]))
    parts = [f"### {title}", ""]
    if not n:
        parts.append(f"No schema changes against {d['base']}.")
    else:
        parts += [
            f"**{n} schema change{'s' if n != 1 else ''}** against {d['base']}:",
            "",
            f"{fence}diff",
            *lines,
            fence,
        ]
        if d["sql"]:
            parts += [
                "",
                "<details><summary>SQL</summary>",
                "",
                f"{fence}sql",
                d["sql"].rstrip(),
                fence,
                "</details>",
            ]
    if lint is not None:
        parts.append("")
        if lint["skipped"]:
            parts.append(f"Lint skipped: {lint['skipped']}")
        elif not lint["findings"]:
            parts.append(
                f"**Lint** ({lint['linter']}): no findings in "
                f"{len(lint['linted'])} migration(s)."
            )
        else:
            parts += [
                f"**Lint** ({lint['linter']}): {len(lint['findings'])} finding(s)",
                "",
                "| File | Line | Rule | Message |",
                "|---|---|---|---|",
                *(
                    f"| `{f['path']}` | {f['line']} | `{f['rule']}` | "
                    f"{_cell(f['message'])} |"
                    for f in lint["findings"]
                ),
            ]
    body = "\n".join(parts) + "\n"
    if len(body) <= MAX_COMMENT:
        return body
    kinds: dict[str, int] = {}
    for c in d["changes"]:
        key = f"{c['kind']} {c['change']}"
        kinds[key] = kinds.get(key, 0) + 1
    short = [
        f"### {title}",
        "",
        f"**{n} schema changes** against {d['base']} (too long to show here):",
        "",
        *(f"- {k}: {v}" for k, v in sorted(kinds.items())),
        "",
        f"Lint rules that fired: {', '.join(f'`{x}`' for x in rules(r)) or 'none'}",
    ]
    if link:
        short += ["", f"The full diff, SQL and lint: {link}"]
    return "\n".join(short) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _fence(text: str) -> str:
    runs = [len(m) for m in re.findall(r"`+", text)]
    return "`" * max(3, max(runs, default=0) + 1)


def check_output(
    r: wire.SchemaReview, *, link: str | None, title: str
) -> dict[str, Any]:
    """A check run's ``output`` (title, summary, text, annotations)."""
    findings = r["lint"]["findings"] if r["lint"] else []
    annotations = [
        {
            "path": f["path"],
            "start_line": f["line"],
            "end_line": max(f["end_line"], f["line"]),
            "annotation_level": "failure" if f["level"] == "error" else "warning",
            "title": f["rule"],
            "message": f["message"][:1000],
            **({"raw_details": f["help"][:1000]} if f["help"] else {}),
        }
        for f in findings
    ][:MAX_ANNOTATIONS]
    n = len(r["diff"]["changes"])
    found = len(findings)
    return {
        "title": f"{n} schema change{'s' if n != 1 else ''}, "
        f"{found} lint finding{'s' if found != 1 else ''}",
        "summary": markdown(r, link=link, title=title)[:65_000],
        "annotations": annotations,
    }
