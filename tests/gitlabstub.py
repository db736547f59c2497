"""A local stand-in for GitLab's merge request notes API (REST v4), for the review note.

Built to GitLab's documented contract: ``GET``/``POST
/api/v4/projects/:id/merge_requests/:iid/notes`` and ``PUT .../notes/:note_id``, a
``PRIVATE-TOKEN`` (or ``Authorization: Bearer``) header else ``401 {"message": "401
Unauthorized"}``, ``400 {"error": "body is missing"}`` without a body, ``404
{"message": "404 Not found"}`` for an unknown note. Every request is recorded. Served
with :func:`githubstub.serve`.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "/api/v4/projects/{project:int}/merge_requests/{iid:int}/notes"


class GitLabStub:
    def __init__(self, token: str) -> None:
        self.token = token
        self.base = ""
        self.requests: list[dict[str, Any]] = []
        self.notes: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(501)
        self.app = Starlette(
            routes=[
                Route(PREFIX, self.notes_route, methods=["GET", "POST"]),
                Route(PREFIX + "/{id:int}", self.update, methods=["PUT"]),
            ]
        )

    async def _auth(self, request: Request) -> Response | None:
        raw = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "headers": dict(request.headers),
                "json": json.loads(raw) if raw else None,
            }
        )
        given = request.headers.get("private-token") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        if given != self.token:
            return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
        return None

    async def notes_route(self, request: Request) -> Response:
        refused = await self._auth(request)
        if refused is not None:
            return refused
        p = request.path_params
        if request.method == "GET":
            per_page = min(int(request.query_params.get("per_page", 20)), 100)
            page = int(request.query_params.get("page", 1))
            mine = [
                n
                for n in self.notes.values()
                if (n["project_id"], n["noteable_iid"]) == (p["project"], p["iid"])
            ]
            return JSONResponse(mine[(page - 1) * per_page : page * per_page])
        body = (await request.json()).get("body")
        if not isinstance(body, str) or not body:
            return JSONResponse({"error": "body is missing"}, status_code=400)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        note_id = next(self._ids)
        note = {
            "id": note_id,
            "type": None,
            "body": body,
            "author": {"id": 9, "username": "branchdb-bot"},
            "created_at": now,
            "updated_at": now,
            "system": False,
            "noteable_id": 990 + p["iid"],
            "noteable_type": "MergeRequest",
            "project_id": p["project"],
            "noteable_iid": p["iid"],
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        self.notes[note_id] = note
        return JSONResponse(note, status_code=201)

    async def update(self, request: Request) -> Response:
        refused = await self._auth(request)
        if refused is not None:
            return refused
        note = self.notes.get(request.path_params["id"])
        if note is None:
            return JSONResponse({"message": "404 Not found"}, status_code=404)
        body = (await request.json()).get("body")
        if not isinstance(body, str) or not body:
            return JSONResponse({"error": "body is missing"}, status_code=400)
        note["body"] = body
        return JSONResponse(note)
