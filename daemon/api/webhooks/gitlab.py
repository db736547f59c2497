"""``POST /v1/webhooks/gitlab``: GitLab merge request hooks drive branch databases.

Checks, each before any work: the project (``?project=NAME``, optional when one is
served), the body size, ``X-Gitlab-Token`` compared in constant time with the project's
``gitlab_secret`` (401 and nothing done when it is missing or wrong), then the event.
Only ``Merge Request Hook`` is acted on; other events answer 2xx and are ignored, as
does a source branch git could not name (202, ``"ignored: invalid branch name …"``).
Idempotency: ``Idempotency-Key`` (the same across GitLab's retries), else
``X-Gitlab-Event-UUID``, else the body's sha256.

``object_attributes.action`` ``open``/``reopen``/``update`` create or migrate the source
branch's database at ``object_attributes.last_commit.id``; ``close``/``merge`` hand it
to garbage collection. A merge request from a fork (``source_project_id`` is not
``target_project_id``) is served only with ``allow_forks``, as branch ``mr/<iid>``, its
commit fetched from the target repository's ``refs/merge-requests/<iid>/head``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from branchdb.daemon.api.deps import BadRequest, DaemonDep, Unauthorized
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.api.webhooks.core import (
    FORKS_REFUSED,
    Action,
    accept,
    find_project,
    ignored,
    json_object,
    read_body,
)

router = APIRouter()
PROVIDER = "gitlab"
EVENT = "Merge Request Hook"


def token_ok(secret: str, header: str | None) -> bool:
    """True if *header* equals *secret*, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(secret.encode(), header.encode("latin-1"))


def plan(payload: dict[str, Any], allow_forks: bool) -> Action | str:
    """What a merge request hook asks for: an Action, or why it is ignored."""
    attrs = payload.get("object_attributes")
    if payload.get("object_kind") != "merge_request" or not isinstance(attrs, dict):
        raise BadRequest("merge request hook without object_attributes")
    try:
        iid = int(attrs["iid"])
        branch = str(attrs["source_branch"])
        source, target = attrs["source_project_id"], attrs["target_project_id"]
        sha = str((attrs.get("last_commit") or {})["id"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadRequest(f"merge request payload lacks {e}") from None
    project = payload.get("project") or {}
    reference = f"{project.get('path_with_namespace', '?')}!{iid}"
    if source != target:
        if not allow_forks:
            return f"{FORKS_REFUSED}: {reference} comes from a fork (allow_forks)"
        branch = f"mr/{iid}"  # fetched through refs/merge-requests/<iid>/head
    action = attrs.get("action")
    if action in ("open", "reopen", "update"):
        target_id = target if isinstance(target, int) else None
        return Action("up", branch, sha, False, reference, None, iid, target_id)
    if action in ("close", "merge"):
        return Action("closed", branch, sha, action == "merge", reference, None, iid)
    return f"merge request action {action!r} is not acted on"


@router.post(
    "/gitlab",
    status_code=202,
    responses={
        200: {"description": "a delivery already seen"},
        202: {"description": "Accepted (a job) or ignored"},
        **errors(400, 401, 404, 413),
    },
    summary="GitLab merge request hook; X-Gitlab-Token is the project's secret",
)
async def gitlab(
    request: Request,
    daemon: DaemonDep,
    project: str | None = None,
    x_gitlab_event: Annotated[str | None, Header()] = None,
    x_gitlab_token: Annotated[str | None, Header()] = None,
    x_gitlab_event_uuid: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    proj = find_project(daemon, project)
    body = await read_body(request)
    secret = proj.settings.gitlab_secret
    if not secret:
        raise Unauthorized(
            f"project {proj.name!r} has no gitlab_secret configured; refusing "
            "unauthenticated events"
        )
    if not token_ok(secret, x_gitlab_token):
        raise Unauthorized("X-Gitlab-Token is missing or does not match")
    if x_gitlab_event != EVENT:
        return ignored(f"event {x_gitlab_event!r} is not acted on")
    act = plan(await json_object(body), proj.settings.allow_forks)
    if isinstance(act, str):
        return ignored(act)
    delivery = (
        idempotency_key or x_gitlab_event_uuid or hashlib.sha256(body).hexdigest()
    )
    return await accept(daemon, proj, PROVIDER, delivery, EVENT, act)
