"""The daemon's logs: text for a terminal, one JSON object per line for a platform.

``BRANCHDB_LOG_FORMAT=json`` (or ``text``, the default) and ``BRANCHDB_LOG_LEVEL``
(default ``INFO``) are read by ``branchdb serve``. Every record of the ``branchdb``
loggers — the API, GC, recovery, the engine — and uvicorn's own carries the id of the
request it was logged for: taken from a sane ``X-Request-ID`` header or made up, sent
back in the answer's ``X-Request-ID``, and kept by the background jobs a request
starts (a context variable: asyncio tasks and the thread pool copy it). JSON fields::

    {"ts": "2026-12-02T18:00:00.123Z", "level": "INFO", "logger": "branchdb.gc",
     "message": "...", "request_id": "9f2c…"}    (+ "exc" with a traceback)

Messages are redacted like every error the daemon shows (no passwords in URLs).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from branchdb.daemon.core.errors import ConfigError, redact

request_id: ContextVar[str | None] = ContextVar("branchdb_request_id", default=None)
#: One line per request (method, path, status, duration), with its request id; it
#: replaces uvicorn's access log, which is written outside the request's context.
access = logging.getLogger("branchdb.access")
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
FORMATS = ("text", "json")


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        at = time.gmtime(record.created)
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", at) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


#: The text format: ``2026-12-02 18:00:00,123 INFO branchdb.gc: message`` (plus
#: `` [request ID]`` on the lines of a request).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        text = redact(super().format(record))
        if rid:
            first, sep, rest = text.partition("\n")
            text = f"{first} [request {rid}]{sep}{rest}"
        return text


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send the ``branchdb`` and ``uvicorn`` loggers to stderr in *fmt* at *level*.

    Raises ConfigError for an unknown format or level."""
    if fmt not in FORMATS:
        raise ConfigError(f"BRANCHDB_LOG_FORMAT must be one of {', '.join(FORMATS)}")
    wanted = level.upper()
    if wanted not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("BRANCHDB_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_WithRequestId())
    for name in ("branchdb", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(wanted)
        logger.propagate = False


class RequestId:
    """ASGI middleware: the request's id in :data:`request_id` and the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE.fullmatch(given) else secrets.token_hex(8)
        token = request_id.set(rid)
        started = time.monotonic()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            access.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                (time.monotonic() - started) * 1000,
            )
            request_id.reset(token)
