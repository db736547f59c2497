"""A local stand-in for the parts of the GitHub REST API that branchdb publishes to.

Built to GitHub's documented contract (REST API version 2022-11-28): deployments and
deployment statuses, commit statuses, issue comments (create, list, update), and the
Checks API's check runs (create, update, list for a ref, list annotations) with its
validation: ``name``/``head_sha`` required, ``status`` and ``conclusion`` from their
lists, a ``conclusion`` required once ``completed``, an ``output`` needs ``title`` and
``summary`` (at most 65,535 characters), at most 50 annotations per request, each
with ``path``, ``start_line``, ``end_line``, ``annotation_level`` (notice, warning,
failure) and ``message``, and columns only on a single line. Like
GitHub it answers 401 ``Bad credentials`` without a valid ``Authorization: Bearer`` /
``token`` header, 400 for an unsupported ``X-GitHub-Api-Version``, 415 for an
``Accept`` it cannot serve, 422 for invalid bodies and 404 for unknown routes or ids.
Every request is recorded. Also here: a callback receiver that records (and can refuse)
what branchdb POSTs to it. Both run under a real uvicorn server on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSIONS = {"2022-11-28", "2026-03-10"}
DEPLOYMENT_STATES = {
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
}
STATUS_STATES = {"error", "failure", "pending", "success"}
CHECK_STATUSES = {
    "queued",
    "in_progress",
    "completed",
    "waiting",
    "requested",
    "pending",
}
CHECK_CONCLUSIONS = {
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
}
ANNOTATION_LEVELS = {"notice", "warning", "failure"}
DOCS = "https://docs.github.com/rest"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"message": message, "documentation_url": DOCS, "status": str(status)},
        status_code=status,
    )


class GitHubStub:
    """State and routes; ``base`` is set once served (see :func:`serve`)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.base = ""
        self.requests: list[dict[str, Any]] = []
        self.deployments: dict[int, dict[str, Any]] = {}
        self.deployment_statuses: dict[int, list[dict[str, Any]]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.comments: dict[int, dict[str, Any]] = {}
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.annotations: dict[int, list[dict[str, Any]]] = {}
        self.fail_next: list[int] = []  # answer these statuses first (outages)
        self._ids = itertools.count(1001)
        prefix = "/repos/{owner}/{repo}"
        self.app = Starlette(
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._check)],
            exception_handlers={404: self._not_found, 405: self._not_found},
            routes=[
                Route(
                    f"{prefix}/deployments",
                    self.deployments_route,
                    methods=["GET", "POST"],
                ),
                Route(
                    prefix + "/deployments/{id:int}/statuses",
                    self.create_deployment_status,
                    methods=["POST"],
                ),
                Route(prefix + "/statuses/{sha}", self.create_status, methods=["POST"]),
                Route(
                    prefix + "/issues/{number:int}/comments",
                    self.issue_comments,
                    methods=["GET", "POST"],
                ),
                Route(
                    prefix + "/issues/comments/{id:int}",
                    self.update_comment,
                    methods=["PATCH"],
                ),
                Route(prefix + "/check-runs", self.create_check_run, methods=["POST"]),
                Route(
                    prefix + "/check-runs/{id:int}",
                    self.update_check_run,
                    methods=["PATCH", "GET"],
                ),
                Route(
                    prefix + "/check-runs/{id:int}/annotations",
                    self.list_annotations,
                    methods=["GET"],
                ),
                Route(
                    prefix + "/commits/{ref}/check-runs",
                    self.list_check_runs,
                    methods=["GET"],
                ),
            ],
        )

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return _error(404, "Not Found")

    async def _check(self, request: Request, call_next: Any) -> Response:
        raw = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "json": json.loads(raw) if raw else None,
            }
        )
        scheme, _, cred = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or cred != self.token:
            return _error(401, "Bad credentials")
        version = request.headers.get("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            return _error(400, f"Unsupported 'X-GitHub-Api-Version': {version}")
        accept = request.headers.get("accept", "*/*")
        if not any(
            a.strip().split(";")[0]
            in ("application/vnd.github+json", "application/json", "*/*")
            for a in accept.split(",")
        ):
            return _error(415, "Unsupported 'Accept' header")
        if self.fail_next:
            return _error(self.fail_next.pop(0), "Server Error")
        if request.method in ("POST", "PATCH"):
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "Problems parsing JSON")
            if not isinstance(body, dict):
                return _error(400, "Body should be a JSON object")
        response: Response = await call_next(request)
        return response

    def _repo_url(self, request: Request) -> str:
        p = request.path_params
        return f"{self.base}/repos/{p['owner']}/{p['repo']}"

    async def deployments_route(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.create_deployment(request)
        q = request.query_params
        keys = [k for k in ("environment", "sha", "ref", "task") if k in q]
        found = [
            d
            for d in reversed(self.deployments.values())  # newest first, like GitHub
            if all(d[k] == q[k] for k in keys)
        ]
        per_page = min(int(q.get("per_page", 30)), 100)
        page = int(q.get("page", 1))
        return JSONResponse(found[(page - 1) * per_page : page * per_page])

    async def create_deployment(self, request: Request) -> Response:
        body = await request.json()
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            return _error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        dep_id = next(self._ids)
        env = body.get("environment", "production")
        dep = {
            "url": f"{self._repo_url(request)}/deployments/{dep_id}",
            "id": dep_id,
            "node_id": f"DE_{dep_id}",
            "sha": ref,
            "ref": ref,
            "task": body.get("task", "deploy"),
            "payload": body.get("payload", {}),
            "original_environment": env,
            "environment": env,
            "description": body.get("description"),
            "creator": {"login": "branchdb[bot]", "type": "Bot"},
            "created_at": _now(),
            "updated_at": _now(),
            "statuses_url": f"{self._repo_url(request)}/deployments/{dep_id}/statuses",
            "repository_url": self._repo_url(request),
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get("production_environment", False),
        }
        self.deployments[dep_id] = dep
        self.deployment_statuses[dep_id] = []
        return JSONResponse(dep, status_code=201)

    async def create_deployment_status(self, request: Request) -> Response:
        dep = self.deployments.get(request.path_params["id"])
        if dep is None:
            return _error(404, "Not Found")
        body = await request.json()
        if body.get("state") not in DEPLOYMENT_STATES:
            return _error(422, "Validation Failed: state is not included in the list")
        st_id = next(self._ids)
        st = {
            "url": f"{dep['url']}/statuses/{st_id}",
            "id": st_id,
            "node_id": f"DES_{st_id}",
            "state": body["state"],
            "creator": {"login": "branchdb[bot]", "type": "Bot"},
            "description": body.get("description", ""),
            "environment": body.get("environment", dep["environment"]),
            "target_url": body.get("target_url", ""),
            "created_at": _now(),
            "updated_at": _now(),
            "deployment_url": dep["url"],
            "repository_url": dep["repository_url"],
            "environment_url": body.get("environment_url", ""),
            "log_url": body.get("log_url", ""),
        }
        self.deployment_statuses[dep["id"]].append(st)
        return JSONResponse(st, status_code=201)

    async def create_status(self, request: Request) -> Response:
        body = await request.json()
        if body.get("state") not in STATUS_STATES:
            return _error(422, "Validation Failed: state is not included in the list")
        st_id = next(self._ids)
        st = {
            "url": f"{self._repo_url(request)}/statuses/{request.path_params['sha']}",
            "avatar_url": None,
            "id": st_id,
            "node_id": f"SC_{st_id}",
            "sha": request.path_params["sha"],
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": _now(),
            "updated_at": _now(),
            "creator": {"login": "branchdb[bot]", "type": "Bot"},
        }
        self.statuses.append(st)
        return JSONResponse(st, status_code=201)

    def _comment(self, request: Request, number: int, c_id: int, body: str) -> dict:  # type: ignore[type-arg]
        repo = self._repo_url(request)
        return {
            "id": c_id,
            "node_id": f"IC_{c_id}",
            "url": f"{repo}/issues/comments/{c_id}",
            "html_url": f"https://github.com/x/y/pull/{number}#issuecomment-{c_id}",
            "body": body,
            "user": {"login": "branchdb[bot]", "type": "Bot"},
            "created_at": _now(),
            "updated_at": _now(),
            "issue_url": f"{repo}/issues/{number}",
            "author_association": "NONE",
            "number": number,  # not in GitHub's shape: the stub's own index
        }

    async def issue_comments(self, request: Request) -> Response:
        number = request.path_params["number"]
        if request.method == "GET":
            per_page = min(int(request.query_params.get("per_page", 30)), 100)
            page = int(request.query_params.get("page", 1))
            mine = [c for c in self.comments.values() if c["number"] == number]
            return JSONResponse(mine[(page - 1) * per_page : page * per_page])
        body = await request.json()
        if not isinstance(body.get("body"), str):
            return _error(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
        c = self._comment(request, number, next(self._ids), body["body"])
        self.comments[c["id"]] = c
        return JSONResponse(c, status_code=201)

    async def update_comment(self, request: Request) -> Response:
        c = self.comments.get(request.path_params["id"])
        if c is None:
            return _error(404, "Not Found")
        body = await request.json()
        if not isinstance(body.get("body"), str):
            return _error(422, 'Invalid request.\n\n"body" wasn\'t supplied.')
        c["body"], c["updated_at"] = body["body"], _now()
        return JSONResponse(c)

    # ------------------------------------------------------------ check runs
    def _check_problem(self, body: dict[str, Any], create: bool) -> str | None:
        """What GitHub's validation would answer 422 for, or None."""
        if create:
            for key in ("name", "head_sha"):
                if not isinstance(body.get(key), str) or not body[key]:
                    return f'"{key}" wasn\'t supplied.'
        elif "head_sha" in body:
            return '"head_sha" is not a permitted key.'
        status = body.get("status")
        if status is not None and status not in CHECK_STATUSES:
            return "status is not included in the list"
        conclusion = body.get("conclusion")
        if conclusion is not None and conclusion not in CHECK_CONCLUSIONS:
            return "conclusion is not included in the list"
        if (status == "completed" or body.get("completed_at")) and not conclusion:
            return "conclusion is required when status is completed"
        out = body.get("output")
        if out is not None:
            if not isinstance(out, dict):
                return "output is not an object"
            for key in ("title", "summary"):
                if not isinstance(out.get(key), str):
                    return f'"{key}" wasn\'t supplied.'
            if len(out["summary"]) > 65535 or len(out.get("text") or "") > 65535:
                return "Only 65535 characters are allowed"
            notes = out.get("annotations", [])
            if not isinstance(notes, list) or len(notes) > 50:
                return "annotations: at most 50 per request"
            for a in notes:
                for key in ("path", "annotation_level", "message"):
                    if not isinstance(a.get(key), str):
                        return f'annotation "{key}" wasn\'t supplied.'
                for key in ("start_line", "end_line"):
                    if not isinstance(a.get(key), int) or a[key] < 1:
                        return f'annotation "{key}" wasn\'t supplied.'
                if a["annotation_level"] not in ANNOTATION_LEVELS:
                    return "annotation_level is not included in the list"
                if ("start_column" in a or "end_column" in a) and a["start_line"] != a[
                    "end_line"
                ]:
                    return "start_column and end_column need a single line"
        return None

    def _apply_check(self, run: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "status", "conclusion", "details_url", "external_id"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion") and "status" not in body:
            run["status"] = "completed"  # GitHub: a conclusion completes the run
        if run["status"] == "completed":
            run["completed_at"] = body.get("completed_at") or _now()
        out = body.get("output")
        if out is not None:
            notes = self.annotations.setdefault(run["id"], [])
            # GitHub appends annotations on every update of the same run.
            notes += [
                {"start_column": None, "end_column": None, "blob_href": "", **a}
                for a in out.get("annotations", [])
            ]
            run["output"] = {
                "title": out["title"],
                "summary": out["summary"],
                "text": out.get("text"),
                "annotations_count": len(notes),
                "annotations_url": f"{run['url']}/annotations",
            }

    async def create_check_run(self, request: Request) -> Response:
        body = await request.json()
        problem = self._check_problem(body, create=True)
        if problem:
            return _error(422, f"Invalid request.\n\n{problem}")
        run_id = next(self._ids)
        url = f"{self._repo_url(request)}/check-runs/{run_id}"
        run: dict[str, Any] = {
            "id": run_id,
            "node_id": f"CR_{run_id}",
            "head_sha": body["head_sha"],
            "external_id": "",
            "url": url,
            "html_url": f"https://github.com/x/y/runs/{run_id}",
            "details_url": None,
            "status": "queued",
            "conclusion": None,
            "started_at": body.get("started_at") or _now(),
            "completed_at": None,
            "output": {
                "title": None,
                "summary": None,
                "text": None,
                "annotations_count": 0,
                "annotations_url": f"{url}/annotations",
            },
            "name": body["name"],
            "check_suite": {"id": 1},
            "app": {"slug": "branchdb"},
            "pull_requests": [],
        }
        self._apply_check(run, body)
        self.check_runs[run_id] = run
        return JSONResponse(run, status_code=201)

    async def update_check_run(self, request: Request) -> Response:
        run = self.check_runs.get(request.path_params["id"])
        if run is None:
            return _error(404, "Not Found")
        if request.method == "GET":
            return JSONResponse(run)
        body = await request.json()
        problem = self._check_problem(body, create=False)
        if problem:
            return _error(422, f"Invalid request.\n\n{problem}")
        self._apply_check(run, body)
        return JSONResponse(run)

    async def list_annotations(self, request: Request) -> Response:
        run_id = request.path_params["id"]
        if run_id not in self.check_runs:
            return _error(404, "Not Found")
        return JSONResponse(self.annotations.get(run_id, []))

    async def list_check_runs(self, request: Request) -> Response:
        q = request.query_params
        runs = [
            r
            for r in reversed(self.check_runs.values())  # newest first
            if r["head_sha"] == request.path_params["ref"]
            and ("check_name" not in q or r["name"] == q["check_name"])
            and ("status" not in q or r["status"] == q["status"])
        ]
        return JSONResponse({"total_count": len(runs), "check_runs": runs})


class CallbackReceiver:
    """Records POSTs; answers the statuses in ``fail_next`` first, then 204."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.base = ""

        async def receive(request: Request) -> Response:
            self.requests.append(
                {"headers": dict(request.headers), "body": await request.body()}
            )
            if self.fail_next:
                return Response(status_code=self.fail_next.pop(0))
            return Response(status_code=204)

        self.app = Starlette(routes=[Route("/hook", receive, methods=["POST"])])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI *app* under uvicorn on 127.0.0.1; yield its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
