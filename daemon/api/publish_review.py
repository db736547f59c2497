"""Publishing a pull request's schema review on GitHub (``[projects.publish] review``).

``review = "comment"``: one pull-request comment, found again by a hidden marker
(``<!-- branchdb-review:PROJECT/BRANCH -->``) and edited in place on every later
push, never duplicated. ``review = "check"``: a check run named
``branchdb schema review`` on the head commit (GitHub's Checks API: ``POST
/repos/{repo}/check-runs``, found again with ``GET
/repos/{repo}/commits/{sha}/check-runs?check_name=`` and updated with ``PATCH``, so
a redelivery edits it; a push is a new commit and gets its own), with one
annotation per lint finding on the migration file's lines (at most 50: GitHub's
limit per request). Its conclusion is ``success`` without findings, ``neutral``
with warnings, ``failure`` with errors.

A diff too long for a comment is summarised, with a link to the daemon's diff route
(``daemon_url``) for the rest. A review holds schema definitions, file names and
the linter's messages: never data, never a URL or credential.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from branchdb.daemon.core.errors import redact
from branchdb.daemon.review import render

if TYPE_CHECKING:
    from branchdb.daemon import wire
    from branchdb.daemon.api.publish import Publication, PublishSettings, _GitHub

log = logging.getLogger("branchdb.publish")
REVIEW_MODES = ("comment", "check")
CHECK_NAME = "branchdb schema review"


def marker(pub: Publication) -> str:
    return f"<!-- branchdb-review:{pub.project}/{pub.branch} -->"


def link(settings: PublishSettings, pub: Publication) -> str | None:
    """The daemon's diff route for this branch (a read token opens it), if known."""
    if not settings.daemon_url:
        return None
    branch = quote(pub.branch, safe="/")
    return (
        f"{settings.daemon_url}/v1/projects/{quote(pub.project, safe='')}"
        f"/branches/{branch}/diff?format=text"
    )


def _title(pub: Publication) -> str:
    return f"branchdb schema review of `{pub.branch}` at `{pub.sha[:12]}`"


def comment(gh: _GitHub, pub: Publication, review: wire.SchemaReview) -> dict[str, Any]:
    """Create or edit the review comment of *pub*'s pull request."""
    mark = marker(pub)
    text = render.markdown(review, link=link(gh.s, pub), title=_title(pub))
    body = {"body": f"{mark}\n{text}"}
    found = gh._find_comment(pub, mark)
    if found is not None:
        c = gh._call("PATCH", f"/repos/{pub.repo}/issues/comments/{found}", body)
        return {"comment": c["id"], "updated": True}
    c = gh._call("POST", f"/repos/{pub.repo}/issues/{pub.number}/comments", body)
    return {"comment": c["id"], "updated": False}


def conclusion(review: wire.SchemaReview) -> str:
    findings = review["lint"]["findings"] if review["lint"] else []
    if any(f["level"] == "error" for f in findings):
        return "failure"
    return "neutral" if findings else "success"


def check(gh: _GitHub, pub: Publication, review: wire.SchemaReview) -> dict[str, Any]:
    """Create, or update in place, the review check run on *pub*'s head commit."""
    out = render.check_output(review, link=link(gh.s, pub), title=_title(pub))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body: dict[str, Any] = {
        "name": CHECK_NAME,
        "head_sha": pub.sha,
        "status": "completed",
        "conclusion": conclusion(review),
        "completed_at": now,
        "external_id": f"{pub.project}/{pub.branch}",
        "output": out,
    }
    url = link(gh.s, pub)
    if url and url.startswith("https://"):
        body["details_url"] = url  # GitHub accepts only https here
    found = gh._call(
        "GET",
        f"/repos/{pub.repo}/commits/{pub.sha}/check-runs",
        params={"check_name": CHECK_NAME, "filter": "latest"},
    )
    runs = found.get("check_runs", []) if isinstance(found, dict) else []
    if runs:
        run_id = runs[0]["id"]
        del body["head_sha"]  # not updatable
        got = gh._call("PATCH", f"/repos/{pub.repo}/check-runs/{run_id}", body)
        return {"check_run": got["id"], "updated": True}
    got = gh._call("POST", f"/repos/{pub.repo}/check-runs", body)
    return {"check_run": got["id"], "updated": False}


def failed_review(detail: str) -> wire.SchemaReview:
    """A review that could not be computed: an empty diff whose lint says why."""
    return {
        "diff": {
            "dialect": "",
            "base": "the default branch",
            "head": "this branch",
            "changes": [],
            "sql": None,
            "ignored": [],
        },
        "lint": {
            "base": "the default branch",
            "head": "this branch",
            "linter": "none",
            "linted": [],
            "findings": [],
            "skipped": f"the review failed: {detail}",
        },
    }


def publish(gh: _GitHub, mode: str, pub: Publication) -> dict[str, Any]:
    """Publish *pub*'s review as *mode*; never raises (the outcome says)."""
    assert pub.review is not None
    if mode == "comment" and pub.number is None:
        return {"ok": False, "mode": mode, "error": "no pull request to comment on"}
    try:
        fn = comment if mode == "comment" else check
        return {"ok": True, "mode": mode, **fn(gh, pub, pub.review)}
    except Exception as e:
        msg = redact(str(e))
        log.warning(
            "publishing the review of %s/%s to GitHub failed: %s",
            pub.project,
            pub.branch,
            msg,
        )
        return {"ok": False, "mode": mode, "error": msg}
