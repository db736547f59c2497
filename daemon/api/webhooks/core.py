"""What GitHub and GitLab webhooks share once their signature has verified.

A provider module turns its event into an :class:`Action` (or a reason to ignore it);
:func:`accept` ignores a branch name outside the one rule (:mod:`branchdb.daemon.core.
branchname`), then claims the delivery id for the project (a redelivery is answered
200 and not acted on twice) and runs the action as a background job keyed by branch,
so deliveries for one branch are applied in arrival order. After the job's
provisioning, the URL is published (:mod:`branchdb.daemon.api.publish`) by a second
job: publishing is slow and may fail, and neither delays nor fails the provisioning
it reports on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from branchdb.daemon import views
from branchdb.daemon.api import publish, publish_review, uploads
from branchdb.daemon.api.deps import (
    BadRequest,
    Daemon,
    ProjectRuntime,
)
from branchdb.daemon.core import branchname
from branchdb.daemon.core.audit import acting
from branchdb.daemon.core.errors import BranchdbError, ConfigError, redact
from branchdb.daemon.vcs import tree as git_tree

if TYPE_CHECKING:
    from branchdb.daemon import wire
    from branchdb.daemon.migrations.base import MigrationFiles

log = logging.getLogger("branchdb.api")

#: GitHub caps webhook payloads at 25 MB; GitLab's default limit is lower.
MAX_BODY = 25 * 1024 * 1024
FORKS_REFUSED = "ignored: forks not allowed"


class Action(NamedTuple):
    """One thing a webhook asks for.

    ``up``: create or migrate *branch* at *sha*; ``migrate``: the same, but only if the
    branch already has a database (a push); ``closed``: hand *branch* to garbage
    collection (a closed pull request, a deleted branch).
    """

    verb: str
    branch: str
    sha: str
    merged: bool = False
    reference: str = ""  # e.g. "acme/shop#12", shown by gc
    repo: str | None = None  # GitHub "owner/name" to publish to; None: no GitHub
    number: int | None = None  # pull request number (for a PR comment)
    gitlab_project: int | None = None  # GitLab target project id (for an MR note)


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past MAX_BODY (before reading it all)."""
    return await uploads.read_body(request, MAX_BODY)


async def json_object(body: bytes) -> dict[str, Any]:
    """*body* as a JSON object (parsed in the thread pool: up to 25 MB); BadRequest
    if it is not one, too deeply nested included."""
    payload = await run_in_threadpool(uploads.parse_json, body, "the webhook body")
    if not isinstance(payload, dict):
        raise BadRequest("the webhook body is not a JSON object")
    return payload


def ignored(reason: str) -> JSONResponse:
    """202 ``{"status": "ignored", "reason": …}``: received, and nothing to do."""
    return JSONResponse({"status": "ignored", "reason": reason}, status_code=202)


def find_project(daemon: Daemon, project: str | None) -> ProjectRuntime:
    """``?project=NAME``; optional when the daemon serves a single project."""
    if project is None and len(daemon.projects) == 1:
        project = next(iter(daemon.projects))
    return daemon.project(project or "")


async def accept(
    daemon: Daemon,
    proj: ProjectRuntime,
    provider: str,
    delivery: str,
    event: str,
    act: Action,
) -> JSONResponse:
    """Claim *delivery* and start *act* as a job: 202 with the job, or 200 if seen.

    A branch name git could not have (``a..b``, ``-rf``, 300 characters…) is
    answered 202 ``ignored`` before anything is claimed or recorded: the event was
    received and understood, and repeating it cannot change the answer. (A 4xx
    would count as a failed delivery: GitLab disables a hook after repeated
    failures, for every branch of the project.)
    """
    why = branchname.problem(act.branch)
    if why is not None:
        log.info("%s delivery for project %s ignored: %s", provider, proj.name, why)
        daemon.metrics.webhooks.labels(provider, "ignored").inc()
        return ignored(f"ignored: {why}")
    claimed = await run_in_threadpool(
        lambda: daemon.store().claim_delivery(
            provider, delivery, proj.name, event, time.time()
        )
    )
    if not claimed:
        daemon.metrics.webhooks.labels(provider, "duplicate").inc()
        return JSONResponse(
            {"status": "duplicate", "delivery": delivery}, status_code=200
        )
    loop = asyncio.get_running_loop()
    job = daemon.jobs.start(
        f"webhook:{act.verb}",
        proj.name,
        act.branch,
        _work(daemon, proj, act, provider, delivery, loop),
        key=f"{proj.name}\0{act.branch}",
    )
    daemon.metrics.webhooks.labels(provider, "accepted").inc()
    return JSONResponse(
        {"status": "accepted", "delivery": delivery, "job": job.json()},
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


def _start_publish(
    daemon: Daemon,
    proj: ProjectRuntime,
    pub: publish.Publication,
    loop: asyncio.AbstractEventLoop,
    review: Callable[[], wire.SchemaReview] | None = None,
) -> str | None:
    """From a job's thread: start the publishing job; its id, or None if not set up.

    *review* computes the pull request's schema review in that job (slow: it may
    make or migrate the default branch's database first), when ``review`` is set.
    """
    settings = proj.settings.publish
    if settings is None or not (
        settings.github or settings.callback_url or settings.review
    ):
        return None

    def work() -> tuple[int, dict[str, Any]]:
        p = pub
        if review is not None and settings.review:
            try:
                p = pub._replace(review=review())
            except Exception as e:  # published as such: the reviewer sees why
                detail = redact(str(e)) if isinstance(e, BranchdbError) else repr(e)
                log.warning("schema review of %s failed: %s", pub.branch, detail)
                p = pub._replace(review=publish_review.failed_review(detail[:300]))
        return 200, publish.publish(settings, p)

    async def start() -> str:
        # Same key as the provisioning job: it runs after that job, in order. It
        # changes no database, so a request answered in place does not wait for it.
        key = f"{proj.name}\0{pub.branch}"
        return daemon.jobs.start(
            "publish", proj.name, pub.branch, work, key=key, passable=True
        ).id

    try:
        return asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    except Exception as e:  # the loop is shutting down: provisioning still counts
        log.warning("could not start publishing for %s: %s", pub.branch, redact(str(e)))
        return None


def _reviewer(
    proj: ProjectRuntime, act: Action, files: MigrationFiles, actor: str
) -> Callable[[], wire.SchemaReview]:
    """The schema review of *act*'s branch against the default branch's database,
    which is made or migrated to the default branch's committed tip first (audited
    as *actor*'s)."""

    def review() -> wire.SchemaReview:
        from branchdb.daemon.review import review as engine_review

        engine = proj.engine()
        default = engine.config.project.default_branch
        if act.branch != default:
            base = proj.committed_migrations(default)
            why = f"schema review base for {act.reference or act.branch}"
            with acting(actor, why):
                engine.up(default, files=base, lock_timeout=300, confirm_exists=True)
        found = engine_review.review(engine, act.branch, files=files)
        return views.review_dict(found)

    return review


def _work(
    daemon: Daemon,
    proj: ProjectRuntime,
    act: Action,
    provider: str,
    delivery: str,
    loop: asyncio.AbstractEventLoop,
) -> Any:
    def pub(
        status: str, url: str | None, detail: str = "", token: str | None = None
    ) -> publish.Publication:
        return publish.Publication(
            proj.name,
            act.branch,
            act.sha,
            status,
            url,
            act.repo,
            act.number,
            detail,
            token,
            gitlab_project=act.gitlab_project,
        )

    def provision() -> tuple[int, dict[str, Any]]:
        engine = proj.engine()
        if act.verb == "closed":
            engine.pull_request_closed(
                act.branch, merged=act.merged, reference=act.reference
            )
            body: dict[str, Any] = {"branch": act.branch, "closed": True}
            if engine.store.get_branch(engine.project, act.branch) is not None:
                body["publish_job"] = _start_publish(
                    daemon, proj, pub("closed", None), loop
                )
            return 200, body
        if (
            act.verb == "migrate"
            and engine.store.get_branch(engine.project, act.branch) is None
        ):
            return 200, {
                "branch": act.branch,
                "status": "ignored",
                "reason": "the branch has no database; a push only migrates",
            }
        if proj.mirror is None:
            raise ConfigError(
                f"project {proj.name!r} has no repository to fetch; set "
                "repository in the daemon config"
            )
        if act.verb == "up":
            engine.pull_request_opened(act.branch, reference=act.reference)
        try:
            files = git_tree.migrations_at(
                proj.settings.config, proj.mirror, act.sha, proj.settings.subdir
            )
            res = engine.up(
                act.branch, files=files, lock_timeout=300, confirm_exists=True
            )
        except BranchdbError as e:
            _start_publish(daemon, proj, pub("failed", None, redact(str(e))), loop)
            raise
        body = {**views.up_dict(res)}  # plus publish_job: a webhook's own answer
        if act.verb == "up" or res.created or res.applied:
            # A push that changed nothing publishes nothing (its PR event did).
            body["publish_job"] = _start_publish(
                daemon,
                proj,
                pub("ready", res.record.url, token=res.record.info.get("auth_token")),
                loop,
                _reviewer(proj, act, files, f"{provider}:{delivery}")
                if act.number is not None
                else None,
            )
        return (201 if res.created else 200), body

    def work() -> tuple[int, dict[str, Any]]:
        store = daemon.store()
        why = f"{provider} {act.reference or act.branch} at {act.sha[:12]}"
        try:
            with acting(f"{provider}:{delivery}", why):
                code, body = provision()
        except BranchdbError as e:
            store.finish_delivery(
                provider, delivery, "failed", redact(str(e)), project=proj.name
            )
            raise
        except Exception as e:
            store.finish_delivery(
                provider, delivery, "failed", redact(repr(e)), project=proj.name
            )
            raise
        store.finish_delivery(provider, delivery, "done", project=proj.name)
        return code, body

    return work
