"""Publishing a pull request's schema review on GitHub (``[projects.publish] review``).

``review = "comment"``: one pull-request comment, found again by a hidden marker
(``<!-- branchdb-review:PROJECT/BRANCH -->``) and edited in place on every later
push, never duplicated. ``review = "check"``: a check run named
``branchdb schema review`` on the head commit (GitHub's Checks API: ``POST
/repos/{repo}/check-runs``, found again with ``GET
/repos/{repo}/commits/{sha}/check-runs?check_name=`` and updated with ``PATCH``, so
a redelivery edits it; a push is a new commit and gets its own: a check run belongs
to a commit), with one annotation per lint finding on the migration file's lines (at
most 50: GitHub's limit per request; GitHub appends annotations on every update, so
an update of a run that has them sends none). Its conclusion is ``success``
without findings, ``neutral`` with warnings, ``failure`` with errors.

GitLab merge requests get one note (``POST
/projects/:id/merge_requests/:iid/notes``, found again by the same marker and
edited with ``PUT``), whatever the mode: GitLab has no check runs with annotations.

A diff too long for a comment is summarised, with a link to the daemon's diff route
(``daemon_url``) for the rest. A review holds schema definitions, file names and
the linter's messages: never data, never a URL or credential.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from branchdb.daemon.config import env
from branchdb.daemon.core.errors import ConfigError, redact
from branchdb.daemon.review import render

if TYPE_CHECKING:
    import httpx

    from branchdb.daemon import wire
    from branchdb.daemon.api.publish import Publication, PublishSettings, _GitHub

log = logging.getLogger("branchdb.publish")
REVIEW_MODES = ("comment", "check")
CHECK_NAME = "branchdb schema review"


def env_name(project: str, what: str) -> str:
    """``BRANCHDB_<WHAT>_<PROJECT>``: a project's own variable for a secret."""
    return f"BRANCHDB_{what}_" + re.sub(r"[^A-Za-z0-9]", "_", project).upper()


def parse(
    raw: dict[str, Any],
    where: str,
    github_env: str,
    github_token: str | None,
    project: str,
) -> tuple[str | None, str | None]:
    """``review`` and the GitLab token of ``[projects.publish]`` (the GitLab token
    from ``gitlab_token_env``, default ``BRANCHDB_GITLAB_TOKEN_<PROJECT>``, then
    ``BRANCHDB_GITLAB_TOKEN``). Raises ConfigError."""
    review = raw.get("review")
    if review is not None and review not in REVIEW_MODES:
        raise ConfigError(
            f"{where}: projects.publish.review must be one of {', '.join(REVIEW_MODES)}"
        )
    gl_env = raw.get("gitlab_token_env") or env_name(project, "GITLAB_TOKEN")
    gl_token = env.get(gl_env)
    if gl_token is None and "gitlab_token_env" not in raw:
        gl_token = env.get("BRANCHDB_GITLAB_TOKEN")
    if raw.get("gitlab_api_url") and not gl_token:
        raise ConfigError(
            f"{where}: projects.publish.gitlab_api_url needs a token in ${gl_env}"
        )
    if review and not (github_token or raw.get("gitlab_api_url")):
        raise ConfigError(
            f"{where}: projects.publish.review needs a GitHub token in ${github_env} "
            "or gitlab_api_url and its token"
        )
    return review, gl_token if raw.get("gitlab_api_url") else None


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
        if (runs[0].get("output") or {}).get("annotations_count"):
            # GitHub appends the annotations of every update: the same commit's
            # are there already (only the summary and conclusion are refreshed).
            body["output"] = {k: v for k, v in out.items() if k != "annotations"}
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


def gitlab_note(
    client: httpx.Client, settings: PublishSettings, pub: Publication
) -> dict[str, Any]:
    """Create or edit the review note of *pub*'s merge request; never raises."""
    assert pub.review is not None and settings.gitlab_api_url
    base = (
        f"{settings.gitlab_api_url}/projects/{pub.gitlab_project}"
        f"/merge_requests/{pub.number}/notes"
    )
    headers = {"PRIVATE-TOKEN": settings.gitlab_token or "", "User-Agent": "branchdb"}
    mark = marker(pub)
    text = render.markdown(pub.review, link=link(settings, pub), title=_title(pub))
    body = {"body": f"{mark}\n{text}"}

    def call(method: str, url: str, **kw: Any) -> Any:
        r = client.request(method, url, headers=headers, **kw)
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {url}: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    try:
        found = None
        for page in range(1, 51):  # 5,000 notes: enough for any merge request
            got = call("GET", base, params={"per_page": 100, "page": page})
            found = next(
                (n["id"] for n in got if str(n.get("body", "")).startswith(mark)), None
            )
            if found is not None or len(got) < 100:
                break
        if found is not None:
            note = call("PUT", f"{base}/{found}", json=body)
            return {"ok": True, "mode": "note", "note": note["id"], "updated": True}
        note = call("POST", base, json=body)
        return {"ok": True, "mode": "note", "note": note["id"], "updated": False}
    except Exception as e:
        msg = redact(str(e))
        log.warning("publishing the review of %s to GitLab failed: %s", pub.branch, msg)
        return {"ok": False, "mode": "note", "error": msg}
