"""A global request-body limit, enforced before anything parses the body.

An ASGI middleware in front of every route: a declared ``Content-Length`` over the
limit is refused at once; a body without one (chunked) is read up to the limit and
refused as soon as it passes it. Either way the answer is 413 with the API's JSON
error and the connection is closed (the rest of the body is never read). A body
within the limit is handed to the application unchanged, in one piece. Requests
without a body (GET, most PUT/POST of this API) pass straight through.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchdb.daemon.api.settings import DEFAULT_MAX_BODY


class BodyLimit:
    """Refuse request bodies over *max_body* bytes with 413 (see module docstring)."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: str | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        # (uvicorn already refused a Content-Length that is not a number; if one
        # got here anyway, the body is read and counted like a chunked one.)
        if length is not None and length.isdigit() and not chunked:
            if int(length) > self.max_body:
                await self._refuse(send, f"declares {int(length)} bytes")
                return
            if int(length) == 0:
                await self.app(scope, receive, send)
                return
        elif length is None and not chunked:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._refuse(send, f"has more than {self.max_body} bytes")
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, send: Send, what: str) -> None:
        payload: dict[str, Any] = {
            "error": {
                "type": "PayloadTooLarge",
                "message": f"the request body {what}; the limit is "
                f"{self.max_body} bytes (server.max_body)",
            }
        }
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields *body* once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
