"""``POST /v1/webhooks/github``: pull requests drive their head branch's database.

Order of checks, each before any work: the project, the body size, the
``X-Hub-Signature-256`` HMAC (401 and nothing done when it does not verify), then the
event. ``ping`` and events branchdb does not act on answer 2xx and are ignored. A
delivery id seen before (``X-GitHub-Delivery``) is answered 200 and not acted on
twice. ``opened``/``reopened``/``synchronize`` run ``Engine.up`` in the background with
the migrations read from the daemon's mirror at ``pull_request.head.sha``; ``closed``
records the branch for garbage collection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import git_tree, views
from branchdb.daemon.api.deps import (
    BadRequest,
    DaemonDep,
    PayloadTooLarge,
    ProjectRuntime,
    Unauthorized,
)
from branchdb.daemon.api.schemas import errors
from branchdb.daemon.audit import acting
from branchdb.daemon.errors import BranchdbError, ConfigError, redact

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

#: GitHub caps webhook payloads at 25 MB.
MAX_BODY = 25 * 1024 * 1024
PROVIDER = "github"


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """True if *header* is ``sha256=`` + HMAC-SHA256(secret, body), in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want.encode(), header.encode("latin-1"))


class Action(NamedTuple):
    verb: str  # "up" | "closed"
    branch: str
    sha: str
    merged: bool
    reference: str  # e.g. "acme/shop#12"


def plan(event: str, payload: dict[str, Any], allow_forks: bool) -> Action | str:
    """What to do for *event*: an Action, or the reason it is ignored."""
    if event != "pull_request":
        return f"event {event!r} is not acted on"
    action = payload.get("action")
    pr = payload.get("pull_request")
    if not isinstance(pr, dict):
        raise BadRequest("pull_request event without a pull_request object")
    try:
        head, base, number = pr["head"], pr["base"], int(pr["number"])
        ref, sha = str(head["ref"]), str(head["sha"])
        base_repo = base["repo"]["full_name"]
    except (KeyError, TypeError, ValueError) as e:
        raise BadRequest(f"pull_request payload lacks {e}") from None
    head_repo = (head.get("repo") or {}).get("full_name")
    reference = f"{base_repo}#{number}"
    if head_repo != base_repo:
        if not allow_forks:
            return f"{reference} comes from a fork; set allow_forks = true to serve it"
        # A fork's branch name can be anything, "main" included: name it by number.
        ref = f"pull/{number}"
    if action in ("opened", "reopened", "synchronize"):
        return Action("up", ref, sha, False, reference)
    if action == "closed":
        return Action("closed", ref, sha, bool(pr.get("merged")), reference)
    return f"pull_request action {action!r} is not acted on"


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"webhook body over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"webhook body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _work(
    daemon: DaemonDep, project: ProjectRuntime, act: Action, delivery: str
) -> Any:
    def work() -> tuple[int, dict[str, Any]]:
        try:
            engine = project.engine()
            if act.verb == "closed":
                engine.pull_request_closed(
                    act.branch, merged=act.merged, reference=act.reference
                )
                body: dict[str, Any] = {"branch": act.branch, "closed": True}
                code = 200
            else:
                if project.mirror is None:
                    raise ConfigError(
                        f"project {project.name!r} has no repository to fetch; set "
                        "repository in the daemon config"
                    )
                files = git_tree.migrations_at(
                    project.settings.config,
                    project.mirror,
                    act.sha,
                    project.settings.subdir,
                )
                engine.pull_request_opened(act.branch)
                why = f"pull_request {act.reference} at {act.sha[:12]}"
                with acting(f"{PROVIDER}:{delivery}", why):
                    res = engine.up(act.branch, files=files, lock_timeout=300)
                body, code = views.up_dict(res), 201 if res.created else 200
        except BranchdbError as e:
            daemon.store().finish_delivery(PROVIDER, delivery, "failed", redact(str(e)))
            raise
        except Exception as e:
            daemon.store().finish_delivery(PROVIDER, delivery, "failed", repr(e))
            raise
        daemon.store().finish_delivery(PROVIDER, delivery, "done")
        return code, body

    return work


@router.post(
    "/github",
    status_code=202,
    responses={
        200: {"description": "ping, or a delivery already seen"},
        202: {"description": "Accepted (a job) or ignored"},
        **errors(400, 401, 404, 413),
    },
    summary="GitHub webhook (pull_request); signed with the project's secret",
)
async def github(
    request: Request,
    daemon: DaemonDep,
    project: str | None = None,
    x_github_event: Annotated[str | None, Header()] = None,
    x_github_delivery: Annotated[str | None, Header()] = None,
    x_hub_signature_256: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    if project is None and len(daemon.projects) == 1:
        project = next(iter(daemon.projects))
    proj = daemon.project(project or "")
    body = await _body(request)
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
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadRequest("the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the webhook body is not a JSON object")
    act = plan(x_github_event, payload, proj.settings.allow_forks)
    if isinstance(act, str):
        return JSONResponse({"status": "ignored", "reason": act}, status_code=202)
    delivery, event = x_github_delivery, x_github_event
    claimed = await run_in_threadpool(
        lambda: daemon.store().claim_delivery(
            PROVIDER, delivery, proj.name, event, time.time()
        )
    )
    if not claimed:
        return JSONResponse(
            {"status": "duplicate", "delivery": x_github_delivery}, status_code=200
        )
    job = daemon.jobs.start(
        f"webhook:{act.verb}",
        proj.name,
        act.branch,
        _work(daemon, proj, act, x_github_delivery),
        key=f"{proj.name}\0{act.branch}",
    )
    return JSONResponse(
        {"status": "accepted", "delivery": x_github_delivery, "job": job.json()},
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )
