"""``POST /v1/webhooks/github``: pull requests and pushes drive branch databases.

Order of checks, each before any work: the project, the body size, the
``X-Hub-Signature-256`` HMAC (401 and nothing done when it does not verify), then the
event. ``ping`` answers 200; events and actions branchdb does not act on answer 2xx and
are ignored, and so does a branch git could not name (``a..b``, ``-rf``): 202
``{"status": "ignored", "reason": "ignored: invalid branch name …"}``. A delivery id
seen before for the project (``X-GitHub-Delivery``) is answered 200 and not acted on
twice. What each event does:

- ``pull_request`` ``opened``/``reopened``/``synchronize``: create or migrate the head
  branch's database at ``pull_request.head.sha``, migrations read from the daemon's
  mirror; ``closed``: hand the branch to garbage collection (merged or not).
- ``push`` to a branch: migrate its database at ``after`` if it has one (a push never
  creates one); ``deleted: true``: hand the branch to garbage collection.
- ``delete`` of a branch (``ref_type: branch``): hand it to garbage collection.

A pull request whose head repository is not the base repository (a fork) is served only
with ``allow_forks``: then as branch ``pull/<N>``, its commit fetched from the base
repository's ``refs/pull/<N>/head``, so the fork's CI never holds a secret. GitLab's
merge request hooks are in :mod:`.webhooks_gitlab` (mounted on this router).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from branchdb.daemon.api.deps import BadRequest, DaemonDep, Unauthorized
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.api.webhooks import gitlab as webhooks_gitlab
from branchdb.daemon.api.webhooks.core import (
    FORKS_REFUSED,
    MAX_BODY,
    Action,
    accept,
    find_project,
    ignored,
    json_object,
    read_body,
)
from branchdb.daemon.gc.policy import DELETED_ON_REMOTE

__all__ = ["MAX_BODY", "plan", "router", "signature_ok"]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
PROVIDER = "github"
_ZERO = "0" * 40


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True if *header* is ``sha256=`` + HMAC-SHA256(secret, body), in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want.encode(), header.encode("latin-1"))


def _repo_name(payload: dict[str, Any]) -> str | None:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name if isinstance(name, str) else None


def _pull_request(payload: dict[str, Any], allow_forks: bool) -> Action | str:
    action = payload.get("action")
    pr = payload.get("pull_request")
    if not isinstance(pr, dict):
        raise BadRequest("pull_request event without a pull_request object")
    try:
        head, base, number = pr["head"], pr["base"], int(pr["number"])
        ref, sha = str(head["ref"]), str(head["sha"])
        base_repo = str(base["repo"]["full_name"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadRequest(f"pull_request payload lacks {e}") from None
    head_repo = (head.get("repo") or {}).get("full_name")
    reference = f"{base_repo}#{number}"
    if head_repo != base_repo:
        if not allow_forks:
            return f"{FORKS_REFUSED}: {reference} comes from a fork (allow_forks)"
        # A fork's branch name can be anything, "main" included: name it by number.
        # Its commit reaches the mirror through the base repository's refs/pull/N/head.
        ref = f"pull/{number}"
    if action in ("opened", "reopened", "synchronize"):
        return Action("up", ref, sha, False, reference, base_repo, number)
    if action == "closed":
        merged = bool(pr.get("merged"))
        return Action("closed", ref, sha, merged, reference, base_repo, number)
    return f"pull_request action {action!r} is not acted on"


def _push(payload: dict[str, Any]) -> Action | str:
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return f"push to {ref!r} is not a branch"
    branch = ref.removeprefix("refs/heads/")
    repo = _repo_name(payload)
    if payload.get("deleted"):
        return Action(
            "closed", branch, _ZERO, False, f"{DELETED_ON_REMOTE} in {repo}", repo
        )
    sha = payload.get("after")
    if not isinstance(sha, str) or sha == _ZERO:
        raise BadRequest("push payload lacks 'after'")
    return Action("migrate", branch, sha, False, "", repo)


def _delete(payload: dict[str, Any]) -> Action | str:
    if payload.get("ref_type") != "branch":
        return f"delete of a {payload.get('ref_type')!r} is not acted on"
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref:
        raise BadRequest("delete payload lacks 'ref'")
    repo = _repo_name(payload)
    return Action("closed", ref, _ZERO, False, f"{DELETED_ON_REMOTE} in {repo}", repo)


def plan(event: str, payload: dict[str, Any], allow_forks: bool) -> Action | str:
    """What to do for *event*: an Action, or the reason it is ignored."""
    if event == "pull_request":
        return _pull_request(payload, allow_forks)
    if event == "push":
        return _push(payload)
    if event == "delete":
        return _delete(payload)
    return f"event {event!r} is not acted on"


@router.post(
    "/github",
    status_code=202,
    responses={
        200: {"description": "ping, or a delivery already seen"},
        202: {"description": "Accepted (a job) or ignored"},
        **errors(400, 401, 404, 413),
    },
    summary="GitHub webhook (pull_request, push, delete); signed with the secret",
)
async def github(
    request: Request,
    daemon: DaemonDep,
    project: str | None = None,
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    proj = find_project(daemon, project)
    body = await read_body(request)
    secret = proj.settings.webhook_secret
    if not secret:
        raise Unauthorized(
            f"project {proj.name!r} has no webhook secret configured; refusing "
            "unsigned events"
        )
    if not signature_ok(secret, body, x_hub_signature_256):
        raise Unauthorized("X-Hub-Signature-256 is missing or does not match")
    if not x_github_event or not x_github_delivery:
        raise BadRequest("missing X-GitHub-Event or X-GitHub-Delivery header")
    if x_github_event == "ping":
        return JSONResponse({"status": "pong"}, status_code=200)
    payload = await json_object(body)
    act = plan(x_github_event, payload, proj.settings.allow_forks)
    if isinstance(act, str):
        return ignored(act)
    return await accept(daemon, proj, PROVIDER, x_github_delivery, x_github_event, act)


router.include_router(webhooks_gitlab.router)
