"""The review's renderings: a comment too long for GitHub is summarised with a link;
check-run annotations stay within the Checks API's limits."""

from __future__ import annotations

from typing import Any

from branchdb.daemon.review import render


def _review(n_changes: int, n_findings: int) -> Any:
    return {
        "diff": {
            "dialect": "postgres",
            "base": "branch main",
            "head": "branch big",
            "changes": [
                {
                    "kind": "column",
                    "change": "added",
                    "name": f"public.t{i}.c",
                    "before": None,
                    "after": "text NULL",
                }
                for i in range(n_changes)
            ],
            "sql": "".join(
                f'alter table "t{i}" add column "c" text;\n' for i in range(n_changes)
            ),
            "ignored": [],
        },
        "lint": {
            "base": "branch main",
            "head": "branch big",
            "linter": "squawk",
            "linted": ["0002.sql"],
            "findings": [
                {
                    "path": "db/0002.sql",
                    "migration": "0002.sql",
                    "line": i + 1,
                    "end_line": i + 1,
                    "rule": "prefer-robust-stmts",
                    "level": "warning",
                    "message": "Missing `IF NOT EXISTS` | pipes escaped",
                    "help": None,
                }
                for i in range(n_findings)
            ],
            "skipped": None,
        },
    }


def test_small_review_is_shown_whole() -> None:
    body = render.markdown(_review(2, 1), link="https://d/x", title="T")
    assert "+ column public.t1.c: text NULL" in body and "```sql" in body
    assert "Missing `IF NOT EXISTS` \\| pipes escaped" in body
    assert "https://d/x" not in body  # no need for the link


def test_large_review_is_summarised_with_a_link() -> None:
    body = render.markdown(
        _review(3000, 400), link="https://d/diff?format=text", title="T"
    )
    assert len(body) < render.MAX_COMMENT
    assert "**3000 schema changes**" in body and "- column added: 3000" in body
    assert "`prefer-robust-stmts`" in body
    assert body.rstrip().endswith("https://d/diff?format=text")
    out = render.check_output(_review(3000, 400), link=None, title="T")
    assert len(out["annotations"]) == render.MAX_ANNOTATIONS
    assert len(out["summary"]) <= 65535
    assert out["title"] == "3000 schema changes, 400 lint findings"


def test_schema_text_cannot_escape_its_code_block() -> None:
    r = _review(1, 0)
    r["diff"]["changes"][0]["after"] = "text DEFAULT '```\n# pwned <img src=x>'"
    body = render.markdown(r, link=None, title="T")
    fence = body.split("against branch main:\n\n", 1)[1].split("diff\n", 1)[0]
    assert fence == "````"  # longer than the run of three inside
    assert body.count("\n````\n") >= 1
